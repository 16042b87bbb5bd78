//! The listening socket and its connections: accepting (at most `max_connections` at once,
//! backing off on accept errors), TLS when configured, HTTP/1.1 handed to the router, the limits
//! on slow clients and on headers (a body's are [`super::routes`]'), the signals
//! ([`super::lifecycle`]), and closing down on a stop. What a request does is [`super::routes`]'.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::lifecycle::{DRAIN_TIMEOUT, Event, InFlight, Signals, Ticket};
use super::tls::Tls;
use super::{Service, ServiceError};

/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A request's headers (and what a connection buffers of its body at once) fit in this; longer
/// ones are answered 431 and the connection closed. The protocol's headers are a few hundred
/// bytes; hyper's default would let each connection hold ~400 KB.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A connection takes no new request after this long; the request under way gets its answer
/// (a key made and never handed out would be lost to its Mac).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// ... and is cut this much later, whatever it is doing.
const LAST_ANSWER_GRACE: Duration = Duration::from_secs(30);
/// Accept errors (file descriptors exhausted, say) are retried after this long, doubling.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves `app` on the configured address until SIGTERM or SIGINT, then stops accepting and
/// drains (see [`super::lifecycle`]).
pub async fn run(service: &Service, tls: Option<Tls>, app: Router) -> Result<(), ServiceError> {
    let listen = service.config.listen;
    let listen_error = |e: std::io::Error| ServiceError::Listen {
        addr: listen,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    let mut signals = Signals::install().map_err(ServiceError::Signals)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("arq-lockdown serve: listening on {scheme}://{local}");
    let stopped_by = serve_until_stopped(service, &listener, &mut signals, tls.as_ref(), app).await;
    // New connections are refused from here on; those open finish their requests.
    drop(listener);
    drain(&service.in_flight, stopped_by).await;
    Ok(())
}

/// Accepts connections and answers SIGHUP until a stop signal, which it returns.
async fn serve_until_stopped(
    service: &Service,
    listener: &TcpListener,
    signals: &mut Signals,
    tls: Option<&Tls>,
    app: Router,
) -> &'static str {
    let connections = Arc::new(Semaphore::new(service.config.max_connections));
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let event = tokio::select! {
            event = signals.next() => event,
            (stream, permit) = accept(listener, &connections, &mut backoff) => {
                let acceptor = tls.map(Tls::acceptor);
                let ticket = service.in_flight.ticket();
                tokio::spawn(connection(stream, acceptor, app.clone(), permit, ticket));
                continue;
            }
        };
        match event {
            Event::Reload => reload(tls),
            Event::Stop(signal) => return signal,
        }
    }
}

/// The next connection and its permit. At `max_connections` this waits for a permit, and new
/// connections wait in the kernel's queue; an accept error (out of file descriptors, say) is
/// retried after `backoff`, which doubles: retrying at once would spin a core. Cancel-safe.
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    backoff: &mut Duration,
) -> (TcpStream, OwnedSemaphorePermit) {
    loop {
        let permit = connections
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        match listener.accept().await {
            Ok((stream, _peer)) => {
                *backoff = ACCEPT_BACKOFF.0;
                return (stream, permit);
            }
            Err(error) => {
                eprintln!(
                    "{}",
                    serde_json::json!({"accept_error": error.to_string(), "retry_ms": backoff.as_millis() as u64})
                );
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// One connection, TLS first when configured: its requests for [`CONNECTION_LIFETIME`], and the
/// last one's answer for at most [`LAST_ANSWER_GRACE`] more.
async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    _permit: OwnedSemaphorePermit,
    ticket: Ticket,
) {
    let last_request = tokio::time::Instant::now() + CONNECTION_LIFETIME;
    let connection = async {
        match tls {
            Some(acceptor) => {
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await
                {
                    serve_connection(stream, app, ticket, last_request).await;
                }
            }
            None => serve_connection(stream, app, ticket, last_request).await,
        }
    };
    let _ = tokio::time::timeout(CONNECTION_LIFETIME + LAST_ANSWER_GRACE, connection).await;
}

/// Serves HTTP/1.1 on one connection; once the service is stopping, or at `last_request`, the
/// request under way is finished and the connection closed (an idle one at once).
async fn serve_connection<S>(
    stream: S,
    app: Router,
    mut ticket: Ticket,
    last_request: tokio::time::Instant,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = ticket.stopping() => connection.as_mut().graceful_shutdown(),
        () = tokio::time::sleep_until(last_request) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// SIGHUP: the TLS pair is read again; one that does not load is logged and the one in use kept.
fn reload(tls: Option<&Tls>) {
    let line = match tls.map(|tls| (tls, tls.reload())) {
        None => serde_json::json!({"signal": "SIGHUP", "tls": "not configured: nothing to reload"}),
        Some((tls, Ok(()))) => serde_json::json!({
            "signal": "SIGHUP",
            "tls": "reloaded",
            "certificate": tls.files().certificate.display().to_string(),
        }),
        Some((_, Err(error))) => serde_json::json!({
            "signal": "SIGHUP",
            "tls": "kept the certificate in use",
            "error": error.to_string(),
        }),
    };
    eprintln!("{line}");
}

/// A stop by `signal`: tells the connections to finish, waits for them and the requests' work,
/// and says how it went.
async fn drain(in_flight: &InFlight, signal: &'static str) {
    eprintln!(
        "{}",
        serde_json::json!({"signal": signal, "stopping": "no new connections; requests in flight may finish", "drain_seconds": DRAIN_TIMEOUT.as_secs()})
    );
    let cut = in_flight.drain(DRAIN_TIMEOUT).await;
    eprintln!(
        "{}",
        serde_json::json!({"stopped": if cut == 0 { "drained" } else { "drain timed out" }, "cut": cut})
    );
}
