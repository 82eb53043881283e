//! HTTPS on the extender port: `fitsched_runtime::http::serve` with a TLS acceptor in
//! front of the shim's router.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fitsched_runtime::http::{ServeLimits, serve, tls_acceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

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
    let mut config = fitsched_shim::ShimConfig::new("http://127.0.0.1:1");
    config.deadlines.verb = Duration::from_millis(100);
    let app = fitsched_shim::router(&config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        "extender",
        listener,
        app,
        Some(tls_acceptor(&cert, &key).unwrap()),
        ServeLimits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
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
