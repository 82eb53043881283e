//! What makes a window or a node name acceptable: the one definition the scorer's
//! ingest enforces on the network and an agent checks before it sends.

use crate::NodeWindow;

/// Longest node name Kubernetes allows (a DNS subdomain).
pub const MAX_NODE_NAME: usize = 253;
/// Most metrics one window may carry; far above what any collector sends.
pub const MAX_METRICS: usize = 4096;

/// Why a window is refused, or `Ok`: what the scorer's ingest stores and an agent may
/// send (a replaying agent checks its file's windows with it before sending).
pub fn window(w: &NodeWindow) -> Result<(), String> {
    node_name(&w.node_name)?;
    if w.agent_id.is_empty() {
        return Err("agent_id is empty".into());
    }
    if w.sequence == 0 {
        return Err("sequence must start at 1".into());
    }
    if w.end_unix_ms < w.start_unix_ms {
        return Err(format!("window ends ({}) before it starts ({})", w.end_unix_ms, w.start_unix_ms));
    }
    if w.metrics.len() > MAX_METRICS {
        return Err(format!("{} metrics, at most {MAX_METRICS} allowed", w.metrics.len()));
    }
    for (name, s) in &w.metrics {
        if name.is_empty() {
            return Err("a metric has an empty name".into());
        }
        for (stat, v) in [("mean", s.mean), ("max", s.max), ("p95", s.p95), ("last", s.last)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("metric {name:?} has {stat} = {v}: values must be finite and non-negative"));
            }
        }
    }
    Ok(())
}

/// Checks a node name from the network.
pub fn node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("node name is empty".into());
    }
    if name.len() > MAX_NODE_NAME {
        return Err(format!("node name is {} bytes long, at most {MAX_NODE_NAME} allowed", name.len()));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("node name {name:?} contains whitespace or control characters"));
    }
    Ok(())
}
