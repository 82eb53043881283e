//! What every fitsched binary does at start and stop, in one place so the three behave
//! alike: structured logs on stderr, the process-wide Prometheus recorder, a clean stop
//! on SIGINT or SIGTERM, and the HTTP server loop ([`http`]).
//!
//! This crate holds process plumbing only; no fitsched concept lives here.

pub mod exposition;
pub mod http;
pub mod limits_table;

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Colours only on a terminal,
/// so log collectors store plain text.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Installs the process-wide Prometheus recorder, with explicit buckets for the named
/// histograms (so they render as Prometheus histograms, not summaries), and its upkeep
/// task. Call once per process, inside a Tokio runtime.
pub fn install_prometheus(histograms: &[(&str, &[f64])]) -> anyhow::Result<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .with_context(|| format!("histogram buckets of {name}"))?;
    }
    let handle = builder.install_recorder().context("cannot install the Prometheus recorder")?;
    let upkeep = handle.clone();
    // Without the exporter's own HTTP listener nothing else drains histogram samples.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Completes on SIGINT or SIGTERM (what Kubernetes sends on pod deletion). A signal that
/// cannot be listened for is logged and never fires.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

/// One shutdown for several servers: [`Stop::on`] watches a future (a signal), and each
/// server waits on its own [`Stop::stopped`].
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Stops when `shutdown` completes. Call inside a Tokio runtime.
    pub fn on(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Stop {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// Completes once stopped.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// A gRPC endpoint for the scorer at `url` (`http://host:port`, `https://host:port`, or
/// a bare `host:port` meaning `http://`). `https://` needs `tls_ca`, the PEM file of the
/// CA that signed the scorer's certificate; `tls_domain` overrides the name checked in
/// it (default: the URL's host). A CA with an `http://` URL is refused rather than
/// silently ignored: the operator asked for TLS.
pub fn scorer_endpoint(
    url: &str,
    tls_ca: Option<&Path>,
    tls_domain: Option<&str>,
) -> anyhow::Result<tonic::transport::Endpoint> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    let endpoint = Endpoint::from_shared(url.clone()).with_context(|| format!("invalid scorer address {url:?}"))?;
    match (url.starts_with("https://"), tls_ca) {
        (true, Some(ca)) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading the TLS CA {}", ca.display()))?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(domain) = tls_domain {
                tls = tls.domain_name(domain);
            }
            endpoint.tls_config(tls).context("TLS settings")
        }
        (true, None) => anyhow::bail!("the scorer address {url} is https:// but no --tls-ca was given"),
        (false, Some(_)) => anyhow::bail!("--tls-ca was given but the scorer address {url} is not https://"),
        (false, None) => Ok(endpoint),
    }
}

/// Reads a bearer token from `path`, trimming the trailing newline editors and
/// Kubernetes Secrets leave. An empty token is refused: it would match nothing useful.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the token file {} is empty", path.display());
    Ok(token)
}

/// A bearer token kept in a file (a Secret, or a projected service account token the
/// kubelet rotates), as the `authorization` metadata of gRPC calls. The file is read
/// again when the last read is older than [`BearerToken::RELOAD`], so a rotated token
/// is picked up without a restart and without a file read per call.
#[derive(Debug)]
pub struct BearerToken {
    path: std::path::PathBuf,
    /// The last read, successful or not, and when: a missing file is read (and logged)
    /// once per [`BearerToken::RELOAD`], not once per call.
    current: std::sync::Mutex<Option<(Result<tonic::metadata::AsciiMetadataValue, String>, std::time::Instant)>>,
}

impl BearerToken {
    pub const RELOAD: Duration = Duration::from_secs(10);

    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self { path: path.into(), current: std::sync::Mutex::new(None) }
    }

    /// `Bearer <token>`, or why the file gives none.
    pub fn header(&self) -> anyhow::Result<tonic::metadata::AsciiMetadataValue> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((value, at)) = current.as_ref()
            && at.elapsed() < Self::RELOAD
        {
            return value.clone().map_err(anyhow::Error::msg);
        }
        let read = read_token(&self.path).and_then(|token| {
            format!("Bearer {token}")
                .parse::<tonic::metadata::AsciiMetadataValue>()
                .with_context(|| format!("the token in {} is not a valid header value", self.path.display()))
        });
        let read = read.map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "cannot read a bearer token file");
            format!("{e:#}")
        });
        *current = Some((read.clone(), std::time::Instant::now()));
        read.map_err(anyhow::Error::msg)
    }

    /// Adds the token to `request`'s metadata.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) -> anyhow::Result<()> {
        request.metadata_mut().insert("authorization", self.header()?);
        Ok(())
    }
}

/// HTTP/2 flow-control windows of every fitsched gRPC connection, client and server
/// (bytes). A 5 000-node Score request is ~80 KB, above HTTP/2's default 64 KiB window:
/// with the default every such request waits a round trip for a WINDOW_UPDATE.
pub const H2_STREAM_WINDOW: u32 = 4 << 20;
pub const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// The largest gRPC message any fitsched process sends or accepts, on both ends of every
/// call (tonic's default is 4 MiB): the shim's largest extender body (`--max-body-bytes`,
/// 64 MiB) must fit into one scorer request, and a Filter answer with reasons for tens
/// of thousands of nodes into one response.
pub const MAX_GRPC_MESSAGE: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        assert!(scorer_endpoint("127.0.0.1:50051", None, None).is_ok());
        let err = scorer_endpoint("https://scorer:50051", None, None).unwrap_err();
        assert!(err.to_string().contains("--tls-ca"), "{err}");
        let err = scorer_endpoint("http://scorer:50051", Some(Path::new("/nonexistent")), None).unwrap_err();
        assert!(err.to_string().contains("not https"), "{err}");
        let err = scorer_endpoint("https://scorer:50051", Some(Path::new("/nonexistent/ca.pem")), None).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/ca.pem"), "{err:#}");
    }

    #[test]
    fn a_bearer_token_is_read_from_its_file_and_refused_when_missing() {
        let dir = std::env::temp_dir().join(format!("fitsched-bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t"), "abc\n").unwrap();
        assert_eq!(BearerToken::new(dir.join("t")).header().unwrap(), "Bearer abc");
        assert!(BearerToken::new(dir.join("absent")).header().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tokens_are_trimmed_and_never_empty() {
        let dir = std::env::temp_dir().join(format!("fitsched-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t"), "s3cret\n").unwrap();
        std::fs::write(dir.join("empty"), "\n").unwrap();
        assert_eq!(read_token(&dir.join("t")).unwrap(), "s3cret");
        assert!(read_token(&dir.join("empty")).is_err());
        assert!(read_token(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
