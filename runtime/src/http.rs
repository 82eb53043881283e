//! The one HTTP server loop of every fitsched binary (the shim's extender API, every
//! `/metrics` and `/health`), plain or over TLS, with the limits a server on a
//! scheduler's critical path needs and `axum::serve` does not offer:
//!
//! - a client must send its request head within [`ServeLimits::header_read_timeout`],
//!   or the connection is closed (a client holding a connection with half a request is
//!   otherwise held for as long as it likes);
//! - at most [`ServeLimits::max_connections`] connections are open; past that, new ones
//!   wait in the listen backlog rather than each taking a task and buffers;
//! - a TLS handshake must finish within [`ServeLimits::handshake_timeout`];
//! - `TCP_NODELAY` on every accepted connection: a client waiting on each answer would
//!   otherwise see its tail held back by Nagle's algorithm until a delayed ACK (40 ms).
//!
//! Body size and body read time are the application's (the shim answers them with
//! 413 and 408 and a JSON body); see `fitsched_shim::api`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Metric names, all prefixed `fitsched_`.
pub mod series {
    /// Counter: connections dropped because their TLS handshake failed or timed out.
    pub const TLS_HANDSHAKE_FAILURES: &str = "fitsched_http_tls_handshake_failures_total";
    /// Gauge: open HTTP connections.
    pub const CONNECTIONS: &str = "fitsched_http_connections";
}

/// Describes the metrics of this module; call after installing the recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        series::TLS_HANDSHAKE_FAILURES,
        "HTTPS connections dropped because their TLS handshake failed or timed out."
    );
    metrics::describe_gauge!(series::CONNECTIONS, "Open HTTP connections, by listener.");
}

/// Connection-level limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

impl Default for ServeLimits {
    /// 5 s for a request head (kube-scheduler sends its in one write), 1 024
    /// connections, 10 s for a TLS handshake.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A TLS acceptor for HTTP/1.1 from a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not make a TLS identity")?;
    // kube-scheduler's Go client speaks HTTP/1.1 to extenders; so does this server.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes, then
/// lets open requests finish. `name` labels the connection gauge.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let open = metrics::gauge!(series::CONNECTIONS, "listener" => name);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            slot = slots.clone().acquire_owned() => slot.context("connection slots closed")?,
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        nodelay(&tcp);
        let (tls, app, stop, open) = (tls.clone(), app.clone(), stop_rx.clone(), open.clone());
        connections.spawn(async move {
            open.increment(1.0);
            match tls {
                None => serve_connection(tcp, app, limits, stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_connection(stream, app, limits, stop).await,
                    Ok(Err(e)) => {
                        metrics::counter!(series::TLS_HANDSHAKE_FAILURES).increment(1);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!(series::TLS_HANDSHAKE_FAILURES).increment(1);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                },
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection<I>(io: I, app: Router, limits: ServeLimits, mut stop: tokio::sync::watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Nagle's algorithm off on an accepted connection (see the module docs). The one place
/// every fitsched server sets it, HTTP here and gRPC through [`nodelay_incoming`].
pub fn nodelay(conn: &TcpStream) {
    if let Err(e) = conn.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// The connections `listener` accepts, with [`nodelay`], for tonic's
/// `serve_with_incoming`: a unary gRPC answer is several HTTP/2 frames, and with Nagle on
/// the later ones waited for the client's delayed ACK (40 ms on every shim call).
pub fn nodelay_incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        nodelay(&conn);
        Ok(conn)
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(limits: ServeLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/health", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve("test", listener, app, None, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
        let limits = ServeLimits { header_read_timeout: Duration::from_millis(200), ..ServeLimits::default() };
        let (addr, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut rest = Vec::new();
        // Closed by the server: read_to_end returns (a hang would time the test out).
        let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection was held open");
        // The server still answers others.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn connections_past_the_limit_wait_for_a_slot() {
        let limits = ServeLimits { max_connections: 1, ..ServeLimits::default() };
        let (addr, _stop) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 12];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        // The first connection is kept alive: the second is accepted by the kernel but
        // not served until the first closes.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read_to_end(&mut answer)).await;
        assert!(waited.is_err(), "served past the connection limit: {answer:?}");
        drop(first);
        let mut answer = String::new();
        second.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
