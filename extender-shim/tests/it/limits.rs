//! The shim's limits, over real connections (`fitsched_runtime::http::serve`): a body too
//! slow is answered 408, one too large 413 even to a client that writes it whole before
//! reading, and bodies past the in-flight budget 503, each with a JSON error.

use std::net::SocketAddr;
use std::time::Duration;

use fitsched_runtime::http::{ServeLimits, serve};
use fitsched_shim::BodyLimits;
use fitsched_shim::ShimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(limits: BodyLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // No scorer listens on port 1: the shim answers neutrally, which is all this needs.
    let mut config = ShimConfig::new("http://127.0.0.1:1");
    config.deadlines.verb = Duration::from_millis(100);
    config.limits = limits;
    let app = fitsched_shim::router(&config).unwrap();
    tokio::spawn(serve("extender", listener, app, None, ServeLimits::default(), std::future::pending()));
    addr
}

fn head(len: usize) -> String {
    format!(
        "POST /prioritize HTTP/1.1\r\nHost: shim\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

async fn answer(conn: &mut TcpStream) -> (u16, serde_json::Value) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw))
        .await
        .expect("answered and closed")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let limits = BodyLimits { read_timeout: Duration::from_millis(300), ..BodyLimits::default() };
    let addr = start(limits).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("{}{{\"", head(100)).as_bytes()).await.unwrap();
    let (status, error) = answer(&mut conn).await;
    assert_eq!(status, 408);
    assert!(error["error"].as_str().unwrap().contains("--body-read-timeout"), "{error}");
}

#[tokio::test]
async fn a_client_that_writes_a_too_large_body_before_reading_gets_the_413() {
    let limits = BodyLimits { max_body_bytes: 1024, ..BodyLimits::default() };
    let addr = start(limits).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let body = vec![b' '; 256 << 10];
    conn.write_all(head(body.len()).as_bytes()).await.unwrap();
    conn.write_all(&body).await.expect("the shim reads what it refuses instead of resetting the connection");
    let (status, error) = answer(&mut conn).await;
    assert_eq!(status, 413);
    assert!(error["error"].as_str().unwrap().contains("--max-body-bytes"), "{error}");
}

#[tokio::test]
async fn bodies_past_the_in_flight_budget_are_refused_at_once() {
    let limits = BodyLimits { max_body_bytes: 4096, max_in_flight_bytes: 6144, read_timeout: Duration::from_secs(5) };
    let addr = start(limits).await;
    // Holds 4 KiB of the 6 KiB budget: it declares 4 096 bytes and sends none yet.
    let mut holder = TcpStream::connect(addr).await.unwrap();
    holder.write_all(head(4096).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(head(4096).as_bytes()).await.unwrap();
    let (status, error) = answer(&mut second).await;
    assert_eq!(status, 503);
    assert!(error["error"].as_str().unwrap().contains("--max-body-bytes-in-flight"), "{error}");
    // A small one still fits, and the holder is served once its body arrives.
    let names = br#"{"Pod":{"metadata":{"name":"p","namespace":"ns"}},"NodeNames":["n1"]}"#;
    let mut small = TcpStream::connect(addr).await.unwrap();
    let close = head(names.len()).replace("Host: shim\r\n", "Host: shim\r\nConnection: close\r\n");
    small.write_all(close.as_bytes()).await.unwrap();
    small.write_all(names).await.unwrap();
    let mut raw = Vec::new();
    small.read_to_end(&mut raw).await.unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw));
    let mut padded = names.to_vec();
    padded.resize(4096, b' ');
    holder.write_all(&padded).await.unwrap();
    let mut buf = [0u8; 12];
    holder.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
}
