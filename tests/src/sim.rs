//! A kube-scheduler simulator that speaks the real extender wire format.
//!
//! For each pod it does what kube-scheduler v1.36 does with an extender configured like
//! `extender-shim/testdata/kube-scheduler-extender/*/scheduler-config.yaml`: runs its own
//! resource-fit filter, POSTs `ExtenderArgs` to `/filter` and `/prioritize`, adds
//! `extender score × weight × 10` to its own plugin score (NodeResourcesFit's
//! LeastAllocated, 0..100), picks the best node (ties at random, as kube-scheduler
//! does) and POSTs `ExtenderBindingArgs` to `/bind`.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::stack::http_agent;

/// Which `ExtenderArgs` shape to send (`nodeCacheCapable` true or false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `NodeNames` only.
    Names,
    /// Whole `v1.NodeList` in `Nodes`.
    Full,
}

#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub zone: String,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    requested_cpu: i64,
    requested_memory: i64,
}

impl SimNode {
    pub fn new(name: impl Into<String>, zone: impl Into<String>, cpu_millis: i64, memory_bytes: i64) -> Self {
        Self { name: name.into(), zone: zone.into(), cpu_millis, memory_bytes, requested_cpu: 0, requested_memory: 0 }
    }

    fn fits(&self, pod: &SimPod) -> bool {
        self.requested_cpu + pod.cpu_millis <= self.cpu_millis
            && self.requested_memory + pod.memory_bytes <= self.memory_bytes
    }

    /// NodeResourcesFit's LeastAllocated score (0..100) for `pod` on this node.
    fn least_allocated(&self, pod: &SimPod) -> i64 {
        let free = |cap: i64, used: i64| if cap <= 0 { 0 } else { ((cap - used).max(0) * 100) / cap };
        (free(self.cpu_millis, self.requested_cpu + pod.cpu_millis)
            + free(self.memory_bytes, self.requested_memory + pod.memory_bytes))
            / 2
    }
}

/// A pod to place: one replica of a ReplicaSet, or a bare pod.
#[derive(Debug, Clone)]
pub struct SimPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// (ReplicaSet name, its UID).
    pub owner: Option<(String, String)>,
    /// The `fitsched.io/strategy` annotation.
    pub strategy: Option<String>,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl SimPod {
    /// Replica `i` of ReplicaSet `rs`: the nginx + wrk benchmark pod of the fixtures
    /// (requests 500m + 500m CPU, 256Mi + 64Mi memory).
    pub fn replica(rs: &str, i: usize, strategy: Option<&str>) -> Self {
        Self {
            name: format!("{rs}-{i:02}"),
            namespace: "bench".into(),
            uid: format!("{:08x}-0000-4000-8000-{:012x}", fnv(rs), i),
            owner: Some((rs.to_owned(), format!("{:08x}-1111-4000-8000-000000000000", fnv(rs)))),
            strategy: strategy.map(str::to_owned),
            cpu_millis: 1000,
            memory_bytes: 320 << 20,
        }
    }

    /// The `v1.Pod` kube-scheduler would send, in the fixtures' shape.
    pub fn to_json(&self) -> Value {
        let mut annotations = serde_json::Map::new();
        if let Some(s) = &self.strategy {
            annotations.insert(fitsched_proto::STRATEGY_ANNOTATION.into(), json!(s));
        }
        let owners: Vec<Value> = self
            .owner
            .iter()
            .map(|(name, uid)| {
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                       "controller": true})
            })
            .collect();
        let app = self.owner.as_ref().map_or(self.name.as_str(), |(n, _)| n.as_str());
        json!({
            "metadata": {
                "name": self.name, "namespace": self.namespace, "uid": self.uid,
                "labels": {"app": app}, "annotations": annotations, "ownerReferences": owners,
            },
            "spec": {
                "containers": [
                    {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}},
                    {"name": "wrk", "image": "williamyeh/wrk", "args": ["-t2", "-c32", "-d3600s", "http://127.0.0.1:80/"],
                     "resources": {"requests": {"cpu": format!("{}m", self.cpu_millis - 500),
                                                "memory": format!("{}Mi", (self.memory_bytes >> 20) - 256)}}}
                ],
                "schedulerName": "fitsched",
            },
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        })
    }
}

/// The `v1.Node` kube-scheduler would send for `n` in full mode.
pub fn node_json(n: &SimNode) -> Value {
    let resources =
        json!({"cpu": format!("{}m", n.cpu_millis), "memory": format!("{}Ki", n.memory_bytes / 1024), "pods": "110"});
    json!({
        "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name, fitsched_proto::ZONE_LABEL: n.zone}},
        "spec": {},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}],
        },
    })
}

/// Where a pod went and why.
#[derive(Debug, Clone)]
pub struct Placed {
    pub pod: String,
    pub node: String,
    pub zone: String,
    /// The extender's 0..10 score for the chosen node.
    pub extender_score: i64,
    /// kube-scheduler's own plugin score (0..100).
    pub plugin_score: i64,
    pub total: i64,
    /// Nodes the extender's `/filter` dropped, with reasons.
    pub filtered: Vec<(String, String)>,
}

pub struct Simulator {
    shim: String,
    pub mode: Mode,
    /// The extender's `weight` in the scheduler configuration.
    pub weight: i64,
    /// Whether the extender binds (`bindVerb` set).
    pub bind: bool,
    pub nodes: Vec<SimNode>,
    rng: fastrand::Rng,
    http: ureq::Agent,
}

impl Simulator {
    pub fn new(shim_url: &str, mode: Mode, nodes: Vec<SimNode>, seed: u64) -> Self {
        Self {
            shim: shim_url.trim_end_matches('/').to_owned(),
            mode,
            weight: 5,
            bind: true,
            nodes,
            rng: fastrand::Rng::with_seed(seed),
            http: http_agent(Duration::from_secs(10)),
        }
    }

    /// The `ExtenderArgs` body for `pod` and the candidate nodes (by index).
    pub fn extender_args(&self, pod: &SimPod, candidates: &[usize]) -> Value {
        match self.mode {
            Mode::Names => json!({
                "Pod": pod.to_json(), "Nodes": null,
                "NodeNames": candidates.iter().map(|&i| self.nodes[i].name.clone()).collect::<Vec<_>>(),
            }),
            Mode::Full => json!({
                "Pod": pod.to_json(),
                "Nodes": {"metadata": {}, "items": candidates.iter().map(|&i| node_json(&self.nodes[i])).collect::<Vec<_>>()},
                "NodeNames": null,
            }),
        }
    }

    /// Schedules one pod the way kube-scheduler would.
    pub fn schedule(&mut self, pod: &SimPod) -> anyhow::Result<Placed> {
        let fit: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].fits(pod)).collect();
        ensure!(!fit.is_empty(), "pod {} fits on no node", pod.name);

        let filtered = self.post("filter", &self.extender_args(pod, &fit))?;
        if let Some(e) = filtered.get("Error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            bail!("/filter answered Error {e:?}");
        }
        let passing: Vec<usize> = match self.mode {
            Mode::Names => {
                names_of(&filtered["NodeNames"]).iter().map(|n| self.index_of(n)).collect::<anyhow::Result<_>>()?
            }
            Mode::Full => filtered["Nodes"]["items"]
                .as_array()
                .context("/filter answered no Nodes.items")?
                .iter()
                .map(|item| self.index_of(item["metadata"]["name"].as_str().unwrap_or_default()))
                .collect::<anyhow::Result<_>>()?,
        };
        let failed: Vec<(String, String)> = filtered["FailedNodes"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        ensure!(!passing.is_empty(), "/filter left no node for {}", pod.name);

        let priorities = self.post("prioritize", &self.extender_args(pod, &passing))?;
        let list = priorities.as_array().context("/prioritize did not answer a HostPriorityList")?;
        let mut best: Vec<(usize, i64, i64)> = Vec::new();
        let mut best_total = i64::MIN;
        for &i in &passing {
            let ext = list
                .iter()
                .find(|h| h["Host"] == self.nodes[i].name.as_str())
                .and_then(|h| h["Score"].as_i64())
                .with_context(|| format!("/prioritize gave no score for {}", self.nodes[i].name))?;
            ensure!((0..=10).contains(&ext), "extender score {ext} out of 0..10");
            let plugin = self.nodes[i].least_allocated(pod);
            // kube-scheduler: extender score × weight × (MaxNodeScore / MaxExtenderPriority).
            let total = plugin + ext * self.weight * 10;
            if total > best_total {
                best_total = total;
                best.clear();
            }
            if total == best_total {
                best.push((i, ext, plugin));
            }
        }
        let (i, ext, plugin) = best[self.rng.usize(..best.len())];

        if self.bind {
            let args = json!({"PodName": pod.name, "PodNamespace": pod.namespace, "PodUID": pod.uid, "Node": self.nodes[i].name});
            let r = self.post("bind", &args)?;
            if let Some(e) = r.get("Error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                bail!("/bind answered Error {e:?}");
            }
        }
        let node = &mut self.nodes[i];
        node.requested_cpu += pod.cpu_millis;
        node.requested_memory += pod.memory_bytes;
        Ok(Placed {
            pod: pod.name.clone(),
            node: node.name.clone(),
            zone: node.zone.clone(),
            extender_score: ext,
            plugin_score: plugin,
            total: best_total,
            filtered: failed,
        })
    }

    fn index_of(&self, name: &str) -> anyhow::Result<usize> {
        self.nodes.iter().position(|n| n.name == name).with_context(|| format!("extender named unknown node {name:?}"))
    }

    fn post(&self, verb: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/{verb}", self.shim);
        let mut r = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(body)?)
            .with_context(|| format!("POST {url}"))?;
        let status = r.status();
        let text = r.body_mut().with_config().limit(256 << 20).read_to_string()?;
        ensure!(status == 200, "POST {url} answered {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("POST {url} answered non-JSON: {text}"))
    }
}

fn names_of(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// A stable small hash for made-up UIDs.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths;

    /// Every key our body has at every level is one kube-scheduler's own body has at the
    /// same place (arrays: compared by their first element).
    fn keys_within(ours: &Value, theirs: &Value, at: &str, skip: &[&str]) -> Result<(), String> {
        match (ours, theirs) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in a {
                    if skip.contains(&k.as_str()) {
                        continue;
                    }
                    let other = b.get(k).ok_or_else(|| format!("{at}.{k} is not in the captured body"))?;
                    if !other.is_null() && !v.is_null() {
                        keys_within(v, other, &format!("{at}.{k}"), skip)?;
                    }
                }
                Ok(())
            }
            (Value::Array(a), Value::Array(b)) => match (a.first(), b.first()) {
                (Some(x), Some(y)) => keys_within(x, y, &format!("{at}[0]"), skip),
                _ => Ok(()),
            },
            (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => Ok(()),
            (a, b) => Err(format!("{at}: {a} vs captured {b}")),
        }
    }

    fn fixture(path: &str) -> Value {
        let p = paths::fixtures_dir().join(path);
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
    }

    fn sim(mode: Mode) -> Simulator {
        Simulator::new("http://127.0.0.1:9", mode, vec![SimNode::new("worker-1", "zone-a", 16_000, 64 << 30)], 1)
    }

    #[test]
    fn bodies_have_the_shape_kube_scheduler_sends() {
        let pod = SimPod::replica("web", 1, Some("spread"));
        // Annotations are free-form maps; their keys differ by nature.
        let skip = ["annotations", "labels"];
        keys_within(
            &sim(Mode::Names).extender_args(&pod, &[0]),
            &fixture("names/002-prioritize-request.json"),
            "",
            &skip,
        )
        .unwrap();
        keys_within(
            &sim(Mode::Full).extender_args(&pod, &[0]),
            &fixture("full/002-prioritize-request.json"),
            "",
            &skip,
        )
        .unwrap();
    }

    #[test]
    fn shape_check_catches_a_camel_case_key() {
        let bad = json!({"pod": {}, "NodeNames": []});
        assert!(keys_within(&bad, &fixture("names/002-prioritize-request.json"), "", &[]).is_err());
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes_and_fit_respects_capacity() {
        let pod = SimPod::replica("web", 1, None);
        let mut busy = SimNode::new("a", "z", 4000, 8 << 30);
        busy.requested_cpu = 3000;
        let idle = SimNode::new("b", "z", 4000, 8 << 30);
        assert!(idle.least_allocated(&pod) > busy.least_allocated(&pod));
        assert!(busy.fits(&pod));
        busy.requested_cpu = 3500;
        assert!(!busy.fits(&pod));
    }
}
