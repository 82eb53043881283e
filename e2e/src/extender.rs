//! kube-scheduler's extender request bodies, in the wire format of v1.36's own
//! (`extender-shim/testdata/kube-scheduler-extender/`): `ExtenderArgs` with node names
//! (`nodeCacheCapable: true`) or whole `v1.Node` objects, for the benchmark pod of the
//! fixtures. The shim benchmark sends them; a test holds their shape to the captures.

use serde_json::{Value, json};

/// Which `ExtenderArgs` shape to send (`nodeCacheCapable` true or false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `NodeNames` only.
    Names,
    /// Whole `v1.NodeList` in `Nodes`.
    Full,
}

/// A node as kube-scheduler describes it to an extender.
#[derive(Debug, Clone)]
pub struct ExtenderNode {
    pub name: String,
    pub zone: String,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl ExtenderNode {
    pub fn new(name: impl Into<String>, zone: impl Into<String>, cpu_millis: i64, memory_bytes: i64) -> Self {
        Self { name: name.into(), zone: zone.into(), cpu_millis, memory_bytes }
    }
}

/// A pod to place: one replica of a ReplicaSet, or a bare pod.
#[derive(Debug, Clone)]
pub struct ExtenderPod {
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

impl ExtenderPod {
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
pub fn node_json(n: &ExtenderNode) -> Value {
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

/// The `ExtenderArgs` body for `pod` and `candidates`, in `mode`'s shape.
pub fn extender_args(mode: Mode, pod: &ExtenderPod, candidates: &[&ExtenderNode]) -> Value {
    match mode {
        Mode::Names => json!({
            "Pod": pod.to_json(), "Nodes": null,
            "NodeNames": candidates.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        }),
        Mode::Full => json!({
            "Pod": pod.to_json(),
            "Nodes": {"metadata": {}, "items": candidates.iter().map(|n| node_json(n)).collect::<Vec<_>>()},
            "NodeNames": null,
        }),
    }
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

    #[test]
    fn bodies_have_the_shape_kube_scheduler_sends() {
        let pod = ExtenderPod::replica("web", 1, Some("spread"));
        let node = ExtenderNode::new("worker-1", "zone-a", 16_000, 64 << 30);
        // Annotations are free-form maps; their keys differ by nature.
        let skip = ["annotations", "labels"];
        keys_within(
            &extender_args(Mode::Names, &pod, &[&node]),
            &fixture("names/002-prioritize-request.json"),
            "",
            &skip,
        )
        .unwrap();
        keys_within(
            &extender_args(Mode::Full, &pod, &[&node]),
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
}
