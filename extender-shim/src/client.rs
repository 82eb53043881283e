//! The gRPC client to the scorer: one lazily connected channel, a hard deadline on every
//! call, and a record of whether the scorer answered last time (for `/health`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use fitsched_proto::scorer_client::ScorerClient;
use fitsched_proto::{BindRequest, BindResponse, FilterRequest, FilterResponse, ScoreRequest, ScoreResponse};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How the shim reaches the scorer.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` of the scorer's gRPC server.
    pub url: String,
    /// TCP connect timeout of the (re)connection attempts.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval, so a dead scorer is noticed between scheduling bursts.
    pub keep_alive_interval: Duration,
    /// PEM CA of the scorer's certificate, for an `https://` url.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Name to check in the scorer's certificate instead of the url's host.
    pub tls_domain: Option<String>,
    /// File with the bearer token the scorer knows the shim by.
    pub token_file: Option<std::path::PathBuf>,
    /// A gRPC message, either way ([`crate::Limits::max_grpc_message`]).
    pub max_message_bytes: usize,
}

impl ClientConfig {
    /// The defaults for `url`. Each call's deadline is the caller's
    /// ([`crate::fallback::Deadlines`]).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(1),
            keep_alive_interval: Duration::from_secs(10),
            tls_ca: None,
            tls_domain: None,
            token_file: None,
            max_message_bytes: fitsched_runtime::MAX_GRPC_MESSAGE,
        }
    }
}

/// Why a call to the scorer produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("gRPC status {code:?}: {message}", code = .0.code(), message = .0.message())]
    Status(Status),
}

impl CallError {
    /// The `reason` label of `fitsched_shim_fallbacks_total`; a small fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Status(s) => match s.code() {
                Code::DeadlineExceeded | Code::Cancelled => "timeout",
                Code::Unavailable => "unavailable",
                Code::InvalidArgument => "invalid_argument",
                // The shim's token is missing, wrong or of the wrong role: a
                // configuration error, counted apart so it is not mistaken for load.
                Code::Unauthenticated | Code::PermissionDenied => "unauthorized",
                // Past a message or resource limit of the scorer's.
                Code::OutOfRange | Code::ResourceExhausted => "limit",
                _ => "other",
            },
        }
    }

    /// Whether the scorer itself answered (even with an error status).
    fn scorer_answered(&self) -> bool {
        match self {
            Self::Timeout(_) => false,
            Self::Status(s) => !matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled),
        }
    }
}

const UNKNOWN: u8 = 0;
const REACHABLE: u8 = 1;
const UNREACHABLE: u8 = 2;

/// A cheap-to-clone handle on the scorer.
#[derive(Debug, Clone)]
pub struct Scorer {
    client: ScorerClient<Channel>,
    last: Arc<AtomicU8>,
    /// The shim's credential at the scorer (`--token-file`).
    token: Option<Arc<fitsched_runtime::BearerToken>>,
}

impl Scorer {
    /// Builds the channel without connecting, so the shim starts (and answers neutrally)
    /// while the scorer is down. Must be called inside a Tokio runtime.
    pub fn connect_lazy(config: &ClientConfig) -> anyhow::Result<Self> {
        let channel =
            fitsched_runtime::scorer_endpoint(&config.url, config.tls_ca.as_deref(), config.tls_domain.as_deref())?
                .connect_timeout(config.connect_timeout)
                .tcp_nodelay(true)
                .initial_stream_window_size(fitsched_runtime::H2_STREAM_WINDOW)
                .initial_connection_window_size(fitsched_runtime::H2_CONNECTION_WINDOW)
                .http2_keep_alive_interval(config.keep_alive_interval)
                .keep_alive_while_idle(true)
                .connect_lazy();
        let client = ScorerClient::new(channel)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        Ok(Self {
            client,
            last: Arc::new(AtomicU8::new(UNKNOWN)),
            token: config.token_file.as_ref().map(|p| Arc::new(fitsched_runtime::BearerToken::new(p))),
        })
    }

    /// `reachable`, `unreachable` or `unknown` (no call yet), from the last call.
    pub fn state(&self) -> &'static str {
        match self.last.load(Ordering::Relaxed) {
            REACHABLE => "reachable",
            UNREACHABLE => "unreachable",
            _ => "unknown",
        }
    }

    /// Filters, waiting until `until` at most (the request's deadline).
    pub async fn filter(&self, req: FilterRequest, until: Instant) -> Result<FilterResponse, CallError> {
        self.call(until, req, |mut c, r| async move { c.filter(r).await }).await
    }

    /// Scores, waiting until `until` at most (the request's deadline).
    pub async fn score(&self, req: ScoreRequest, until: Instant) -> Result<ScoreResponse, CallError> {
        self.call(until, req, |mut c, r| async move { c.score(r).await }).await
    }

    /// Tells the scorer of a binding, waiting until `until` at most.
    pub async fn bind(&self, req: BindRequest, until: Instant) -> Result<BindResponse, CallError> {
        self.call(until, req, |mut c, r| async move { c.bind(r).await }).await
    }

    async fn call<M, T, F, Fut>(&self, until: Instant, message: M, f: F) -> Result<T, CallError>
    where
        F: FnOnce(ScorerClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = until.saturating_duration_since(Instant::now());
        let mut request = tonic::Request::new(message);
        // Sent as grpc-timeout so the scorer can give up too; the local timeout below is
        // what actually bounds the wait, including connecting.
        request.set_timeout(deadline);
        if let Some(token) = &self.token
            && let Err(e) = token.authorize(&mut request)
        {
            // Logged by the token itself, once per reload.
            tracing::debug!(error = %format!("{e:#}"), "no token for the scorer; calling without one");
        }
        let outcome = match tokio::time::timeout_at(until.into(), f(self.client.clone(), request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(CallError::Status(status)),
            Err(_) => Err(CallError::Timeout(deadline)),
        };
        let answered = match &outcome {
            Ok(_) => true,
            Err(e) => e.scorer_answered(),
        };
        self.last.store(if answered { REACHABLE } else { UNREACHABLE }, Ordering::Relaxed);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_a_small_fixed_set() {
        assert_eq!(CallError::Timeout(Duration::from_millis(1)).reason(), "timeout");
        assert_eq!(CallError::Status(Status::deadline_exceeded("x")).reason(), "timeout");
        assert_eq!(CallError::Status(Status::unavailable("x")).reason(), "unavailable");
        assert_eq!(CallError::Status(Status::invalid_argument("x")).reason(), "invalid_argument");
        assert_eq!(CallError::Status(Status::internal("x")).reason(), "other");
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_at_start() {
        assert!(Scorer::connect_lazy(&ClientConfig::new("not a url")).is_err());
        let ok = Scorer::connect_lazy(&ClientConfig::new("http://127.0.0.1:1")).unwrap();
        assert_eq!(ok.state(), "unknown");
    }
}
