//! The whole agent (`run_with`) against an in-process scorer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Parser;
use common::{Behaviour, FakeScorer, free_addr, wait_until};
use fitsched_agent::Args;
use fitsched_agent::SIMULATED_METRICS as METRICS;
use fitsched_proto::{NodeWindow, metric};
use tokio::sync::oneshot;

const PATIENCE: Duration = Duration::from_secs(20);

fn by_node(windows: &[NodeWindow]) -> BTreeMap<String, Vec<NodeWindow>> {
    let mut out: BTreeMap<String, Vec<NodeWindow>> = BTreeMap::new();
    for w in windows {
        out.entry(w.node_name.clone()).or_default().push(w.clone());
    }
    out
}

fn start_agent(
    extra: &[&str],
    scorer: std::net::SocketAddr,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let scorer = format!("http://{scorer}");
    let mut argv = vec!["fitsched-agent", "--node-name", "host-a", "--scorer", &scorer, "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(&["--window", "200ms", "--tick", "20ms"]);
    argv.extend_from_slice(extra);
    let args = Args::try_parse_from(argv).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(fitsched_agent::run_with(args, None, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn stop_agent(stop: oneshot::Sender<()>, task: tokio::task::JoinHandle<anyhow::Result<()>>) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("agent shuts down").unwrap().unwrap();
}

#[tokio::test]
async fn simulated_nodes_stream_their_own_windows_once_the_scorer_comes_up() {
    let addr = free_addr();
    let (stop, task) = start_agent(&["--simulate", "2", "--seed", "5"], addr);
    // The agent starts before the scorer and must keep retrying.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!task.is_finished());

    let scorer = FakeScorer::start(addr, Behaviour::default()).await;
    let enough = || {
        let nodes = by_node(&scorer.windows());
        nodes.len() == 2 && nodes.values().all(|ws| ws.len() >= 4)
    };
    assert!(wait_until(PATIENCE, enough).await, "{:?}", scorer.sequences());
    stop_agent(stop, task).await;
    let nodes = by_node(&scorer.windows());
    scorer.stop().await;

    assert_eq!(nodes.keys().map(String::as_str).collect::<Vec<_>>(), ["sim-node-01", "sim-node-02"]);
    let agent_ids: BTreeSet<_> = nodes.values().map(|ws| ws[0].agent_id.clone()).collect();
    assert_eq!(agent_ids.len(), 2, "each simulated node has its own agent id");
    let all: BTreeSet<&str> = METRICS.into_iter().collect();
    for (node, windows) in &nodes {
        // Windows produced while the scorer was down were buffered, not lost.
        assert_eq!(windows[0].sequence, 1, "{node}");
        for pair in windows.windows(2) {
            assert!(pair[1].sequence > pair[0].sequence, "{node}: {} then {}", pair[0].sequence, pair[1].sequence);
            assert!(pair[1].start_unix_ms > pair[0].start_unix_ms);
        }
        for w in windows {
            assert_eq!(w.agent_id, windows[0].agent_id);
            assert_eq!(w.end_unix_ms - w.start_unix_ms, 200);
            assert_eq!(w.start_unix_ms % 200, 0);
            assert_eq!(w.samples_expected, 10);
            assert!(w.samples >= 1 && w.samples <= 11, "{node} window {}: {} samples", w.sequence, w.samples);
            // The stream's round-trip time joins once acknowledgements flow; until then
            // it is reported missing, the only metric that may be.
            let rtt = fitsched_proto::metric::STREAM_RTT_SECONDS;
            let mut keys: BTreeSet<&str> = w.metrics.keys().map(String::as_str).collect();
            keys.remove(rtt);
            assert_eq!(keys, all);
            assert!(w.missing.iter().all(|m| m.name == rtt), "{:?}", w.missing);
            assert!(w.metrics.contains_key(rtt) || !w.missing.is_empty(), "RTT neither measured nor missing");
        }
    }
}

#[tokio::test]
async fn the_real_collector_reports_rates_after_its_first_tick() {
    if !std::path::Path::new("/proc/stat").exists() {
        return;
    }
    let scorer = FakeScorer::start("127.0.0.1:0".parse().unwrap(), Behaviour::default()).await;
    let (stop, task) = start_agent(&[], scorer.addr);
    assert!(wait_until(PATIENCE, || scorer.windows().len() >= 3).await);
    stop_agent(stop, task).await;
    let windows = scorer.windows();
    scorer.stop().await;

    assert!(windows.iter().all(|w| w.node_name == "host-a"));
    let w = &windows[2];
    assert!(w.metrics[metric::CPU_COUNT].mean >= 1.0);
    assert!(w.metrics.contains_key(metric::CPU_UTILIZATION));
    assert!(w.metrics.contains_key(metric::MEMORY_AVAILABLE_RATIO));
    for name in [metric::PSI_CPU_SOME, metric::PSI_IO_SOME] {
        // Either measured or reported missing, never silently absent.
        assert!(w.metrics.contains_key(name) || w.missing.iter().any(|m| m.name == name), "{name}");
    }
}
