//! The cluster watch: kube-rs reflectors over Pods and Nodes feed [`Placements`].
//!
//! Only what replica and zone awareness and `pack` need is kept: of a pod its UID,
//! controlling owner, node, phase and CPU requests; of a node its name, zone label and
//! allocatable CPU (the rest of a Node, its images and conditions most, is dropped before
//! the reflector stores it). Pending pods and finished ones (`Succeeded`, `Failed`) are excluded by
//! a field selector: they hold no resources and are no longer (or not yet) replicas on a
//! node; the API server reports a pod that is bound as added to the selection, and one
//! that finishes as deleted from it.
//!
//! Every (re)list ends with `InitDone`; then the reflector's store holds exactly the
//! cluster's current objects and [`Placements`] is rebuilt from it, so pods deleted
//! while the watch was down are forgotten. Between lists, events are applied one by one.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_stream::StreamExt;

use crate::placements::{Placements, WatchedNode, WatchedPod};

/// Pods that occupy a node: bound, and not finished. Pending pods are left to the API
/// server: they would cost a watch event each (decoded here, encoded there) for nothing,
/// and a pod that gets bound enters the selection then.
pub const POD_FIELD_SELECTOR: &str = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";

/// Starts the pod and node watches; they run (and reconnect with backoff) until the
/// process ends. Returns the stores, e.g. to wait until both have listed once.
pub fn spawn(
    client: Client,
    placements: Arc<Placements>,
    windows: Arc<crate::store::NodeStore>,
) -> (Store<Pod>, Store<Node>) {
    let pods = spawn_pods(client.clone(), placements.clone());
    let nodes = spawn_nodes(client, placements, windows);
    (pods, nodes)
}

fn spawn_pods(client: Client, placements: Arc<Placements>) -> Store<Pod> {
    let (store, writer) = reflector::store();
    let reader = store.clone();
    let config = watcher::Config::default().fields(POD_FIELD_SELECTOR);
    let stream = watcher(Api::<Pod>::all(client), config).default_backoff().modify(slim_pod).reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(pod)) => match watched_pod(&pod) {
                    Some(p) => placements.apply_pod(p),
                    None => placements.remove_pod(&pod.uid().unwrap_or_default()),
                },
                Ok(watcher::Event::Delete(pod)) => placements.remove_pod(&pod.uid().unwrap_or_default()),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::InitDone) => {
                    let pods: Vec<WatchedPod> = reader.state().iter().filter_map(|p| watched_pod(p)).collect();
                    tracing::info!(pods = pods.len(), "pod watch listed the cluster");
                    placements.replace_pods(pods);
                    metrics::gauge!(crate::telemetry::series::WATCH_SYNCED, "resource" => "pods").set(1.0);
                }
                Err(e) => watch_error("pods", &e),
            }
        }
    });
    store
}

fn spawn_nodes(client: Client, placements: Arc<Placements>, windows: Arc<crate::store::NodeStore>) -> Store<Node> {
    let (store, writer) = reflector::store();
    let reader = store.clone();
    let stream = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(slim_node)
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(node)) => placements.set_node(watched_node(&node)),
                Ok(watcher::Event::Delete(node)) => {
                    let name = node.name_any();
                    placements.remove_node(&name);
                    // Its windows are of no use now, and its name may never come back.
                    if windows.remove(&name) {
                        metrics::counter!(crate::telemetry::series::NODES_FORGOTTEN, "reason" => "deleted")
                            .increment(1);
                        tracing::info!(node = %name, "node deleted from the cluster: forgotten");
                    }
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::InitDone) => {
                    let nodes: Vec<WatchedNode> = reader.state().iter().map(|n| watched_node(n)).collect();
                    let zoned = nodes.iter().filter(|n| n.zone.is_some()).count();
                    tracing::info!(nodes = nodes.len(), zoned, "node watch listed the cluster");
                    placements.replace_nodes(nodes);
                    metrics::gauge!(crate::telemetry::series::WATCH_SYNCED, "resource" => "nodes").set(1.0);
                }
                Err(e) => watch_error("nodes", &e),
            }
        }
    });
    store
}

fn watch_error(resource: &'static str, e: &watcher::Error) {
    // The stream goes on with backoff; the placements keep their last state meanwhile.
    metrics::counter!(crate::telemetry::series::WATCH_ERRORS, "resource" => resource).increment(1);
    metrics::gauge!(crate::telemetry::series::WATCH_SYNCED, "resource" => resource).set(0.0);
    tracing::warn!(resource, error = %e, "watch failed; retrying with backoff");
}

/// What the placements need of a pod; `None` for one that no longer occupies a node.
pub fn watched_pod(pod: &Pod) -> Option<WatchedPod> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    Some(WatchedPod {
        uid: pod.uid()?,
        owner: fitsched_proto::pod::controller(pod.owner_references(), |o| o.controller)
            .map(|o| o.uid.clone())
            .unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        cpu_millis: pod.spec.as_ref().map_or(0, cpu_request_millis),
    })
}

/// The CPU a pod requests, in millicores, as kube-scheduler counts it for fitting: the
/// larger of its containers' sum and its largest init container, plus the pod's
/// overhead. The API server has validated every quantity; one that does not parse
/// counts as none.
pub fn cpu_request_millis(spec: &PodSpec) -> i64 {
    let cpu =
        |c: &Container| c.resources.as_ref().and_then(|r| r.requests.as_ref()).map_or(0, |r| millis(r.get("cpu")));
    let containers: i64 = spec.containers.iter().map(cpu).fold(0, i64::saturating_add);
    let init = spec.init_containers.iter().flatten().map(cpu).max().unwrap_or(0);
    containers.max(init).saturating_add(millis(spec.overhead.as_ref().and_then(|o| o.get("cpu"))))
}

fn millis(q: Option<&Quantity>) -> i64 {
    q.and_then(|q| fitsched_proto::quantity::cpu_millis(&q.0).ok()).unwrap_or(0).max(0)
}

/// What the placements need of a node: its zone label and allocatable CPU.
pub fn watched_node(node: &Node) -> WatchedNode {
    let cpu = node.status.as_ref().and_then(|s| s.allocatable.as_ref()).and_then(|a| a.get("cpu"));
    WatchedNode {
        name: node.name_any(),
        zone: node.labels().get(fitsched_proto::ZONE_LABEL).cloned(),
        cpu_millis: cpu.and_then(|q| fitsched_proto::quantity::cpu_millis(&q.0).ok()),
    }
}

/// Drops everything the placements never read, before the reflector stores the pod: a
/// large cluster's pods are mostly container specs, environment and status.
fn slim_pod(pod: &mut Pod) {
    let m = &mut pod.metadata;
    m.annotations = None;
    m.labels = None;
    m.managed_fields = None;
    m.finalizers = None;
    m.owner_references = m
        .owner_references
        .take()
        .map(|refs| fitsched_proto::pod::controller(&refs, |o| o.controller).cloned().into_iter().collect());
    let spec = pod.spec.take().unwrap_or_default();
    // One container carrying the effective request keeps what `cpu_request_millis` reads.
    let cpu = cpu_request_millis(&spec);
    let requests = (cpu > 0).then(|| [("cpu".to_owned(), Quantity(format!("{cpu}m")))].into());
    let container = Container {
        resources: Some(ResourceRequirements { requests, ..ResourceRequirements::default() }),
        ..Container::default()
    };
    pod.spec = Some(PodSpec { node_name: spec.node_name, containers: vec![container], ..PodSpec::default() });
    pod.status = Some(PodStatus { phase: pod.status.take().and_then(|s| s.phase), ..PodStatus::default() });
}

fn slim_node(node: &mut Node) {
    let m = &mut node.metadata;
    m.annotations = None;
    m.managed_fields = None;
    m.owner_references = None;
    m.labels = m.labels.take().map(|l| l.into_iter().filter(|(k, _)| k == fitsched_proto::ZONE_LABEL).collect());
    node.spec = None;
    let allocatable =
        node.status.take().and_then(|s| s.allocatable).map(|a| a.into_iter().filter(|(k, _)| k == "cpu").collect());
    node.status = Some(NodeStatus { allocatable, ..NodeStatus::default() });
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;

    fn pod(uid: &str, owner: Option<&str>, node: Option<&str>, phase: &str) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{uid}"), "namespace": "ns", "uid": uid, "resourceVersion": "1",
                         "annotations": {"big": "x".repeat(100)}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": phase},
        });
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] = json!([
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-controller", "uid": "cm-uid"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": o, "uid": o, "controller": true},
            ]);
        }
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    fn node(name: &str, zone: Option<&str>) -> Value {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels[fitsched_proto::ZONE_LABEL] = json!(z);
        }
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "resourceVersion": "1", "labels": labels},
               "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}, "images": [{"names": ["x".repeat(100)]}]}})
    }

    fn events(events: &[(&str, Value)]) -> Body {
        let mut body = Vec::new();
        for (kind, object) in events {
            serde_json::to_writer(&mut body, &json!({"type": kind, "object": object})).unwrap();
            body.push(b'\n');
        }
        Body::from(body)
    }

    fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Body {
        let list =
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items});
        Body::from(serde_json::to_vec(&list).unwrap())
    }

    /// A fake API server over the mock: answers the lists at once, holds the first watch
    /// of each resource until `go` turns true and then sends its events, and holds every
    /// later watch open (the watcher re-watches when a watch body ends).
    async fn api_server(
        handle: mock::Handle<Request<Body>, Response<Body>>,
        pod_events: Body,
        node_events: Body,
        go: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut first_watch = HashMap::from([("/api/v1/pods", pod_events), ("/api/v1/nodes", node_events)]);
        let mut handle = std::pin::pin!(handle);
        let mut open = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let watch = query.contains("watch=true");
            let body = match (path.as_str(), watch) {
                ("/api/v1/pods", false) => {
                    let selector = query.split('&').find_map(|kv| kv.strip_prefix("fieldSelector="));
                    assert_eq!(
                        selector,
                        Some("spec.nodeName%21%3D%2Cstatus.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"),
                        "{query}"
                    );
                    list(
                        "PodList",
                        "v1",
                        vec![
                            pod("u1", Some("rs-a"), Some("n1"), "Running"),
                            pod("u2", Some("rs-a"), Some("n2"), "Running"),
                            pod("u3", Some("rs-b"), Some("n1"), "Running"),
                            pod("u4", Some("rs-a"), None, "Pending"),
                            pod("u5", None, Some("n3"), "Running"),
                        ],
                    )
                }
                ("/api/v1/nodes", false) => {
                    list("NodeList", "v1", vec![node("n1", Some("z1")), node("n2", Some("z2")), node("n3", None)])
                }
                (_, true) if first_watch.contains_key(path.as_str()) => {
                    let (body, mut go) = (first_watch.remove(path.as_str()).unwrap_or(Body::empty()), go.clone());
                    tokio::spawn(async move {
                        let _ = go.wait_for(|g| *g).await;
                        send.send_response(Response::new(body));
                    });
                    continue;
                }
                (_, true) => {
                    open.push(send);
                    continue;
                }
                other => panic!("unexpected request {other:?} {query}"),
            };
            send.send_response(Response::new(body));
        }
    }

    /// Polls until `check` holds; the watch applies events on its own task.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never reached: {what}");
    }

    #[tokio::test]
    async fn the_watch_counts_owners_per_node_and_zone_and_settles_records() {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let (go_tx, go) = tokio::sync::watch::channel(false);
        let pod_events = events(&[
            // u4 is bound where the scorer did not expect it; u1 goes away; u2 finishes
            // (robust even though the selector should report it deleted); u9 shows up
            // where the shim said it bound it.
            ("MODIFIED", pod("u4", Some("rs-a"), Some("n1"), "Running")),
            ("DELETED", pod("u1", Some("rs-a"), Some("n1"), "Running")),
            ("MODIFIED", pod("u2", Some("rs-a"), Some("n2"), "Succeeded")),
            ("ADDED", pod("u9", Some("rs-a"), Some("n2"), "Pending")),
        ]);
        let node_events = events(&[("MODIFIED", node("n3", Some("z1"))), ("DELETED", node("gone", None))]);
        tokio::spawn(api_server(handle, pod_events, node_events, go));

        let placements =
            Arc::new(Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(60)));
        placements.assume("u4", "rs-a", "n3", 0);
        placements.assume("u9", "rs-a", "n2", 0);
        placements.bind("u9", "n2");
        let windows = Arc::new(crate::store::NodeStore::new(Duration::from_secs(60)));
        for n in ["n1", "gone"] {
            windows.insert(fitsched_proto::NodeWindow {
                node_name: n.into(),
                agent_id: "a".into(),
                sequence: 1,
                ..Default::default()
            });
        }
        let (pods, nodes) = spawn(Client::new(service, "default"), placements.clone(), windows.clone());
        tokio::time::timeout(Duration::from_secs(5), async {
            pods.wait_until_ready().await.unwrap();
            nodes.wait_until_ready().await.unwrap();
        })
        .await
        .expect("both reflectors listed");

        // Listed: u1, u2 (rs-a) and u3 (rs-b) placed, u4 pending; the records of u4 (on n3)
        // and u9 (bound on n2) still count.
        eventually("the listing applied", || {
            let v = placements.view("rs-a", "new");
            (v.on_node("n1"), v.on_node("n2"), v.on_node("n3"), v.in_zone("z1"), v.in_zone("z2")) == (1, 2, 1, 1, 2)
        })
        .await;
        assert_eq!(placements.view("rs-b", "new").on_node("n1"), 1);
        assert_eq!(placements.view("", "new").allocatable_on("n1"), Some(16.0), "allocatable from the node watch");
        let listed = nodes.state();
        let n1 = listed.iter().find(|n| n.name_any() == "n1").unwrap();
        let status = n1.status.as_ref().unwrap();
        assert!(status.images.is_none() && status.allocatable.as_ref().unwrap().len() == 1, "slimmed: {n1:?}");
        assert_eq!(placements.counts(), (4, 2));
        let stored = pods.state();
        let u1 = stored.iter().find(|p| p.uid().as_deref() == Some("u1")).unwrap();
        assert!(
            u1.annotations().is_empty() && u1.spec.as_ref().unwrap().containers.iter().all(|c| c.image.is_none()),
            "slimmed: {u1:?}"
        );
        assert_eq!(u1.owner_references().len(), 1, "only the controller is kept");

        go_tx.send(true).unwrap();
        eventually("the events applied", || {
            let v = placements.view("rs-a", "new");
            (v.on_node("n1"), v.on_node("n2"), v.on_node("n3"), v.zone_of("n3")) == (1, 1, 0, "z1")
        })
        .await;
        let v = placements.view("rs-a", "new");
        assert_eq!((v.in_zone("z1"), v.in_zone("z2")), (1, 1));
        drop(v);
        assert_eq!(placements.counts(), (4, 0), "u3, u4, u5, u9 placed; both records settled by the watch");
        eventually("the deleted node's windows forgotten", || windows.names() == ["n1"]).await;
    }

    #[test]
    fn cpu_requests_count_as_kube_scheduler_counts_them() {
        let mut p: Pod = serde_json::from_value(pod("u", None, Some("n"), "Running")).unwrap();
        p.spec.as_mut().unwrap().containers = serde_json::from_value(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
            {"name": "c"},
        ]))
        .unwrap();
        assert_eq!(watched_pod(&p).unwrap().cpu_millis, 1250, "containers sum");
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers =
            serde_json::from_value(json!([{"name": "i", "resources": {"requests": {"cpu": "2"}}}])).unwrap();
        spec.overhead = Some([("cpu".to_owned(), Quantity("100m".into()))].into());
        assert_eq!(watched_pod(&p).unwrap().cpu_millis, 2100, "the larger init container, plus overhead");
        slim_pod(&mut p);
        assert_eq!(watched_pod(&p).unwrap().cpu_millis, 2100, "slimming keeps the request");
        assert_eq!(p.spec.as_ref().unwrap().containers.len(), 1);
    }

    #[test]
    fn finished_and_ownerless_pods() {
        let p: Pod = serde_json::from_value(pod("u", None, Some("n"), "Running")).unwrap();
        let expected = WatchedPod { uid: "u".into(), owner: String::new(), node: Some("n".into()), cpu_millis: 0 };
        assert_eq!(watched_pod(&p), Some(expected));
        for phase in ["Succeeded", "Failed"] {
            let p: Pod = serde_json::from_value(pod("u", Some("rs"), Some("n"), phase)).unwrap();
            assert_eq!(watched_pod(&p), None);
        }
    }
}
