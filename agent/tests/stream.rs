//! The stream client against a real in-process tonic server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Behaviour, FakeScorer, free_addr, wait_until};
use fitsched_agent::NodeProgress;
use fitsched_agent::{StreamClient, StreamConfig};
use fitsched_proto::NodeWindow;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(15);

fn window(sequence: u64) -> NodeWindow {
    NodeWindow {
        node_name: "n1".into(),
        agent_id: "agent-1".into(),
        sequence,
        start_unix_ms: sequence as i64 * 20_000,
        end_unix_ms: (sequence as i64 + 1) * 20_000,
        ..Default::default()
    }
}

fn client(
    addr: std::net::SocketAddr,
    buffer: usize,
) -> (mpsc::Sender<NodeWindow>, Arc<NodeProgress>, tokio::task::JoinHandle<()>) {
    let mut config = StreamConfig::new(&format!("http://{addr}"), buffer, Duration::from_secs(1)).unwrap();
    // Fast retries keep the test short; the logic is the same as with the defaults.
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    config.endpoint = config.endpoint.connect_timeout(Duration::from_secs(1));
    let status = Arc::new(NodeProgress::new("n1", "agent-1"));
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(StreamClient::new(config, Arc::clone(&status), rx).run());
    (tx, status, task)
}

async fn finish(tx: mpsc::Sender<NodeWindow>, task: tokio::task::JoinHandle<()>) {
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("client stops when its input closes").unwrap();
}

#[tokio::test]
async fn windows_arrive_in_order_and_are_resent_after_a_scorer_restart() {
    // The first scorer stores everything but acknowledges only up to 3.
    let first = FakeScorer::start("127.0.0.1:0".parse().unwrap(), Behaviour { ack_up_to: Some(3), reject: None }).await;
    let addr = first.addr;
    let (tx, status, task) = client(addr, 30);
    for s in 1..=5 {
        tx.send(window(s)).await.unwrap();
    }
    assert!(
        wait_until(PATIENCE, || first.sequences().len() == 5 && status.buffered() == 2).await,
        "received {:?}, buffered {}",
        first.sequences(),
        status.buffered()
    );
    assert_eq!(first.sequences(), [1, 2, 3, 4, 5]);
    assert_eq!(status.last_acked_sequence(), 3);
    assert!(status.connected());

    first.stop().await;
    // Windows keep coming while the scorer is away.
    for s in 6..=7 {
        tx.send(window(s)).await.unwrap();
    }
    assert!(wait_until(PATIENCE, || !status.connected()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status.buffered(), 4);

    let second = FakeScorer::start(addr, Behaviour::default()).await;
    assert!(
        wait_until(PATIENCE, || status.buffered() == 0).await,
        "received {:?}, buffered {}",
        second.sequences(),
        status.buffered()
    );
    // The newest acknowledged window (the new scorer may have nothing), the
    // unacknowledged ones in order, then the ones produced during the outage.
    assert_eq!(second.sequences(), [3, 4, 5, 6, 7]);
    assert_eq!(status.last_acked_sequence(), 7);

    tx.send(window(8)).await.unwrap();
    assert!(wait_until(PATIENCE, || second.sequences().last() == Some(&8) && status.buffered() == 0).await);
    finish(tx, task).await;
    second.stop().await;
}

#[tokio::test]
async fn a_scorer_that_is_down_at_start_gets_the_newest_buffered_windows() {
    let addr = free_addr();
    let (tx, status, task) = client(addr, 3);
    for s in 1..=5 {
        tx.send(window(s)).await.unwrap();
    }
    // The client has nowhere to send them; the buffer keeps the newest three.
    assert!(wait_until(PATIENCE, || status.buffered() == 3).await);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let scorer = FakeScorer::start(addr, Behaviour::default()).await;
    assert!(wait_until(PATIENCE, || status.buffered() == 0).await, "received {:?}", scorer.sequences());
    assert_eq!(scorer.sequences(), [3, 4, 5]);
    finish(tx, task).await;
    scorer.stop().await;
}

#[tokio::test]
async fn a_rejected_window_is_dropped_and_streaming_resumes() {
    let scorer =
        FakeScorer::start("127.0.0.1:0".parse().unwrap(), Behaviour { ack_up_to: None, reject: Some(2) }).await;
    let (tx, status, task) = client(scorer.addr, 30);
    for s in 1..=3 {
        tx.send(window(s)).await.unwrap();
    }
    assert!(
        wait_until(PATIENCE, || status.buffered() == 0 && status.last_acked_sequence() == 3).await,
        "received {:?}, buffered {}",
        scorer.sequences(),
        status.buffered()
    );
    let stored = scorer.sequences();
    assert!(!stored.contains(&2), "{stored:?}");
    assert_eq!(stored.first(), Some(&1));
    assert_eq!(stored.last(), Some(&3));
    finish(tx, task).await;
    scorer.stop().await;
}
