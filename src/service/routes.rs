//! Routing and the HTTP envelope: which path runs which handler, the body's limits (its size, and
//! the time it may take to arrive), and what every request gets whatever its handler decides — its
//! work, one JSON log line (never a secret) and a count in `/metrics`, all run to their end on a
//! task of its own even when the client goes away, and the answer: the handler's JSON, or the
//! refusal's status and [`ErrorBody`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

use super::Service;
use super::refusal::Refusal;
use crate::protocol::{ENROLL, ErrorBody, RETIRE, ROTATE};

/// Request bodies are a few kilobytes; anything over this is refused unread.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// A body must have arrived this long after its headers (which have their own time,
/// [`super::connections`]'): a client that trickles it holds a connection no longer.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

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
        .with_state(service)
}

/// The request's body, read within its limits.
async fn read(body: Body) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Refusal::too_large()),
        Err(_) => Err(Refusal::too_slow()),
    }
}

async fn enroll(State(service): State<Arc<Service>>, body: Body) -> Response {
    answer(service, "enroll", body, |work, body| async move {
        let mut who = Requester::default();
        let result = work.enroll(&body, &mut who).await;
        (who, result.map(axum::Json))
    })
    .await
}

async fn rotate(State(service): State<Arc<Service>>, body: Body) -> Response {
    answer(service, "rotate", body, |work, body| async move {
        let mut who = Requester::default();
        let result = work.rotate(&body, &mut who).await;
        (who, result.map(axum::Json))
    })
    .await
}

async fn retire(State(service): State<Arc<Service>>, body: Body) -> Response {
    answer(service, "retire", body, |work, body| async move {
        let mut who = Requester::default();
        let result = work.retire(&body, &mut who).await;
        (who, result.map(|()| axum::Json(serde_json::json!({}))))
    })
    .await
}

/// Runs a request's work on a task of its own, and logs and counts it there: a client that goes
/// away, or a connection cut at its lifetime, stops neither an IAM write half-way (a key made but
/// never handed out) nor the request's log line. The task holds a ticket, so a stop waits for it.
/// A body that does not arrive whole within its limits is refused, and the connection closed.
async fn answer<T, Work>(
    service: Arc<Service>,
    endpoint: &'static str,
    body: Body,
    work: impl FnOnce(Arc<Service>, Bytes) -> Work,
) -> Response
where
    T: IntoResponse,
    Work: Future<Output = (Requester, Result<T, Refusal>)> + Send + 'static,
{
    let started = Instant::now();
    let body = match read(body).await {
        Ok(body) => body,
        Err(refusal) => {
            let unread = Err::<(), _>(refusal);
            let mut response = finish(&service, endpoint, Requester::default(), started, unread);
            let close = axum::http::HeaderValue::from_static("close");
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, close);
            return response;
        }
    };
    let work = work(service.clone(), body);
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
