//! The IAM policies arq-lockdown writes or asks an admin for: the policy that locks one Mac's key
//! to that Mac's data, the permissions boundary every scoped user is created under, and the admin
//! policy that lets `apply`, `revoke` and the service make scoped users only under that boundary.
//!
//! Owns the policy documents and why each statement is in them. What Arq does in S3, read from
//! Haystack's published S3 code (arqbackup/arq_restore; Arq 5 at d4a3d0e, Arq 4 at 254e815 — the
//! policy table in docs/policy.md cites file and line for each):
//! - it lists all buckets and asks where its bucket is (ListBuckets, GetBucketLocation);
//! - it lists the bucket root (`prefix=""`, `delimiter=/`) to find computers, and when its cache is
//!   cold before writing `U/computerinfo`, `U/salt`, `U/encryptionv3.dat`; likewise `glacier/`;
//! - it keeps everything of one computer under `<computerUUID>/` and, with the S3-Glacier storage
//!   class (Arq 4/5), under `glacier/<computerUUID>/` — a second prefix the 2012 example misses —
//!   and lists only there otherwise, with or without a delimiter;
//! - objects: GET, HEAD, single-request PUT, one DELETE per key, POST `?restore`.
//!
//! Deliberately left out: `s3:*`; anything no Arq code calls (`GetBucketVersioning`, multipart
//! upload, multi-object delete, ACLs); `PutLifecycleConfiguration` above all — a lifecycle rule is
//! bucket-wide and could expire every other Mac's data; `CreateBucket`/`DeleteBucket`; and any
//! listing of the root without the delimiter (object names) or inside another computer's folder.

use serde_json::{Value, json};

use crate::arq_config::{ArqConfig, BucketName};
use crate::iam_names;

/// IAM's quota for the inline policies of one user, whitespace not counted.
pub const INLINE_POLICY_MAX_CHARS: usize = 2048;

/// A policy document, ready to print or to send to IAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument(Value);

/// What to include beyond, or leave out of, the S3 statements every Arq version needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PolicyOptions {
    /// Arq 3's Glacier vaults (`arq_<folderUUID>`) and the SNS topic / SQS queue of each retrieval
    /// job. Their names carry no computer UUID, so these resources cannot be scoped to one Mac.
    pub legacy_glacier: bool,
    /// Refuse the root listing too: the other computers' UUIDs stay hidden, at a cost — Arq
    /// cannot list computers, arq_restore cannot restore, and a Mac with a cold cache cannot
    /// write its `computerinfo`, `salt` or `encryptionv3.dat`.
    pub no_computer_listing: bool,
}

impl PolicyOptions {
    /// The options as recorded in a scoped user's tag `arq-lockdown:policy-options`, so `audit`
    /// can rebuild the exact policy: `default`, or the options set, in this order, joined by `+`
    /// (IAM tag values allow no comma).
    pub fn tag_value(self) -> String {
        let set: Vec<&str> = [
            (self.legacy_glacier, "legacy-glacier"),
            (self.no_computer_listing, "no-computer-listing"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        match set.is_empty() {
            true => "default".to_owned(),
            false => set.join("+"),
        }
    }

    /// The options a tag value names; `None` for anything [`Self::tag_value`] does not write.
    pub fn from_tag_value(value: &str) -> Option<Self> {
        let mut options = Self::default();
        if value == "default" {
            return Some(options);
        }
        let mut last = 0;
        for name in value.split('+') {
            // Each name once, in the order tag_value writes them.
            let (rank, flag) = match name {
                "legacy-glacier" => (1, &mut options.legacy_glacier),
                "no-computer-listing" => (2, &mut options.no_computer_listing),
                _ => return None,
            };
            if rank <= last {
                return None;
            }
            last = rank;
            *flag = true;
        }
        Some(options)
    }

    /// Every combination of options, defaults first.
    pub fn all() -> [Self; 4] {
        [(false, false), (true, false), (false, true), (true, true)].map(
            |(legacy_glacier, no_computer_listing)| Self {
                legacy_glacier,
                no_computer_listing,
            },
        )
    }
}

impl PolicyDocument {
    /// The policy for `config`'s bucket and computer.
    ///
    /// It always fits IAM's inline limit: the longest bucket name with every option is checked by
    /// a test, so a larger document is a bug, not an input error.
    pub fn scoped_to(config: &ArqConfig, options: PolicyOptions) -> Self {
        let bucket = config.bucket.as_str();
        let uuid = config.computer_uuid.as_str();
        let bucket_arn = bucket_arn(bucket);
        let mut statements = vec![
            // ListBuckets: Arq looks for its bucket among all buckets. IAM only grants it on "*";
            // it reveals bucket names, not their contents.
            json!({
                "Sid": "ArqFindsItsBucket",
                "Effect": "Allow",
                "Action": ["s3:ListAllMyBuckets"],
                "Resource": "*",
            }),
            // Arq asks where the bucket is, to talk to its region.
            json!({
                "Sid": "ArqFindsItsRegion",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation"],
                "Resource": bucket_arn,
            }),
        ];
        if !options.no_computer_listing {
            // The computers' folder names at the root (and under glacier/), never object names:
            // the prefix is exactly "" or "glacier/" and the delimiter "/" (AWS's "home folder"
            // pattern). Every authorization must hold anyway with every UUID known.
            statements.push(json!({
                "Sid": "ArqListsComputers",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": bucket_arn,
                "Condition": {"StringEquals": {"s3:prefix": ["", "glacier/"], "s3:delimiter": "/"}},
            }));
        }
        statements.extend([
            // Listing inside this computer's folders, with or without a delimiter; other
            // computers' folders are refused.
            json!({
                "Sid": "ArqListsOnlyThisComputer",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [format!("{uuid}/*"), format!("glacier/{uuid}/*")]}},
            }),
            // All object work Arq does, only under this computer's two prefixes.
            json!({
                "Sid": "ArqOwnsThisComputersData",
                "Effect": "Allow",
                "Action": OBJECT_ACTIONS,
                "Resource": [format!("{bucket_arn}/{uuid}/*"), format!("{bucket_arn}/glacier/{uuid}/*")],
            }),
        ]);
        if options.legacy_glacier {
            statements.extend(legacy_glacier_statements());
        }
        let document = Self(json!({"Version": "2012-10-17", "Statement": statements}));
        debug_assert!(document.iam_size() <= INLINE_POLICY_MAX_CHARS);
        document
    }

    /// The permissions boundary for scoped users of `buckets`: at most what any Arq computer may
    /// do there (and, with `legacy_glacier`, Arq 3's Glacier resources). An admin creates it once;
    /// every scoped user is created with it, so even a compromised service or admin key that may
    /// only create users under it cannot make one with more.
    pub fn boundary(buckets: &[&BucketName], options: PolicyOptions) -> Self {
        let mut resources = Vec::new();
        for bucket in buckets {
            resources.push(bucket_arn(bucket.as_str()));
            resources.push(format!("{}/*", bucket_arn(bucket.as_str())));
        }
        let mut actions: Vec<&str> = BUCKET_ACTIONS.to_vec();
        actions.extend(OBJECT_ACTIONS);
        let mut statements = vec![
            json!({
                "Sid": "ArqFindsItsBucket",
                "Effect": "Allow",
                "Action": ["s3:ListAllMyBuckets"],
                "Resource": "*",
            }),
            json!({
                "Sid": "AtMostArqsWorkInTheFleetsBuckets",
                "Effect": "Allow",
                "Action": actions,
                "Resource": resources,
            }),
        ];
        if options.legacy_glacier {
            statements.extend(legacy_glacier_statements());
        }
        Self(json!({"Version": "2012-10-17", "Statement": statements}))
    }

    /// The least an admin (a person, or the service's role within [`PolicyDocument::service`])
    /// needs for `apply --source iam`, `revoke` and `serve`: scoped users may be created, and given a policy, only with
    /// `boundary_arn` as their permissions boundary (AWS's documented delegation pattern); nothing
    /// outside `/arq-lockdown/` is reachable.
    pub fn admin(boundary_arn: &str) -> Self {
        let users = iam_names::scoped_users_resource();
        let bounded = ["iam:CreateUser", "iam:PutUserPolicy"];
        let rest: Vec<&str> = iam_names::ADMIN_ACTIONS
            .into_iter()
            .filter(|action| !bounded.contains(action))
            .collect();
        Self(json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CreateScopedUsersOnlyUnderTheBoundary",
                    "Effect": "Allow",
                    "Action": bounded,
                    "Resource": users,
                    "Condition": {"StringEquals": {"iam:PermissionsBoundary": boundary_arn}},
                },
                {
                    "Sid": "ManageScopedUsers",
                    "Effect": "Allow",
                    "Action": rest,
                    "Resource": users,
                },
            ],
        }))
    }

    /// The least `serve` needs: the admin policy for `boundary_arn`, and
    /// `iam:GetAccountAuthorizationDetails` (each enroller's enrollments are counted from the
    /// scoped users' tags at start; IAM grants it on `*` only) and, for the binding rule's data
    /// check, `s3:ListBucket` and `s3:GetBucketLocation` on the allowed `buckets` — names only, no
    /// object is read.
    pub fn service(boundary_arn: &str, buckets: &[&BucketName]) -> Self {
        let Self(mut document) = Self::admin(boundary_arn);
        let statements = document["Statement"]
            .as_array_mut()
            .expect("a policy's statements are a list");
        statements.push(json!({
            "Sid": "CountEnrollmentsAtStart",
            "Effect": "Allow",
            "Action": iam_names::SERVICE_ACTIONS,
            "Resource": "*",
        }));
        let buckets: Vec<String> = buckets.iter().map(|b| bucket_arn(b.as_str())).collect();
        statements.push(json!({
            "Sid": "CheckComputersForBackups",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": buckets,
        }));
        Self(document)
    }

    /// The least `audit` needs for `bucket`: IAM's account-wide reads (the authorization details,
    /// the credential report, keys' last use), the scoped users' key lists, the bucket's folders and
    /// each computer's `computerinfo` — and, with `fix_policies`, rewriting scoped users' inline
    /// policies (whatever they say, a scoped user's permissions boundary still caps it).
    pub fn audit(bucket: &BucketName, fix_policies: bool) -> Self {
        let users = iam_names::scoped_users_resource();
        let bucket_arn = bucket_arn(bucket.as_str());
        let (account_wide, per_user): (Vec<&str>, Vec<&str>) = iam_names::AUDIT_ACTIONS
            .into_iter()
            .partition(|action| *action != "iam:ListAccessKeys");
        let mut statements = vec![
            json!({
                "Sid": "AuditReadsTheAccountsUsersReportAndKeyUse",
                "Effect": "Allow",
                "Action": account_wide,
                "Resource": "*",
            }),
            json!({
                "Sid": "AuditListsScopedUsersKeys",
                "Effect": "Allow",
                "Action": per_user,
                "Resource": users,
            }),
            json!({
                "Sid": "AuditListsTheComputers",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": bucket_arn,
            }),
            json!({
                "Sid": "AuditReadsComputerNames",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": format!("{bucket_arn}/*/computerinfo"),
            }),
        ];
        if fix_policies {
            statements.push(json!({
                "Sid": "AuditFixesScopedPolicies",
                "Effect": "Allow",
                "Action": [iam_names::AUDIT_FIX_ACTION],
                "Resource": users,
            }));
        }
        Self(json!({"Version": "2012-10-17", "Statement": statements}))
    }

    /// The least `retire-main-keys` needs for `bucket`: what a read-only audit without names needs
    /// (IAM's reads, the scoped users' keys, the bucket's folders), and reading and switching the
    /// keys of users outside `/arq-lockdown/` — never a scoped user's (an explicit Deny).
    pub fn retire(bucket: &BucketName) -> Self {
        let audit = Self::audit(bucket, false);
        let mut statements: Vec<Value> = audit.0["Statement"]
            .as_array()
            .expect("audit's statements")
            .iter()
            .filter(|s| s["Sid"] != "AuditReadsComputerNames")
            .cloned()
            .collect();
        let switching = ["iam:TagUser", "iam:UpdateAccessKey"];
        statements.push(json!({
            "Sid": "RetireSwitchesTheMainKeys",
            "Effect": "Allow",
            "Action": iam_names::RETIRE_ACTIONS,
            "Resource": "arn:aws:iam::*:user/*",
        }));
        statements.push(json!({
            "Sid": "RetireNeverSwitchesAMacsKey",
            "Effect": "Deny",
            "Action": switching,
            "Resource": iam_names::scoped_users_resource(),
        }));
        Self(json!({"Version": "2012-10-17", "Statement": statements}))
    }

    /// The document as JSON data, for comparing with what IAM holds.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// Compact JSON: what IAM receives (moto, like IAM's form encoding, needs no spaces).
    pub fn to_compact_json(&self) -> String {
        self.0.to_string()
    }

    /// Indented JSON for people.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).expect("a JSON value always serializes")
    }

    /// The size IAM counts against its quota: every character but whitespace.
    pub fn iam_size(&self) -> usize {
        self.to_compact_json()
            .chars()
            .filter(|c| !c.is_whitespace())
            .count()
    }
}

/// Bucket-level actions Arq makes.
const BUCKET_ACTIONS: [&str; 2] = ["s3:GetBucketLocation", "s3:ListBucket"];

/// Everything Arq does with objects. GetObject also covers HeadObject; RestoreObject is how Arq
/// reads back S3-Glacier objects. Arq has no multipart upload code.
const OBJECT_ACTIONS: [&str; 4] = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:RestoreObject",
];

fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

/// Arq 3 "Glacier" destinations: a vault per backed-up folder (`arq_<folderUUID>`), and per
/// retrieval job an SNS topic `<jobUUID>_topic` with an SQS queue `<jobUUID>_queue` subscribed to
/// it. Actions are the ones a reader of the 2012 post saw Arq make. None of the names carry the
/// computer UUID, so any Mac with this statement reaches every Mac's vaults.
fn legacy_glacier_statements() -> [Value; 2] {
    [
        json!({
            "Sid": "ArqLegacyGlacierVaultsAndJobs",
            "Effect": "Allow",
            "Action": [
                "glacier:CreateVault", "glacier:DeleteArchive", "glacier:GetJobOutput",
                "glacier:GetVaultNotifications", "glacier:InitiateJob", "glacier:UploadArchive",
                "sns:CreateTopic", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic",
                "sns:Publish", "sns:Subscribe",
                "sqs:CreateQueue", "sqs:DeleteMessage", "sqs:DeleteQueue", "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage", "sqs:SendMessage", "sqs:SetQueueAttributes",
            ],
            "Resource": ["arn:aws:glacier:*:*:vaults/arq_*", "arn:aws:sns:*:*:*_topic", "arn:aws:sqs:*:*:*_queue"],
        }),
        // Listing calls that IAM grants only on "*".
        json!({
            "Sid": "ArqLegacyGlacierListing",
            "Effect": "Allow",
            "Action": ["glacier:ListVaults", "sns:ListTopics", "sns:ListSubscriptions", "sqs:ListQueues"],
            "Resource": "*",
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ArqConfig {
        ArqConfig::from_values(
            "akiaexample.comhaystacksoftwarearq",
            "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570",
            "test",
        )
        .unwrap()
    }

    #[test]
    fn objects_are_reachable_only_under_both_of_this_computers_prefixes() {
        let policy = PolicyDocument::scoped_to(&config(), PolicyOptions::default());
        let json = policy.to_compact_json();
        assert!(json.contains(r#""arn:aws:s3:::akiaexample.comhaystacksoftwarearq/32D9D7A2-3B3E-4BE7-B85B-0605AF24F570/*""#));
        assert!(json.contains(r#""arn:aws:s3:::akiaexample.comhaystacksoftwarearq/glacier/32D9D7A2-3B3E-4BE7-B85B-0605AF24F570/*""#));
        assert!(!json.contains("s3:*"));
        assert!(!json.contains(' '));
        assert!(json.contains(r#""Version":"2012-10-17""#));
    }

    #[test]
    fn the_longest_inputs_fit_iams_inline_limit_even_with_legacy_glacier() {
        let longest = ArqConfig::from_values(
            &"a".repeat(63),
            "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570",
            "test",
        )
        .unwrap();
        let policy = PolicyDocument::scoped_to(
            &longest,
            PolicyOptions {
                legacy_glacier: true,
                ..PolicyOptions::default()
            },
        );
        assert!(
            policy.iam_size() <= INLINE_POLICY_MAX_CHARS,
            "{}",
            policy.iam_size()
        );
    }

    #[test]
    fn iam_size_ignores_whitespace() {
        let policy = PolicyDocument::scoped_to(&config(), PolicyOptions::default());
        let pretty = policy.to_pretty_json();
        assert_eq!(
            pretty.chars().filter(|c| !c.is_whitespace()).count(),
            policy.iam_size()
        );
        assert!(pretty.len() > policy.iam_size());
    }

    #[test]
    fn the_admin_policy_never_grants_user_creation_without_the_boundary_condition() {
        let admin = PolicyDocument::admin("arn:aws:iam::123456789012:policy/arq-lockdown-boundary");
        let statements = admin.as_value()["Statement"].as_array().unwrap();
        for statement in statements {
            let actions: Vec<&str> = statement["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let creates =
                actions.contains(&"iam:CreateUser") || actions.contains(&"iam:PutUserPolicy");
            assert_eq!(
                creates,
                statement.get("Condition").is_some(),
                "{statement}: CreateUser/PutUserPolicy only, and always, under the condition"
            );
        }
        let all: usize = statements
            .iter()
            .map(|s| s["Action"].as_array().unwrap().len())
            .sum();
        assert_eq!(all, iam_names::ADMIN_ACTIONS.len());
    }

    #[test]
    fn policy_options_survive_their_tag_and_nothing_else_parses() {
        for options in PolicyOptions::all() {
            let value = options.tag_value();
            assert_eq!(
                PolicyOptions::from_tag_value(&value),
                Some(options),
                "{value}"
            );
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-+".contains(c)),
                "{value} must stay within IAM's tag characters"
            );
        }
        assert_eq!(PolicyOptions::default().tag_value(), "default");
        assert_eq!(
            PolicyOptions::all()[3].tag_value(),
            "legacy-glacier+no-computer-listing"
        );
        for junk in [
            "",
            "none",
            "legacy-glacier,no-computer-listing",
            "no-computer-listing+legacy-glacier",
            "legacy-glacier+legacy-glacier",
            "default+legacy-glacier",
            "legacy-glacier+",
        ] {
            assert_eq!(PolicyOptions::from_tag_value(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_value_is_the_document_iam_receives() {
        let policy = PolicyDocument::scoped_to(&config(), PolicyOptions::default());
        let parsed: Value = serde_json::from_str(&policy.to_compact_json()).unwrap();
        assert_eq!(policy.as_value(), &parsed);
        assert_eq!(parsed["Version"], "2012-10-17");
    }
}
