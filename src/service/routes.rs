//! Routing and the HTTP envelope: which path runs which handler, the body limit, and what every
//! request gets whatever its handler decides — its work, one JSON log line (never a secret) and a
//! count in `/metrics`, all run to their end on a task of its own even when the client goes away,
//! and the answer: the handler's JSON, or the refusal's status and [`ErrorBody`].

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

use super::Service;
use super::refusal::Refusal;
use crate::protocol::{ENROLL, ErrorBody, RETIRE, ROTATE};

/// Request bodies are a few kilobytes; anything over this is refused unread.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Who asked for what, for the log line.
#[derive(Default)]
pub struct Requester {
    pub computer_uuid: Option<String>,
    pub caller: Option<String>,
}

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route(ENROLL, post(enroll))
        .route(ROTATE, post(rotate))
        .route(RETIRE, post(retire))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

async fn enroll(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let work = service.clone();
    answer(service, "enroll", async move {
        let mut who = Requester::default();
        let result = work.enroll(&body, &mut who).await;
        (who, result.map(axum::Json))
    })
    .await
}

async fn rotate(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let work = service.clone();
    answer(service, "rotate", async move {
        let mut who = Requester::default();
        let result = work.rotate(&body, &mut who).await;
        (who, result.map(axum::Json))
    })
    .await
}

async fn retire(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let work = service.clone();
    answer(service, "retire", async move {
        let mut who = Requester::default();
        let result = work.retire(&body, &mut who).await;
        (who, result.map(|()| axum::Json(serde_json::json!({}))))
    })
    .await
}

/// Runs a request's work on a task of its own, and logs and counts it there: a client that goes
/// away, or a connection cut at its lifetime, stops neither an IAM write half-way (a key made but
/// never handed out) nor the request's log line. The task holds a ticket, so a stop waits for it.
async fn answer<T: IntoResponse>(
    service: Arc<Service>,
    endpoint: &'static str,
    work: impl Future<Output = (Requester, Result<T, Refusal>)> + Send + 'static,
) -> Response {
    let started = Instant::now();
    let ticket = service.in_flight.ticket();
    let detached = service.clone();
    let task = async move {
        let _ticket = ticket;
        let (who, result) = work.await;
        finish(&detached, endpoint, who, started, result)
    };
    tokio::spawn(task).await.unwrap_or_else(|_| {
        let failed = Err::<(), _>(Refusal::internal());
        finish(&service, endpoint, Requester::default(), started, failed)
    })
}

/// Logs one line, counts the result, and turns it into the HTTP answer.
fn finish(
    service: &Service,
    endpoint: &'static str,
    who: Requester,
    started: Instant,
    result: Result<impl IntoResponse, Refusal>,
) -> Response {
    let (status, code, detail, response) = match result {
        Ok(body) => (StatusCode::OK, "ok", None, body.into_response()),
        Err(refusal) => {
            let body = axum::Json(ErrorBody {
                error: refusal.code.to_owned(),
                message: refusal.message,
                access_key_ids: refusal.access_key_ids,
            });
            let response = (refusal.status, body).into_response();
            (refusal.status, refusal.code, refusal.detail, response)
        }
    };
    let line = serde_json::json!({
        "endpoint": endpoint,
        "computer_uuid": who.computer_uuid,
        "caller": who.caller,
        "status": status.as_u16(),
        "result": code,
        "detail": detail,
        "ms": started.elapsed().as_millis() as u64,
    });
    eprintln!("{line}");
    *service
        .metrics
        .lock()
        .expect("metrics lock")
        .entry((endpoint, code.to_owned()))
        .or_default() += 1;
    response
}

async fn metrics(State(service): State<Arc<Service>>) -> String {
    let counts = service.metrics.lock().expect("metrics lock").clone();
    let mut text = String::from(
        "# HELP arq_lockdown_requests_total Requests by endpoint and result.\n# TYPE arq_lockdown_requests_total counter\n",
    );
    for ((endpoint, result), count) in &counts {
        text += &format!(
            "arq_lockdown_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {count}\n"
        );
    }
    text += &format!(
        "# HELP arq_lockdown_iam_permits_free IAM permits not in use.\n# TYPE arq_lockdown_iam_permits_free gauge\narq_lockdown_iam_permits_free {}\n",
        service.iam_permits.available_permits()
    );
    text += &format!(
        "# HELP arq_lockdown_replay_cache_entries Proofs remembered against replays.\n# TYPE arq_lockdown_replay_cache_entries gauge\narq_lockdown_replay_cache_entries {}\n",
        service.replays.lock().expect("replay cache lock").len()
    );
    text
}
