//! HTTPS for the extender API, for a kube-scheduler whose extender entry sets
//! `enableHTTPS: true` (and `tlsConfig` with the CA that signed this certificate).
//!
//! `axum::serve` speaks plain TCP only, so this is the accept loop with a rustls
//! handshake in front of each connection. A failed handshake (a plaintext client, a
//! client that distrusts the certificate) drops that connection only.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client may take over its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counter: connections dropped because their TLS handshake failed or timed out.
pub const HANDSHAKE_FAILURES: &str = "fitsched_shim_tls_handshake_failures_total";

/// The TLS acceptor for a PEM certificate chain and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
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

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets the open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    acceptor: TlsAcceptor,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // kube-scheduler's client waits on every answer; Nagle would hold its tail back.
                let _ = tcp.set_nodelay(true);
                let (acceptor, app, mut stop) = (acceptor.clone(), app.clone(), stop_rx.clone());
                connections.spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            metrics::counter!(HANDSHAKE_FAILURES).increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics::counter!(HANDSHAKE_FAILURES).increment(1);
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let service = TowerToHyperService::new(app);
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        served = conn.as_mut() => {
                            if let Err(e) = served {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::*;

    fn request(body: &str) -> String {
        format!(
            "POST /prioritize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    async fn start(dir: &Path) -> (SocketAddr, CertificateDer<'static>, tokio::sync::oneshot::Sender<()>) {
        let files = fitsched_e2e::stack::TlsFiles::generate(dir).unwrap();
        let ca = CertificateDer::from_pem_file(&files.ca).unwrap();
        let (cert, key) = (files.cert, files.key);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // No scorer listens on port 1: the shim answers neutrally, which is all this needs.
        let mut config = crate::ShimConfig::new("http://127.0.0.1:1");
        config.client.deadline = Duration::from_millis(100);
        let app = crate::router(&config, None).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, acceptor(&cert, &key).unwrap(), async move {
            let _ = stopped.await;
        }));
        (addr, ca, stop)
    }

    #[tokio::test]
    async fn serves_https_and_drops_plaintext_and_distrusting_clients() {
        let dir = std::env::temp_dir().join(format!("fitsched-shim-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (addr, ca, stop) = start(&dir).await;
        let body = r#"{"Pod":{"metadata":{"name":"p","namespace":"ns"}},"NodeNames":["n1","n2"]}"#;

        // A plaintext client gets no HTTP answer, and the server keeps serving.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(request(body).as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1"), "{answer:?}");

        // A client that does not trust the CA fails its handshake.
        let connect = |roots: RootCertStore| async move {
            let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            TlsConnector::from(Arc::new(config)).connect(name, tcp).await
        };
        assert!(connect(RootCertStore::empty()).await.is_err());

        // One that does gets the extender's answer.
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let mut tls = connect(roots).await.unwrap();
        tls.write_all(request(body).as_bytes()).await.unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#"{"Host":"n1","Score":5}"#), "neutral scores without a scorer: {answer}");

        stop.send(()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
