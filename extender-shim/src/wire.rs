//! The kube-scheduler extender v1 wire format (`k8s.io/kube-scheduler/extender/v1`).
//!
//! Only the fields fitsched needs are modelled; serde skips the rest of each v1.Pod and
//! v1.Node without allocating. In `full` mode (`nodeCacheCapable: false`) every Node is
//! kept as a borrowed [`RawValue`], a slice of the request body, because the filter
//! answer must echo the passing Node objects back verbatim; a light view of the same
//! bytes supplies name, zone and allocatable.
//!
//! Keys are Go's default (capitalised) field names, as the captures in
//! `extender-shim/testdata/kube-scheduler-extender/` show. Go's decoder matches keys
//! case-insensitively, so the lower-camel and lower-case spellings are accepted too.

use std::borrow::Cow;
use std::fmt;

use fitsched_proto::{BindRequest, CandidateNode, Owner, PodFacts};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::ProfileStrategies;
use fitsched_proto::quantity;

// ---------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------

/// `ExtenderArgs`: the body of `filter` and `prioritize`.
#[derive(Debug, Deserialize)]
pub struct ExtenderArgs<'a> {
    #[serde(rename = "Pod", alias = "pod", borrow, default)]
    pub pod: Option<Pod<'a>>,
    /// Full mode: a v1.NodeList.
    #[serde(rename = "Nodes", alias = "nodes", borrow, default)]
    pub nodes: Option<NodeList<'a>>,
    /// Names mode (`nodeCacheCapable: true`).
    #[serde(rename = "NodeNames", alias = "nodeNames", alias = "nodenames", default)]
    pub node_names: Option<Vec<String>>,
}

/// A v1.NodeList whose items are kept as raw JSON.
#[derive(Debug, Deserialize)]
pub struct NodeList<'a> {
    #[serde(borrow, default)]
    pub items: Option<Vec<&'a RawValue>>,
}

/// The parts of a v1.Pod fitsched reads.
#[derive(Debug, Default, Deserialize)]
pub struct Pod<'a> {
    #[serde(default)]
    pub metadata: Option<PodMeta>,
    #[serde(borrow, default)]
    pub spec: Option<PodSpec<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub annotations: Option<PodAnnotations>,
    #[serde(rename = "ownerReferences")]
    pub owner_references: Option<Vec<OwnerReference>>,
}

/// Only the strategy annotation; the others (often a large
/// `last-applied-configuration`) are skipped unparsed.
#[derive(Debug, Default, Deserialize)]
pub struct PodAnnotations {
    // Must equal `fitsched_proto::STRATEGY_ANNOTATION`; a test checks it, since attribute
    // arguments cannot name a constant.
    #[serde(rename = "fitsched.io/strategy")]
    pub strategy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct OwnerReference {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
    pub controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodSpec<'a> {
    #[serde(borrow, default)]
    pub containers: Option<Vec<Container<'a>>>,
    /// The kube-scheduler profile the pod asked for.
    #[serde(rename = "schedulerName", borrow, default)]
    pub scheduler_name: Option<Text<'a>>,
}

/// A JSON string borrowed from the body when it has no escapes (serde's own
/// `Option<Cow<str>>` always copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor { numbers: false, expecting: "a string" }).map(Text)
    }
}

/// The visitor of [`Text`] and [`QuantityText`]: a string, borrowed when it can be, and
/// with `numbers` a bare number's text as well.
struct StrVisitor {
    numbers: bool,
    expecting: &'static str,
}

impl StrVisitor {
    fn number<'de, E: de::Error>(&self, text: String, unexpected: de::Unexpected<'_>) -> Result<Cow<'de, str>, E> {
        if self.numbers { Ok(Cow::Owned(text)) } else { Err(E::invalid_type(unexpected, self)) }
    }
}

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.number(v.to_string(), de::Unexpected::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.number(v.to_string(), de::Unexpected::Signed(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.number(v.to_string(), de::Unexpected::Float(v))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Container<'a> {
    pub name: Option<String>,
    #[serde(borrow, default)]
    pub resources: Option<ResourceRequirements<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResourceRequirements<'a> {
    #[serde(borrow, default)]
    pub requests: Option<ResourceList<'a>>,
}

/// A v1.ResourceList restricted to cpu and memory.
#[derive(Debug, Default, Deserialize)]
pub struct ResourceList<'a> {
    #[serde(borrow, default)]
    pub cpu: Option<QuantityText<'a>>,
    #[serde(borrow, default)]
    pub memory: Option<QuantityText<'a>>,
}

/// The text of a resource.Quantity. The API server always writes a string, but
/// Quantity's own JSON decoder also takes a bare number, so this does as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityText<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for QuantityText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = StrVisitor { numbers: true, expecting: "a resource quantity string such as \"500m\" or \"256Mi\"" };
        deserializer.deserialize_any(v).map(QuantityText)
    }
}

/// The parts of a Kubernetes v1.Node fitsched reads (full mode's `Nodes`).
#[derive(Debug, Default, Deserialize)]
pub struct KubeNode<'a> {
    #[serde(default)]
    pub metadata: Option<NodeMeta>,
    #[serde(borrow, default)]
    pub status: Option<KubeNodeStatus<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeMeta {
    pub name: Option<String>,
    pub labels: Option<NodeLabels>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeLabels {
    // Must equal `fitsched_proto::ZONE_LABEL` (checked by a test).
    #[serde(rename = "topology.kubernetes.io/zone")]
    pub zone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct KubeNodeStatus<'a> {
    #[serde(borrow, default)]
    pub allocatable: Option<ResourceList<'a>>,
}

/// `ExtenderBindingArgs`: the body of `bind`.
#[derive(Debug, Default, Deserialize)]
pub struct ExtenderBindingArgs {
    #[serde(rename = "PodName", alias = "podName", alias = "podname", default)]
    pub pod_name: Option<String>,
    #[serde(rename = "PodNamespace", alias = "podNamespace", alias = "podnamespace", default)]
    pub pod_namespace: Option<String>,
    #[serde(rename = "PodUID", alias = "podUID", alias = "podUid", alias = "poduid", default)]
    pub pod_uid: Option<String>,
    #[serde(rename = "Node", alias = "node", default)]
    pub node: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Decoding into what the scorer is asked.
// ---------------------------------------------------------------------------------------

/// A request the shim refuses with HTTP 400; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A decoded `filter` / `prioritize` body.
#[derive(Debug)]
pub struct SchedulingArgs<'a> {
    pub pod: PodFacts,
    /// The candidates in request order.
    pub nodes: Vec<CandidateNode>,
    /// Full mode: the raw Node objects, parallel to `nodes`. `None` in names mode.
    pub raw_nodes: Option<Vec<&'a RawValue>>,
}

impl SchedulingArgs<'_> {
    /// `namespace/name`, for logs.
    pub fn pod_display(&self) -> String {
        self.pod.display()
    }
}

/// Decodes an `ExtenderArgs` body with no `--profile-strategy` mapping; see
/// [`decode_extender_args_for`].
pub fn decode_extender_args(body: &[u8]) -> Result<SchedulingArgs<'_>, BadRequest> {
    decode_extender_args_for(body, &ProfileStrategies::default())
}

/// Decodes an `ExtenderArgs` body; a pod without the strategy annotation gets the
/// strategy `profiles` names for its `spec.schedulerName`. Nodes win over NodeNames when
/// both are sent, since they carry more (zone, allocatable) and kube-scheduler reads
/// `Nodes` back whenever `NodeNames` is absent from the answer.
pub fn decode_extender_args_for<'b>(
    body: &'b [u8],
    profiles: &ProfileStrategies,
) -> Result<SchedulingArgs<'b>, BadRequest> {
    expect_object(body, "ExtenderArgs")?;
    let args: ExtenderArgs<'_> =
        serde_json::from_slice(body).map_err(|e| BadRequest(format!("invalid ExtenderArgs JSON: {e}")))?;
    let pod = args.pod.ok_or_else(|| BadRequest("ExtenderArgs.Pod is missing or null".into()))?;
    let pod = pod_facts(&pod, profiles)?;
    match (args.nodes, args.node_names) {
        (Some(list), _) => {
            let items = list.items.unwrap_or_default();
            let nodes = items.iter().enumerate().map(|(i, raw)| candidate(i, raw)).collect::<Result<Vec<_>, _>>()?;
            Ok(SchedulingArgs { pod, nodes, raw_nodes: Some(items) })
        }
        (None, Some(names)) => {
            let nodes = names.into_iter().map(|name| CandidateNode { name, ..Default::default() }).collect();
            Ok(SchedulingArgs { pod, nodes, raw_nodes: None })
        }
        (None, None) => Err(BadRequest("ExtenderArgs has neither Nodes nor NodeNames (both missing or null)".into())),
    }
}

/// serde's derived structs also accept a JSON array of field values, which Go's decoder
/// (and so the protocol) does not; refuse it up front with a clear message.
fn expect_object(body: &[u8], what: &str) -> Result<(), BadRequest> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(BadRequest(format!("invalid {what} JSON: the body is empty"))),
        Some(_) => Err(BadRequest(format!("invalid {what} JSON: the body must be a JSON object"))),
    }
}

fn candidate(index: usize, raw: &RawValue) -> Result<CandidateNode, BadRequest> {
    let view: KubeNode<'_> = serde_json::from_str(raw.get())
        .map_err(|e| BadRequest(format!("ExtenderArgs.Nodes.items[{index}] is not a valid Node: {e}")))?;
    let meta = view.metadata.unwrap_or_default();
    let name = meta
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| BadRequest(format!("ExtenderArgs.Nodes.items[{index}].metadata.name is missing or empty")))?;
    let zone = meta.labels.and_then(|l| l.zone).unwrap_or_default();
    let alloc = view.status.and_then(|s| s.allocatable).unwrap_or_default();
    // Allocatable is advisory (0 = unknown to the scorer), so one odd Node must not make
    // every pod unschedulable: an unreadable value becomes unknown.
    let known = |q: Option<QuantityText<'_>>, parse: fn(&str) -> Result<i64, quantity::QuantityError>, what: &str| {
        q.map_or(0, |q| match parse(&q.0) {
            Ok(v) if v >= 0 => v,
            Ok(_) | Err(_) => {
                tracing::debug!(node = %name, resource = what, value = %q.0, "unreadable allocatable, treated as unknown");
                0
            }
        })
    };
    let allocatable_cpu_millis = known(alloc.cpu, quantity::cpu_millis, "cpu");
    let allocatable_memory_bytes = known(alloc.memory, quantity::bytes, "memory");
    Ok(CandidateNode { name, zone, allocatable_cpu_millis, allocatable_memory_bytes })
}

/// What the scorer needs of a pod: identity, owner, strategy and summed requests. The
/// strategy is the `fitsched.io/strategy` annotation, else the one `profiles` maps the
/// pod's `spec.schedulerName` to, else empty (the scorer's default).
pub fn pod_facts(pod: &Pod<'_>, profiles: &ProfileStrategies) -> Result<PodFacts, BadRequest> {
    let meta = pod.metadata.as_ref();
    let name = meta.and_then(|m| m.name.clone()).unwrap_or_default();
    if name.is_empty() {
        return Err(BadRequest("ExtenderArgs.Pod.metadata.name is missing or empty".into()));
    }
    let owner = meta
        .and_then(|m| m.owner_references.as_ref())
        .and_then(|refs| fitsched_proto::pod::controller(refs, |r| r.controller))
        .map(|r| Owner {
            kind: r.kind.clone().unwrap_or_default(),
            name: r.name.clone().unwrap_or_default(),
            uid: r.uid.clone().unwrap_or_default(),
        });
    let mut cpu: i64 = 0;
    let mut memory: i64 = 0;
    let containers = pod.spec.as_ref().and_then(|s| s.containers.as_deref()).unwrap_or_default();
    for (i, c) in containers.iter().enumerate() {
        let Some(requests) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) else { continue };
        let at = |res: &str| {
            format!(
                "ExtenderArgs.Pod.spec.containers[{i}]{}.resources.requests.{res}",
                container_label(c.name.as_deref())
            )
        };
        if let Some(q) = &requests.cpu {
            let v = request_value(&q.0, quantity::cpu_millis, || at("cpu"))?;
            cpu = cpu.checked_add(v).ok_or_else(|| BadRequest(format!("{}: the sum overflows", at("cpu"))))?;
        }
        if let Some(q) = &requests.memory {
            let v = request_value(&q.0, quantity::bytes, || at("memory"))?;
            memory = memory.checked_add(v).ok_or_else(|| BadRequest(format!("{}: the sum overflows", at("memory"))))?;
        }
    }
    Ok(PodFacts {
        name,
        namespace: meta.and_then(|m| m.namespace.clone()).unwrap_or_default(),
        uid: meta.and_then(|m| m.uid.clone()).unwrap_or_default(),
        owner,
        strategy: strategy(pod, profiles),
        cpu_request_millis: cpu,
        memory_request_bytes: memory,
    })
}

/// Annotation first (a non-empty one), then the pod's profile, then the scorer's default.
fn strategy(pod: &Pod<'_>, profiles: &ProfileStrategies) -> String {
    let annotated = pod.metadata.as_ref().and_then(|m| m.annotations.as_ref()).and_then(|a| a.strategy.as_deref());
    if let Some(s) = annotated.filter(|s| !s.is_empty()) {
        return s.to_owned();
    }
    let profile = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_ref()).map(|t| t.0.as_ref());
    profile.and_then(|name| profiles.get(name)).unwrap_or_default().to_owned()
}

fn container_label(name: Option<&str>) -> String {
    name.map(|n| format!(" ({n})")).unwrap_or_default()
}

fn request_value(
    text: &str,
    parse: fn(&str) -> Result<i64, quantity::QuantityError>,
    at: impl Fn() -> String,
) -> Result<i64, BadRequest> {
    match parse(text) {
        Ok(v) if v >= 0 => Ok(v),
        Ok(_) => Err(BadRequest(format!("{}: {text:?} is negative", at()))),
        Err(e) => Err(BadRequest(format!("{}: {e}", at()))),
    }
}

/// Decodes an `ExtenderBindingArgs` body into the scorer's request.
pub fn decode_binding_args(body: &[u8]) -> Result<BindRequest, BadRequest> {
    expect_object(body, "ExtenderBindingArgs")?;
    let args: ExtenderBindingArgs =
        serde_json::from_slice(body).map_err(|e| BadRequest(format!("invalid ExtenderBindingArgs JSON: {e}")))?;
    let required = |v: Option<String>, key: &str| {
        v.filter(|s| !s.is_empty()).ok_or_else(|| BadRequest(format!("ExtenderBindingArgs.{key} is missing or empty")))
    };
    Ok(BindRequest {
        pod_name: required(args.pod_name, "PodName")?,
        pod_namespace: required(args.pod_namespace, "PodNamespace")?,
        pod_uid: args.pod_uid.unwrap_or_default(),
        node: required(args.node, "Node")?,
    })
}

// ---------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------

/// `ExtenderFilterResult`. The key sets follow what the captured kube-scheduler
/// exchanges show and accepted: names mode answers `NodeNames`, `FailedNodes`,
/// `FailedAndUnresolvableNodes` and `Error`; full mode answers `Nodes` (a NodeList with
/// only `items`), `FailedNodes` and `Error`. Absent keys decode as nil on the Go side.
#[derive(Debug, Serialize)]
pub struct ExtenderFilterResult<'a> {
    #[serde(rename = "Nodes", skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeListOut<'a>>,
    #[serde(rename = "NodeNames", skip_serializing_if = "Option::is_none")]
    pub node_names: Option<Vec<&'a str>>,
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: FailedNodes,
    #[serde(rename = "FailedAndUnresolvableNodes", skip_serializing_if = "Option::is_none")]
    pub failed_and_unresolvable_nodes: Option<FailedNodes>,
    #[serde(rename = "Error")]
    pub error: String,
}

/// The passing Node objects, echoed byte for byte.
#[derive(Debug, Serialize)]
pub struct NodeListOut<'a> {
    pub items: Vec<&'a RawValue>,
}

/// `FailedNodesMap` (node name → reason), kept in request order so answers are stable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FailedNodes(pub Vec<(String, String)>);

impl Serialize for FailedNodes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (node, reason) in &self.0 {
            map.serialize_entry(node, reason)?;
        }
        map.end()
    }
}

impl<'a> ExtenderFilterResult<'a> {
    /// The answer listing the candidates at `passing` (indices into `args.nodes`), in the
    /// request's mode.
    pub fn new(args: &'a SchedulingArgs<'a>, passing: &[usize], failed: FailedNodes) -> Self {
        match &args.raw_nodes {
            Some(raw) => Self {
                nodes: Some(NodeListOut { items: passing.iter().filter_map(|&i| raw.get(i).copied()).collect() }),
                node_names: None,
                failed_nodes: failed,
                failed_and_unresolvable_nodes: None,
                error: String::new(),
            },
            None => Self {
                nodes: None,
                node_names: Some(passing.iter().filter_map(|&i| args.nodes.get(i)).map(|n| n.name.as_str()).collect()),
                failed_nodes: failed,
                failed_and_unresolvable_nodes: Some(FailedNodes::default()),
                error: String::new(),
            },
        }
    }
}

/// One entry of a `HostPriorityList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPriority<'a> {
    #[serde(rename = "Host")]
    pub host: &'a str,
    #[serde(rename = "Score")]
    pub score: i64,
}

/// `ExtenderBindingResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtenderBindingResult {
    #[serde(rename = "Error")]
    pub error: String,
}

/// The body of every error answer the shim itself produces (400, 404, 405, 413).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_json() -> serde_json::Value {
        json!({
            "metadata": {
                "name": "web-1", "namespace": "bench", "uid": "u-1",
                "annotations": {"fitsched.io/strategy": "pack", "other": "x"},
                "ownerReferences": [
                    {"kind": "Other", "name": "o", "uid": "u-o"},
                    {"kind": "ReplicaSet", "name": "web", "uid": "u-rs", "controller": true}
                ]
            },
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": 1, "memory": "64Mi"}}},
                {"name": "c"}
            ]}
        })
    }

    #[test]
    fn attribute_keys_match_the_shared_constants() {
        let text = json!({"metadata": {"name": "p", "annotations": {fitsched_proto::STRATEGY_ANNOTATION: "spread"}}})
            .to_string();
        let pod: Pod<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(pod.metadata.unwrap().annotations.unwrap().strategy.as_deref(), Some("spread"));
        let text = json!({"metadata": {"labels": {fitsched_proto::ZONE_LABEL: "z"}}}).to_string();
        let node: KubeNode<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(node.metadata.unwrap().labels.unwrap().zone.as_deref(), Some("z"));
    }

    #[test]
    fn pod_facts_sum_requests_and_pick_the_controller() {
        let body = json!({"Pod": pod_json(), "NodeNames": ["n1", "n2"]}).to_string();
        let args = decode_extender_args(body.as_bytes()).unwrap();
        assert_eq!(
            args.pod,
            PodFacts {
                name: "web-1".into(),
                namespace: "bench".into(),
                uid: "u-1".into(),
                owner: Some(Owner { kind: "ReplicaSet".into(), name: "web".into(), uid: "u-rs".into() }),
                strategy: "pack".into(),
                cpu_request_millis: 1500,
                memory_request_bytes: 320 << 20,
            }
        );
        assert_eq!(args.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        assert!(args.raw_nodes.is_none());
    }

    #[test]
    fn the_profile_gives_the_strategy_unless_the_pod_is_annotated() {
        use crate::config::ProfileStrategy;
        let profiles = ProfileStrategies::new(["fitsched-pack=pack", "fitsched-spread=spread"].map(|m| {
            let (name, strategy) = m.split_once('=').unwrap();
            ProfileStrategy { scheduler_name: name.into(), strategy: strategy.into() }
        }))
        .unwrap();
        let strategy_of = |pod: serde_json::Value| {
            let body = json!({"Pod": pod, "NodeNames": ["n1"]}).to_string();
            decode_extender_args_for(body.as_bytes(), &profiles).unwrap().pod.strategy
        };
        let mapped = json!({"metadata": {"name": "p"}, "spec": {"schedulerName": "fitsched-spread"}});
        assert_eq!(strategy_of(mapped.clone()), "spread");
        // The annotation wins over the profile (pod_json() says pack).
        let mut annotated = pod_json();
        annotated["spec"]["schedulerName"] = json!("fitsched-spread");
        assert_eq!(strategy_of(annotated), "pack");
        // An empty annotation is no annotation.
        let mut empty = mapped.clone();
        empty["metadata"]["annotations"] = json!({"fitsched.io/strategy": ""});
        assert_eq!(strategy_of(empty), "spread");
        // An unmapped profile, no schedulerName, or no mapping at all: the scorer's default.
        assert_eq!(strategy_of(json!({"metadata": {"name": "p"}, "spec": {"schedulerName": "fitsched"}})), "");
        assert_eq!(strategy_of(json!({"metadata": {"name": "p"}, "spec": {}})), "");
        let escaped = br#"{"Pod": {"metadata": {"name": "p"}, "spec": {"schedulerName": "fitsched\u002dpack"}},
            "NodeNames": []}"#;
        assert_eq!(decode_extender_args_for(escaped, &profiles).unwrap().pod.strategy, "pack");
        let body = json!({"Pod": mapped, "NodeNames": []}).to_string();
        assert_eq!(decode_extender_args(body.as_bytes()).unwrap().pod.strategy, "");
    }

    #[test]
    fn captured_pods_carry_their_scheduler_name() {
        let file =
            concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/kube-scheduler-extender/full/002-prioritize-request.json");
        let body = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let args: ExtenderArgs<'_> = serde_json::from_slice(&body).unwrap();
        let spec = args.pod.unwrap().spec.unwrap();
        assert!(matches!(spec.scheduler_name, Some(Text(Cow::Borrowed("capture-full")))), "{:?}", spec.scheduler_name);
    }

    #[test]
    fn a_pod_without_controller_is_bare() {
        let body = json!({"Pod": {"metadata": {"name": "p", "ownerReferences": [{"kind": "X", "controller": false}]}},
            "NodeNames": []})
        .to_string();
        assert_eq!(decode_extender_args(body.as_bytes()).unwrap().pod.owner, None);
    }

    #[test]
    fn full_mode_keeps_raw_nodes_and_reads_a_light_view() {
        let body = r#"{"pod": {"metadata": {"name": "p"}}, "nodes": {"metadata": {}, "items": [
            {"metadata": {"name": "w1", "labels": {"topology.kubernetes.io/zone": "z1"}},
             "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"}}},
            {"metadata": {"name": "w2"}, "status": {"allocatable": {"cpu": "lots"}}}
        ]}, "nodeNames": null}"#;
        let args = decode_extender_args(body.as_bytes()).unwrap();
        assert_eq!(
            args.nodes,
            [
                CandidateNode {
                    name: "w1".into(),
                    zone: "z1".into(),
                    allocatable_cpu_millis: 16_000,
                    allocatable_memory_bytes: 64 << 30
                },
                CandidateNode { name: "w2".into(), ..Default::default() },
            ]
        );
        let raw = args.raw_nodes.as_ref().unwrap();
        assert!(raw[1].get().starts_with(r#"{"metadata": {"name": "w2"}"#));
        let out = ExtenderFilterResult::new(&args, &[1], FailedNodes(vec![("w1".into(), "why".into())]));
        let v: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&out).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"Nodes": {"items": [{"metadata": {"name": "w2"}, "status": {"allocatable": {"cpu": "lots"}}}]},
                "FailedNodes": {"w1": "why"}, "Error": ""})
        );
    }

    #[test]
    fn names_mode_answer_has_the_captured_keys() {
        let body = json!({"Pod": {"metadata": {"name": "p"}}, "NodeNames": ["a", "b"]}).to_string();
        let args = decode_extender_args(body.as_bytes()).unwrap();
        let out = ExtenderFilterResult::new(&args, &[0, 1], FailedNodes::default());
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"NodeNames": ["a", "b"], "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""})
        );
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("{", "invalid ExtenderArgs JSON"),
            ("{}", "Pod is missing"),
            (r#"{"Pod": null, "NodeNames": []}"#, "Pod is missing"),
            (r#"{"Pod": {"metadata": {"name": "p"}}}"#, "neither Nodes nor NodeNames"),
            (
                r#"{"Pod": {"metadata": {"name": "p"}}, "Nodes": null, "NodeNames": null}"#,
                "neither Nodes nor NodeNames",
            ),
            (r#"{"Pod": {"metadata": {}}, "NodeNames": []}"#, "metadata.name"),
            (r#"{"Pod": 5, "NodeNames": []}"#, "invalid type"),
            (r#"{"Pod": {"metadata": {"name": "p"}}, "NodeNames": "a"}"#, "invalid type"),
            (
                r#"{"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": [{"metadata": {}}]}}"#,
                "items[0].metadata.name",
            ),
            (r#"{"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": [7]}}"#, "items[0] is not a valid Node"),
            (
                r#"{"Pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
                    "resources": {"requests": {"cpu": "fast"}}}]}}, "NodeNames": []}"#,
                "containers[0] (c).resources.requests.cpu",
            ),
            (
                r#"{"Pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"resources": {"requests":
                    {"memory": "-1Gi"}}}]}}, "NodeNames": []}"#,
                "is negative",
            ),
            (r#"{"Pod": {"metadata": {"name": "p"}}, "pod": {}, "NodeNames": []}"#, "duplicate field"),
            (r#"{"Pod": {"metadata": {"name": "p"}, "spec": {"schedulerName": 7}}, "NodeNames": []}"#, "a string"),
        ];
        for (body, needle) in cases {
            let err = decode_extender_args(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err} should mention {needle:?}");
        }
    }

    #[test]
    fn binding_args_accept_go_and_camel_keys() {
        let want =
            BindRequest { pod_name: "p".into(), pod_namespace: "ns".into(), pod_uid: "u".into(), node: "n".into() };
        let go = r#"{"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "n"}"#;
        let camel = r#"{"podName": "p", "podNamespace": "ns", "podUID": "u", "node": "n"}"#;
        assert_eq!(decode_binding_args(go.as_bytes()).unwrap(), want);
        assert_eq!(decode_binding_args(camel.as_bytes()).unwrap(), want);
        let err = decode_binding_args(br#"{"PodName": "p", "PodNamespace": "ns"}"#).unwrap_err();
        assert!(err.0.contains("Node is missing"), "{err}");
    }

    #[test]
    fn host_priority_and_binding_result_keys() {
        assert_eq!(
            serde_json::to_value(HostPriority { host: "w", score: 3 }).unwrap(),
            json!({"Host": "w", "Score": 3})
        );
        assert_eq!(serde_json::to_value(ExtenderBindingResult { error: String::new() }).unwrap(), json!({"Error": ""}));
    }
}
