//! The service's life as systemd drives it: the signals it answers (SIGHUP: read the TLS pair
//! again; SIGTERM, SIGINT: stop) and what must finish before the process exits. Stopping drains:
//! the listener is closed, each open connection finishes the request it is in and then closes,
//! and request work whose client went away runs to its end (an IAM write is never cut half-way
//! when it can be helped) — for at most [`DRAIN_TIMEOUT`], so a stuck client cannot hold a stop.
//! What a connection does is [`super::connections`]'; this module only names the events and counts.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

/// How long a stop waits for connections and request work (systemd's `TimeoutStopSec` is longer).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a signal asks of the service.
pub enum Event {
    /// SIGHUP: read the TLS certificate and key again.
    Reload,
    /// SIGTERM or SIGINT (named): stop accepting, drain, exit 0.
    Stop(&'static str),
}

/// The signals the service answers, installed once: from then on none of them kills the process.
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal. Cancel-safe: a signal is never lost to a `select!` that picked another
    /// branch.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hangup.recv() => Event::Reload,
            _ = self.terminate.recv() => Event::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Event::Stop("SIGINT"),
        }
    }
}

/// Everything that must finish before the process exits: each open connection and each request's
/// work holds a [`Ticket`], and [`InFlight::drain`] waits until none is left.
pub struct InFlight(watch::Sender<bool>);

/// Held while a connection or a request's work is in flight; tells a connection when to finish.
pub struct Ticket(watch::Receiver<bool>);

impl InFlight {
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.0.subscribe())
    }

    /// Tells every connection to finish its request and close, then waits until every ticket is
    /// given back, at most `timeout`. Returns how many were still out.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.0.send_replace(true);
        let _ = tokio::time::timeout(timeout, self.0.closed()).await;
        self.0.receiver_count()
    }
}

impl Ticket {
    /// Resolves once the service is stopping.
    pub async fn stopping(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}
