//! The streaming client to the scorer's `fitsched.v1.Ingest/Stream`.
//!
//! Windows wait in a bounded [`Outbox`] until the scorer acknowledges them; every
//! (re)connection starts by resending the newest acknowledged window, then what is
//! still unacknowledged, in order. The newest acknowledged one is sent again because the
//! scorer at the other end may be a restarted process that holds nothing: it scores from
//! its first connection instead of one window later (a scorer that still has it counts a
//! duplicate and stores nothing). The
//! client never gives up: while the scorer is away it keeps accepting windows (dropping
//! the oldest beyond the buffer) and retries with capped, jittered exponential backoff.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use fitsched_proto::ingest_client::IngestClient;
use fitsched_proto::{IngestAck, NodeWindow};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tracing::{debug, error, info, warn};

use crate::rng::SplitMix64;
use crate::status::NodeProgress;
use crate::telemetry;

/// Unacknowledged windows, oldest first, at most `capacity` of them, and the newest
/// acknowledged one.
#[derive(Debug)]
pub struct Outbox {
    windows: VecDeque<NodeWindow>,
    capacity: usize,
    acked: Option<NodeWindow>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { windows: VecDeque::with_capacity(capacity), capacity, acked: None }
    }

    /// Queues a window; returns the oldest one if it had to make room.
    pub fn push(&mut self, window: NodeWindow) -> Option<NodeWindow> {
        let dropped = if self.windows.len() >= self.capacity { self.windows.pop_front() } else { None };
        self.windows.push_back(window);
        dropped
    }

    /// Forgets every window up to and including `sequence`; returns how many.
    pub fn ack(&mut self, sequence: u64) -> usize {
        let before = self.windows.len();
        // Sequences only grow, so acknowledged windows form a prefix.
        while self.windows.front().is_some_and(|w| w.sequence <= sequence) {
            self.acked = self.windows.pop_front();
        }
        before - self.windows.len()
    }

    /// Removes the oldest window: the one the scorer refused (it stores and acknowledges
    /// in order, so the first unacknowledged window is the one it stopped at).
    pub fn reject_oldest(&mut self) -> Option<NodeWindow> {
        self.windows.pop_front()
    }

    /// Windows with a sequence above `sequence`, oldest first: what a stream that already
    /// carried everything up to `sequence` still has to send. From 0 (a new stream) that
    /// starts with the newest acknowledged window.
    pub fn after(&self, sequence: u64) -> impl Iterator<Item = &NodeWindow> {
        self.acked.iter().chain(&self.windows).filter(move |w| w.sequence > sequence)
    }

    pub fn oldest_sequence(&self) -> Option<u64> {
        self.windows.front().map(|w| w.sequence)
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling from
/// `initial` up to `max`.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: SplitMix64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, rng: SplitMix64) -> Self {
        let max = max.max(initial);
        Self { initial, max, next: initial, rng }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        // Jitter keeps a fleet of agents from reconnecting in lockstep after a scorer restart.
        d.mul_f64(0.5 + 0.5 * self.rng.next_f64())
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// How the client reaches the scorer and how patient it is.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub endpoint: Endpoint,
    /// Maximum unacknowledged windows kept.
    pub buffer: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A stream that carries unacknowledged windows but gets no ack for this long is
    /// considered dead (half-open connection, wedged scorer) and reopened.
    pub ack_timeout: Duration,
    /// File with the bearer token the scorer expects; read at every connect.
    pub token_file: Option<std::path::PathBuf>,
}

impl StreamConfig {
    /// Defaults for a plaintext `scorer` (`http://host:port`; a bare `host:port` gets
    /// `http://`).
    pub fn new(scorer: &str, buffer: usize, window: Duration) -> anyhow::Result<Self> {
        Self::with_endpoint(fitsched_runtime::scorer_endpoint(scorer, None, None)?, buffer, window)
    }

    /// Defaults around an endpoint built elsewhere (e.g. with TLS).
    pub fn with_endpoint(endpoint: Endpoint, buffer: usize, window: Duration) -> anyhow::Result<Self> {
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Self {
            endpoint,
            buffer,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            ack_timeout: (window * 3).max(Duration::from_secs(30)),
            token_file: None,
        })
    }
}

/// Why a session with the scorer ended.
enum SessionEnd {
    /// The window producer is gone: the agent is shutting down.
    InputClosed,
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Starting,
    Up,
    Down,
}

/// One node's stream to the scorer; run it with [`StreamClient::run`].
pub struct StreamClient {
    config: StreamConfig,
    status: Arc<NodeProgress>,
    windows: mpsc::Receiver<NodeWindow>,
    outbox: Outbox,
    backoff: Backoff,
    link: Link,
    /// When each in-flight window was (last) sent, oldest first, for the round-trip time.
    sent_at: VecDeque<(u64, Instant)>,
}

impl StreamClient {
    /// The client reads windows from `windows` until that channel closes.
    pub fn new(config: StreamConfig, status: Arc<NodeProgress>, windows: mpsc::Receiver<NodeWindow>) -> Self {
        let jitter = SplitMix64::new(crate::rng::mix(
            SplitMix64::from_entropy().next_u64()
                ^ status.agent_id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
        ));
        Self {
            outbox: Outbox::new(config.buffer),
            backoff: Backoff::new(config.backoff_initial, config.backoff_max, jitter),
            config,
            status,
            windows,
            link: Link::Starting,
            sent_at: VecDeque::new(),
        }
    }

    fn node(&self) -> &str {
        &self.status.node_name
    }

    /// Streams until the window channel closes. Never returns an error: the scorer being
    /// down is a state to wait out, not a reason to stop collecting.
    pub async fn run(mut self) {
        loop {
            let reason = match self.session().await {
                SessionEnd::InputClosed => break,
                SessionEnd::Failed(reason) => reason,
            };
            self.status.set_connected(false);
            if self.link == Link::Down {
                debug!(node = self.node(), %reason, "scorer still unreachable");
            } else {
                let what = if self.link == Link::Up {
                    "lost the scorer; buffering windows and retrying"
                } else {
                    "scorer unreachable; buffering windows and retrying"
                };
                warn!(node = self.node(), scorer = %self.config.endpoint.uri(), %reason, buffered = self.outbox.len(), "{what}");
                self.link = Link::Down;
            }
            metrics::counter!(telemetry::STREAM_RECONNECTS, "node" => self.node().to_owned()).increment(1);
            let delay = self.backoff.next_delay();
            if !self.wait(delay).await {
                break;
            }
        }
        self.status.set_connected(false);
        if !self.outbox.is_empty() {
            info!(
                node = self.node(),
                unacknowledged = self.outbox.len(),
                "stream client stopping with windows unacknowledged"
            );
        }
    }

    /// Sleeps for `delay` while still accepting windows; false if the input closed.
    async fn wait(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return true,
                w = self.windows.recv() => match w {
                    Some(w) => self.enqueue(w),
                    None => return false,
                },
            }
        }
    }

    fn enqueue(&mut self, window: NodeWindow) {
        if let Some(dropped) = self.outbox.push(window) {
            metrics::counter!(telemetry::WINDOWS_DROPPED, "node" => self.node().to_owned()).increment(1);
            warn!(node = self.node(), sequence = dropped.sequence, "resend buffer full; dropped the oldest window");
        }
        self.publish_buffered();
    }

    fn publish_buffered(&self) {
        self.status.set_buffered(self.outbox.len());
        metrics::gauge!(telemetry::BUFFERED_WINDOWS, "node" => self.node().to_owned()).set(self.outbox.len() as f64);
    }

    /// Sends every buffered window above `sent_upto` on the stream.
    fn forward(&mut self, tx: &mpsc::UnboundedSender<NodeWindow>, sent_upto: &mut u64) {
        let now = Instant::now();
        for w in self.outbox.after(*sent_upto) {
            debug!(node = self.node(), sequence = w.sequence, samples = w.samples, "sending window");
            // A closed receiver means the stream is ending; its error arrives on the ack side.
            let _ = tx.send(w.clone());
            *sent_upto = w.sequence;
            self.sent_at.retain(|(seq, _)| *seq != w.sequence);
            self.sent_at.push_back((w.sequence, now));
        }
    }

    fn on_ack(&mut self, ack: &IngestAck) {
        if !ack.agent_id.is_empty() && ack.agent_id != self.status.agent_id {
            warn!(node = self.node(), ack_agent = %ack.agent_id, "ignoring an acknowledgement for another agent");
            return;
        }
        let acked = self.outbox.ack(ack.acked_sequence);
        if let Some(rtt) = take_rtt(&mut self.sent_at, ack.acked_sequence, Instant::now()) {
            self.status.set_rtt(rtt);
        }
        self.status.set_last_acked_sequence(ack.acked_sequence);
        metrics::counter!(telemetry::WINDOWS_ACKED, "node" => self.node().to_owned()).increment(acked as u64);
        self.publish_buffered();
        self.backoff.reset();
        if self.link != Link::Up {
            info!(node = self.node(), scorer = %self.config.endpoint.uri(), acked_sequence = ack.acked_sequence, "streaming windows to the scorer");
            self.link = Link::Up;
        }
    }

    /// Handles a stream error; returns the reason to reconnect with.
    fn on_status(&mut self, status: &Status) -> String {
        if status.code() == Code::InvalidArgument {
            // Resending it would fail the same way forever.
            if let Some(w) = self.outbox.reject_oldest() {
                metrics::counter!(telemetry::WINDOWS_REJECTED, "node" => self.node().to_owned()).increment(1);
                error!(
                    node = self.node(),
                    sequence = w.sequence,
                    message = status.message(),
                    "scorer rejected a window as invalid; dropping it"
                );
                self.publish_buffered();
            }
        }
        format!("stream error: {}: {}", status.code(), status.message())
    }

    /// One connection: connect, resend, stream until something breaks.
    async fn session(&mut self) -> SessionEnd {
        let endpoint = self.config.endpoint.clone();
        let connect = endpoint.connect();
        tokio::pin!(connect);
        let channel = loop {
            tokio::select! {
                res = &mut connect => match res {
                    Ok(channel) => break channel,
                    Err(e) => return SessionEnd::Failed(format!("connect: {}", error_chain(&e))),
                },
                w = self.windows.recv() => match w {
                    Some(w) => self.enqueue(w),
                    None => return SessionEnd::InputClosed,
                },
            }
        };

        let (tx, rx) = mpsc::unbounded_channel();
        let mut sent_upto = 0;
        self.forward(&tx, &mut sent_upto);
        debug!(node = self.node(), resending = self.outbox.len(), "ingest stream opening");
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        if let Some(path) = &self.config.token_file {
            // Read per connect, so a rotated Secret is picked up at the next reconnect.
            let header = fitsched_runtime::read_token(path).map_err(|e| format!("{e:#}")).and_then(|t| {
                format!("Bearer {t}").parse().map_err(|_| "the token is not a valid header value".to_owned())
            });
            match header {
                Ok(h) => {
                    request.metadata_mut().insert("authorization", h);
                }
                Err(e) => return SessionEnd::Failed(e),
            }
        }
        let mut client = IngestClient::new(channel);
        let open = client.stream(request);
        tokio::pin!(open);
        // Evidence that the scorer is making progress: reset on every ack and whenever
        // windows go in flight on an idle stream.
        let mut progress = Instant::now();
        let ack_timeout = self.config.ack_timeout;
        let in_flight = |outbox: &Outbox, sent_upto: u64| outbox.oldest_sequence().is_some_and(|s| s <= sent_upto);

        // Until the scorer answers the call there is no ack stream yet; windows keep
        // flowing into the request stream either way.
        let mut acks: Option<tonic::Streaming<IngestAck>> = None;
        loop {
            let waiting = in_flight(&self.outbox, sent_upto);
            tokio::select! {
                res = &mut open, if acks.is_none() => match res {
                    Ok(response) => {
                        acks = Some(response.into_inner());
                        self.status.set_connected(true);
                    }
                    Err(status) => return SessionEnd::Failed(self.on_status(&status)),
                },
                msg = next_ack(&mut acks) => match msg {
                    Ok(Some(ack)) => {
                        progress = Instant::now();
                        self.on_ack(&ack);
                    }
                    Ok(None) => return SessionEnd::Failed("the scorer closed the stream".into()),
                    Err(status) => return SessionEnd::Failed(self.on_status(&status)),
                },
                w = self.windows.recv() => match w {
                    Some(w) => {
                        if !waiting { progress = Instant::now() }
                        self.enqueue(w);
                        self.forward(&tx, &mut sent_upto);
                    }
                    None => return SessionEnd::InputClosed,
                },
                () = tokio::time::sleep_until(progress + ack_timeout), if waiting => {
                    let what = if acks.is_none() { "answer the stream" } else { "acknowledge" };
                    return SessionEnd::Failed(format!("the scorer did not {what} within {ack_timeout:?}"));
                }
            }
        }
    }
}

/// An error and its sources, since tonic's transport errors say little at the top level.
pub fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

/// The round-trip time of the acknowledged window `acked`, measured from its (last)
/// send, forgetting every send it covers. `None` when it was not sent on this stream.
pub fn take_rtt(sent_at: &mut VecDeque<(u64, Instant)>, acked: u64, now: Instant) -> Option<Duration> {
    let mut rtt = None;
    while let Some(&(seq, at)) = sent_at.front() {
        if seq > acked {
            break;
        }
        if seq == acked {
            rtt = Some(now.saturating_duration_since(at));
        }
        sent_at.pop_front();
    }
    rtt
}

/// The next acknowledgement, or never while the stream is not open yet.
async fn next_ack(acks: &mut Option<tonic::Streaming<IngestAck>>) -> Result<Option<IngestAck>, tonic::Status> {
    match acks {
        Some(a) => a.message().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_measured_from_the_acknowledged_send() {
        let t0 = Instant::now();
        let mut sent: VecDeque<(u64, Instant)> = (1..=3).map(|s| (s, t0 + Duration::from_millis(s * 10))).collect();
        assert_eq!(take_rtt(&mut sent, 2, t0 + Duration::from_millis(25)), Some(Duration::from_millis(5)));
        assert_eq!(sent.len(), 1, "sends up to the ack are forgotten");
        assert_eq!(take_rtt(&mut sent, 7, t0 + Duration::from_millis(40)), None, "never sent on this stream");
        assert!(sent.is_empty());
    }

    fn window(sequence: u64) -> NodeWindow {
        NodeWindow { node_name: "n".into(), agent_id: "a".into(), sequence, ..Default::default() }
    }

    fn seqs<'a>(it: impl Iterator<Item = &'a NodeWindow>) -> Vec<u64> {
        it.map(|w| w.sequence).collect()
    }

    #[test]
    fn outbox_acks_prefixes_and_resends_in_order() {
        let mut o = Outbox::new(5);
        for s in 1..=4 {
            assert!(o.push(window(s)).is_none());
        }
        assert_eq!(seqs(o.after(0)), [1, 2, 3, 4]);
        assert_eq!(seqs(o.after(2)), [3, 4]);
        assert_eq!(o.ack(2), 2);
        assert_eq!(o.ack(1), 0, "an old ack is harmless");
        assert_eq!(seqs(o.after(0)), [2, 3, 4], "a new stream starts with the newest acknowledged window");
        assert_eq!(seqs(o.after(2)), [3, 4]);
        assert_eq!(o.ack(10), 2, "an ack beyond what was sent clears everything up to it");
        assert!(o.is_empty());
        assert_eq!(o.oldest_sequence(), None);
        assert_eq!(seqs(o.after(0)), [4]);
        assert_eq!(seqs(o.after(4)), Vec::<u64>::new());
    }

    #[test]
    fn outbox_overflow_drops_the_oldest() {
        let mut o = Outbox::new(3);
        let dropped: Vec<_> = (1..=5).filter_map(|s| o.push(window(s))).map(|w| w.sequence).collect();
        assert_eq!(dropped, [1, 2]);
        assert_eq!(seqs(o.after(0)), [3, 4, 5]);
        assert_eq!(o.len(), 3);
        assert_eq!(o.reject_oldest().map(|w| w.sequence), Some(3));
        assert_eq!(Outbox::new(0).capacity, 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(10), SplitMix64::new(3));
        let mut nominal = Duration::from_millis(200);
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            nominal = (nominal * 2).min(Duration::from_secs(10));
        }
        assert!(b.next_delay() >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }

    #[test]
    fn scorer_address_without_scheme_gets_http() {
        let c = StreamConfig::new("scorer:50051", 30, Duration::from_secs(20)).unwrap();
        assert_eq!(c.endpoint.uri().to_string(), "http://scorer:50051/");
        assert_eq!(c.ack_timeout, Duration::from_secs(60));
        assert!(StreamConfig::new("http://bad host", 30, Duration::from_secs(20)).is_err());
    }
}
