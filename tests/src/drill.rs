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
