//! Outage drills with real processes, each returning its figures: `cargo xtask drill`
//! prints them at full length, `tests/tests/resilience.rs` runs short ones and asserts.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::proxy::Proxy;
use crate::stack::{Stack, StackConfig, free_addr};
use crate::{paths, progress};

/// Sequences the scorer's log says it stored for `node` (debug line "window stored"), in
/// the order it stored them.
pub fn stored(log: &str, node: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("window stored") && l.contains(&format!("node={node} ")))
        .filter_map(|l| l.split("sequence=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What a network cut did to one agent's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct CutFigures {
    pub cut: Duration,
    /// Windows stored after the cut that were made before or during it.
    pub resent: usize,
    /// Sequences never stored, up to the last one stored.
    pub lost: usize,
    /// Sequences stored more than once.
    pub duplicates: usize,
    /// Stored windows whose sequence is below one stored before them.
    pub out_of_order: usize,
    /// From the restore to the scorer holding every window made until then.
    pub caught_up: Duration,
}

/// One agent (1-s windows, a buffer longer than the cut) streams through a [`Proxy`]
/// that is cut for `cut`, then restored.
pub fn network_cut(name: &str, cut: Duration) -> anyhow::Result<CutFigures> {
    let node = format!("{name}-node");
    let scorer = free_addr()?;
    let proxy = Proxy::start(scorer)?;
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: vec![Some(node.clone())],
        agent_args: vec!["--buffer".into(), (cut.as_secs() + 30).to_string()],
        scorer_grpc: Some(scorer),
        agent_scorer: Some(format!("http://{}", proxy.addr)),
        log_filter: "info,fitsched_scorer::ingest=debug".into(),
        log_dir: paths::target_dir().join("fitsched-logs").join(name),
        ..StackConfig::default()
    };
    let stack = Stack::start(config)?;
    wait_until("three stored windows", Duration::from_secs(30), || stored(&stack.log("scorer"), &node).len() >= 3)?;
    progress(format!("{name}: cutting the agent's connection to the scorer for {cut:?}"));
    proxy.cut();
    let before = stored(&stack.log("scorer"), &node).len();
    std::thread::sleep(cut);
    proxy.restore();
    let restored = Instant::now();
    let last_made = stored(&stack.log("scorer"), &node).iter().max().copied().unwrap_or(0) + cut.as_secs();
    wait_until("the cut's windows to arrive", cut + Duration::from_secs(60), || {
        stored(&stack.log("scorer"), &node).iter().max().is_some_and(|&m| m >= last_made)
    })?;
    let caught_up = restored.elapsed();
    let all = stored(&stack.log("scorer"), &node);
    let max = all.iter().copied().max().unwrap_or(0);
    let unique: std::collections::BTreeSet<u64> = all.iter().copied().collect();
    Ok(CutFigures {
        cut,
        resent: all.len().saturating_sub(before),
        lost: (1..=max).filter(|s| !unique.contains(s)).count(),
        duplicates: all.len() - unique.len(),
        out_of_order: all.windows(2).filter(|w| w[1] < w[0]).count(),
        caught_up,
    })
}

/// What a scorer slowed past the shim's deadline did to the answers kube-scheduler got.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowFigures {
    pub deadline: Duration,
    pub delay: Duration,
    pub requests: usize,
    /// Answers that were 200 with every node at the neutral score.
    pub neutral: usize,
    pub p50: Duration,
    pub max: Duration,
    /// The shim's resident memory before and after the requests, KiB.
    pub rss_kib: (u64, u64),
}

/// The shim reaches the scorer through a [`Proxy`] that holds every chunk `delay`;
/// `requests` `/prioritize` calls follow one another, as kube-scheduler sends them.
pub fn slow_scorer(name: &str, delay: Duration, requests: usize) -> anyhow::Result<SlowFigures> {
    let deadline = Duration::from_millis(300);
    let scorer = free_addr()?;
    let proxy = Proxy::start(scorer)?;
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: vec![Some(format!("{name}-node"))],
        scorer_grpc: Some(scorer),
        shim_scorer: Some(format!("http://{}", proxy.addr)),
        shim_args: vec!["--deadline".into(), format!("{}ms", deadline.as_millis())],
        log_dir: paths::target_dir().join("fitsched-logs").join(name),
        ..StackConfig::default()
    };
    let mut stack = Stack::start(config)?;
    let node = format!("{name}-node");
    stack.wait_for_nodes(&[node.as_str()], 1, Duration::from_secs(60))?;
    let body = serde_json::json!({"Pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}},
        "NodeNames": [node, "other-node"]})
    .to_string();
    let agent = crate::process::http_agent(Duration::from_secs(10));
    let url = format!("{}/prioritize", stack.shim_url());
    let rss = || -> anyhow::Result<u64> {
        let pid = stack.pid("shim").ok_or_else(|| anyhow::anyhow!("the shim is not running"))?;
        crate::process::status_kib(pid, "VmRSS")
    };
    progress(format!("{name}: the scorer slowed by {delay:?}, past the shim's {deadline:?} deadline"));
    proxy.slow(delay);
    let before = rss()?;
    let mut latencies = Vec::with_capacity(requests);
    let mut neutral = 0;
    for _ in 0..requests {
        let t = Instant::now();
        let mut r = agent.post(&url).send(body.as_str())?;
        latencies.push(t.elapsed());
        let answer: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        let all_neutral =
            answer.as_array().is_some_and(|a| a.iter().all(|h| h["Score"] == fitsched_proto::score::NEUTRAL));
        if r.status() == 200 && all_neutral {
            neutral += 1;
        }
    }
    let after = rss()?;
    proxy.restore();
    latencies.sort();
    Ok(SlowFigures {
        deadline,
        delay,
        requests,
        neutral,
        p50: latencies[latencies.len() / 2],
        max: *latencies.last().unwrap_or(&Duration::ZERO),
        rss_kib: (before, after),
    })
}
