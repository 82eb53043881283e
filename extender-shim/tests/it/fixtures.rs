//! Real kube-scheduler v1.36 bodies in, the answers the capture extender gave out.

use fitsched_proto::{BindRequest, CandidateNode, Owner};
use fitsched_shim::wire;
use serde_json::{Value, json};

use crate::common::*;

#[test]
fn every_request_fixture_decodes() {
    for mode in ["names", "full"] {
        for (name, verb, body) in requests(mode) {
            match verb.as_str() {
                "filter" | "prioritize" => {
                    let args = wire::decode_extender_args(&body).unwrap_or_else(|e| panic!("{mode}/{name}: {e}"));
                    assert!(!args.nodes.is_empty(), "{mode}/{name}");
                    assert_eq!(args.raw_nodes.is_some(), mode == "full", "{mode}/{name}");
                    assert_eq!(args.pod.cpu_request_millis, 1000, "{mode}/{name}: 500m + 500m");
                    assert_eq!(args.pod.memory_request_bytes, 320 << 20, "{mode}/{name}: 256Mi + 64Mi");
                    assert_eq!(args.pod.owner.as_ref().map(|o| o.kind.as_str()), Some("ReplicaSet"));
                }
                "bind" => {
                    let req = wire::decode_binding_args(&body).unwrap_or_else(|e| panic!("{mode}/{name}: {e}"));
                    assert_eq!(req.node, "worker-4");
                }
                other => panic!("{mode}/{name}: unknown verb {other}"),
            }
        }
    }
}

async fn replay(mode: &str) -> FakeScorer {
    let fake = FakeScorer::default();
    let app = app(&start_fake(fake.clone()).await);
    for (name, verb, body) in requests(mode) {
        let response_file = name.replace("-request", "-response");
        let expected: Value = match std::fs::read(fixture_dir(mode).join(&response_file)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) if verb == "bind" => json!({"Error": ""}),
            Err(e) => panic!("{mode}/{response_file}: {e}"),
        };
        let (status, answer) = post(&app, &format!("/{verb}"), body).await;
        assert_eq!(status, 200, "{mode}/{name}: {answer}");
        assert_eq!(answer, expected, "{mode}/{name}: answer differs from {response_file}");
    }
    fake
}

#[tokio::test]
async fn names_mode_answers_match_the_captures() {
    let fake = replay("names").await;
    let filters = fake.filters.lock().unwrap();
    assert_eq!(filters.len(), 2);
    let pod = filters[0].pod.clone().unwrap();
    assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("bench", "nginx-bench-names-1"));
    assert_eq!(pod.uid, "5bce4be0-cdbe-455b-9050-8aef36d2b2f4");
    assert_eq!(
        pod.owner,
        Some(Owner {
            kind: "ReplicaSet".into(),
            name: "nginx-bench-names-7d9c8".into(),
            uid: "11111111-2222-3333-4444-555555555551".into()
        })
    );
    assert_eq!(pod.strategy, "");
    assert_eq!(
        filters[0].nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["worker-1", "worker-2", "worker-3", "worker-4"]
    );
    assert_eq!(filters[0].nodes[0].zone, "", "names mode carries no zone");
    assert_eq!(
        fake.binds.lock().unwrap()[1],
        BindRequest {
            pod_name: "nginx-bench-names-2".into(),
            pod_namespace: "bench".into(),
            pod_uid: wire::decode_binding_args(&fixture("names", "006-bind-request.json")).unwrap().pod_uid,
            node: "worker-4".into(),
        }
    );
}

#[tokio::test]
async fn full_mode_answers_match_the_captures() {
    let fake = replay("full").await;
    let filters = fake.filters.lock().unwrap();
    assert_eq!(
        filters[0].nodes,
        [("worker-1", "zone-1"), ("worker-2", "zone-0"), ("worker-3", "zone-1"), ("worker-4", "zone-0")].map(
            |(name, zone)| CandidateNode {
                name: name.into(),
                zone: zone.into(),
                allocatable_cpu_millis: 16_000,
                allocatable_memory_bytes: 64 << 30,
            }
        )
    );
    assert_eq!(fake.scores.lock().unwrap()[0].nodes.len(), 3);
}

#[tokio::test]
async fn full_mode_echoes_node_objects_byte_for_byte() {
    #[derive(serde::Deserialize)]
    struct Items<'a> {
        #[serde(borrow)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Args<'a> {
        #[serde(rename = "Nodes", borrow)]
        nodes: Items<'a>,
    }
    let app = app(&start_fake(FakeScorer::default()).await);
    let body = fixture("full", "001-filter-request.json");
    let (status, _, answer) = send(&app, axum::http::Method::POST, "/filter", body.clone()).await;
    assert_eq!(status, 200);
    let answer = std::str::from_utf8(&answer).unwrap();
    let request: Args<'_> = serde_json::from_slice(&body).unwrap();
    for (i, raw) in request.nodes.items.iter().enumerate() {
        // worker-3 (index 2) is the one the fake scorer drops.
        assert_eq!(answer.contains(raw.get()), i != 2, "item {i} echoed verbatim iff it passes");
    }
}

#[tokio::test]
async fn lower_camel_keys_are_accepted() {
    let app = app(&start_fake(FakeScorer::default()).await);
    let (status, answer) = post(
        &app,
        "/filter",
        json!({"pod": {"metadata": {"name": "p", "namespace": "ns"}}, "nodeNames": ["worker-1", "worker-3"]})
            .to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"NodeNames": ["worker-1"], "FailedNodes": {"worker-3": "capture: rejected by test extender"},
            "FailedAndUnresolvableNodes": {}, "Error": ""})
    );
    let (status, answer) = post(
        &app,
        "/bind",
        json!({"podName": "p", "podNamespace": "ns", "podUID": "u", "node": "worker-1"}).to_string(),
    )
    .await;
    assert_eq!((status, answer), (axum::http::StatusCode::OK, json!({"Error": ""})));
}
