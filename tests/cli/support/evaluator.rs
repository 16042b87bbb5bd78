//! The independent IAM policy evaluator (@cloud-copilot/iam-simulate, in tests/policy-evaluator),
//! which applies `Condition` blocks — unlike moto.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::project_root;

/// Evaluates `policy` for each (action, resource, s3:prefix) with the independent evaluator.
pub fn evaluate(policy: &Value, requests: &[(&str, String, Option<&str>)]) -> Vec<String> {
    let requests: Vec<(&str, String, Value)> = requests
        .iter()
        .map(|(action, resource, prefix)| {
            let context =
                prefix.map_or(json!({}), |p| json!({"s3:prefix": p, "s3:delimiter": "/"}));
            (*action, resource.clone(), context)
        })
        .collect();
    evaluate_in_context(policy, &requests)
}

/// Evaluates `policy` for each (action, resource, request context) with the independent
/// evaluator; one verdict per request, in order.
pub fn evaluate_in_context(policy: &Value, requests: &[(&str, String, Value)]) -> Vec<String> {
    evaluate_within(policy, None, requests)
}

/// As [`evaluate_in_context`], for a user whose permissions boundary is `boundary`.
pub fn evaluate_within(
    policy: &Value,
    boundary: Option<&Value>,
    requests: &[(&str, String, Value)],
) -> Vec<String> {
    let count = requests.len();
    let requests: Vec<Value> = requests
        .iter()
        .map(|(action, resource, context)| {
            json!({"action": action, "resource": resource, "context": context})
        })
        .collect();
    let mut node = Command::new("node")
        .arg(project_root().join("tests/policy-evaluator/evaluate.mjs"))
        .current_dir(project_root().join("tests/policy-evaluator"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is needed for the policy evaluator: run scripts/setup");
    let input = json!({"policy": policy, "boundary": boundary, "requests": requests}).to_string();
    node.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = node.wait_with_output().unwrap();
    assert!(output.status.success(), "the evaluator rejected the input");
    let verdicts: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdicts.len(), count, "one verdict per request");
    verdicts
}
