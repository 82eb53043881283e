//! End to end against the real kube-scheduler: the chart installed into a control plane
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler v1.36.2), real
//! Deployments, and fitsched's binaries with the chart's arguments and ServiceAccounts.
//! Each test runs its own control plane; they take turns, since two at once would share
//! two cores.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use fitsched_e2e::cluster::{Placement, Workload, sum_metric};
use fitsched_e2e::drill;
use fitsched_e2e::process::scrape;
use fitsched_e2e::testbed::{Spread, Testbed, TestbedConfig, is_healthy, is_without_telemetry};
use fitsched_proto::ingest_client::IngestClient;
use fitsched_proto::{CandidateNode, MetricSummary, NodeWindow, Owner, PodFacts, ScoreRequest};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A counter's value (summed over series with `label`) on a fitsched binary's /metrics.
fn metric(addr: std::net::SocketAddr, name: &str, label: &str) -> u64 {
    sum_metric(&scrape(addr).expect("/metrics"), name, label)
}

fn run(tb: &Testbed, w: &Workload) -> Vec<Placement> {
    tb.cluster.create_workload(w).expect("Deployment created");
    tb.cluster.wait_scheduled(w, Duration::from_secs(120)).expect("every replica bound")
}

#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn strategies_hold_among_kube_schedulers_plugins() {
    let _turn = take_turn();
    let mut tb = Testbed::start(TestbedConfig::new("strategies", 24)).expect("testbed starts");
    tb.start_scheduler().expect("kube-scheduler starts");

    // A perfect packer puts 20 pods of 100m on one 16-CPU node.
    let pack = Workload::new("apps", "pack", 20, &tb.profile("pack"));
    let placed = run(&tb, &pack);
    let nodes = tb.spread(&placed).per_node;
    assert!(nodes.len() <= 2, "pack: 20 small pods on {} nodes: {nodes:?}", nodes.len());
    tb.cluster.delete_workload(&pack).unwrap();

    // 12 replicas, 24 nodes in 3 zones: one per node, four per zone.
    let spread = Workload::new("apps", "spread", 12, &tb.profile("spread"));
    let placed = run(&tb, &spread);
    let Spread { per_node: nodes, per_zone: zones } = tb.spread(&placed);
    assert!(nodes.values().all(|&n| n == 1), "spread: siblings share a node: {nodes:?}");
    let (lo, hi) = (zones.values().min().unwrap(), zones.values().max().unwrap());
    assert!(zones.len() == 3 && hi - lo <= 1, "spread: zones unbalanced: {zones:?}");
    tb.cluster.delete_workload(&spread).unwrap();

    // Half of the nodes (12) follow profiles the measurements call healthy (idle, memory
    // held without stalls); the other half a busy CPU or a busy disk, each measured to
    // cost a quarter of the throughput or more. balanced puts every replica on a healthy node,
    // one per node; kube-scheduler alone would put half of them there.
    let balanced = Workload::new("apps", "balanced", 6, &tb.profile("balanced"));
    let placed = run(&tb, &balanced);
    let nodes = tb.spread(&placed).per_node;
    let healthy = placed.iter().filter(|p| is_healthy(&p.node)).count();
    assert!(healthy == 6 && nodes.len() == 6, "balanced: {healthy} of 6 on healthy nodes: {nodes:?}");

    // kube-scheduler bound every pod itself (the chart leaves bindVerb out): the shim was
    // never asked to bind, and the scorer's pod watch met each of the 38 placements with
    // the top pick it had recorded when it scored the pod (confirmed or contradicted).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(tb.stack.scorer_http, "fitsched_scorer_recorded_placements_total", "") < 38 {
        assert!(std::time::Instant::now() < deadline, "placements the scorer watched: {}", tb.stack.log("scorer"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(tb.stack.scorer_http, "fitsched_scorer_binds_total", ""), 0, "no bind through the shim");
    // And kube-scheduler reports each as scheduled by the profile the pod asked for.
    let profiles = [tb.profile("pack"), tb.profile("spread"), tb.profile("balanced")];
    let events: Api<Event> = Api::namespaced(tb.cluster.client(), "apps");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = tb.cluster.block_on(events.list(&ListParams::default())).unwrap();
        let scheduled: Vec<&str> = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Scheduled"))
            .map(|e| e.reporting_controller.as_deref().unwrap_or_default())
            .collect();
        if scheduled.len() >= 38 {
            assert!(scheduled.iter().all(|c| profiles.iter().any(|p| p == c)), "Scheduled events from {scheduled:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} Scheduled events of 38", scheduled.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn nodes_without_telemetry_get_no_more_than_their_share() {
    let _turn = take_turn();
    let config = TestbedConfig { without_telemetry: 6, ..TestbedConfig::new("dark-nodes", 30) };
    let mut tb = Testbed::start(config).expect("testbed starts");
    tb.start_scheduler().expect("kube-scheduler starts");
    for strategy in ["spread", "balanced"] {
        let w = Workload::new("apps", strategy, 18, &tb.profile(strategy));
        let placed = run(&tb, &w);
        let dark = placed.iter().filter(|p| is_without_telemetry(&p.node)).count();
        // 6 of 36 nodes: a share of 3 pods.
        assert!(
            dark <= 3,
            "{strategy}: {dark} of 18 pods on the 6 nodes without telemetry: {:?}",
            tb.spread(&placed).per_node
        );
        tb.cluster.delete_workload(&w).unwrap();
    }
    // Never a blacklist: a spread ReplicaSet as large as the cluster uses each of them
    // (the busiest nodes, whose fitness is below the median, may get none).
    let w = Workload::new("apps", "everywhere", 36, &tb.profile("spread"));
    let placed = run(&tb, &w);
    let nodes = tb.spread(&placed).per_node;
    let dark = nodes.iter().filter(|(n, _)| is_without_telemetry(n)).count();
    assert_eq!(dark, 6, "spread over 36 nodes leaves a node without telemetry out: {nodes:?}");
}

#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn every_pod_is_bound_while_the_scorer_restarts_and_the_watch_counts_replicas_after() {
    let _turn = take_turn();
    let mut tb = Testbed::start(TestbedConfig::new("scorer-restart", 12)).expect("testbed starts");
    tb.start_scheduler().expect("kube-scheduler starts");
    // The scorer killed twice, down half a second each time, in a burst of 1 000 pods
    // (`cargo xtask drill` runs it on 20 nodes and prints the figures).
    let w = Workload::new("apps", "burst", 1000, &tb.profile("spread"));
    let figures = drill::scorer_restarts(&mut tb, &w, 2, Duration::from_millis(500)).expect("the drill runs");
    assert_eq!(figures.placed, 1000, "{figures:?}");
    assert!(figures.fallbacks > 0, "the shim never answered neutrally while the scorer was down: {figures:?}");
    assert!(figures.scored_on_fitness > 0, "the restarted scorer never scored on fitness: {figures:?}");
    let placed = tb.cluster.wait_scheduled(&w, Duration::from_secs(10)).unwrap();

    // The restarted scorer has no records of its own: what it knows of the siblings comes
    // from its pod watch, and must match the API server.
    let rs = tb
        .cluster
        .block_on(Api::<ReplicaSet>::namespaced(tb.cluster.client(), "apps").list(&ListParams::default()))
        .unwrap()
        .items
        .remove(0);
    let owner = Owner {
        kind: "ReplicaSet".into(),
        name: rs.metadata.name.clone().unwrap(),
        uid: rs.metadata.uid.clone().unwrap(),
    };
    let pod = PodFacts {
        name: "probe".into(),
        namespace: "apps".into(),
        owner: Some(owner),
        strategy: "spread".into(),
        ..Default::default()
    };
    let nodes: Vec<CandidateNode> =
        tb.nodes.iter().map(|n| CandidateNode { name: n.name.clone(), ..Default::default() }).collect();
    let expected = tb.spread(&placed).per_node;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scores = fitsched_e2e::stack::block_on(async {
            let mut c = tb.stack.scorer_client_as("scheduler").await.unwrap();
            c.score(ScoreRequest { pod: Some(pod.clone()), nodes: nodes.clone(), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .scores
        });
        let seen: BTreeMap<String, usize> = scores
            .iter()
            .filter_map(|s| {
                let n: usize = s.reason.split(" sibling(s) on node").next()?.rsplit(' ').next()?.parse().ok()?;
                (n > 0).then(|| (s.node.clone(), n))
            })
            .collect();
        if seen == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the scorer's watch shows {seen:?}, the API server {expected:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn a_refused_bind_binds_nothing_and_the_pod_is_bound_once_by_kube_scheduler() {
    let _turn = take_turn();
    // The shim runs with the scorer's account, which may not create Bindings: the API
    // server refuses every bind (RBAC), and kube-scheduler, with the extender ignorable,
    // binds the pod itself.
    let config = TestbedConfig {
        shim_kubeconfig: Some(|installed| installed.scorer_kubeconfig.clone()),
        values: json!({"extender": {"bindVerb": "bind"}}),
        ..TestbedConfig::new("refused-bind", 6)
    };
    let mut tb = Testbed::start(config).expect("testbed starts");
    tb.start_scheduler().expect("kube-scheduler starts");
    let w = Workload::new("apps", "refused", 8, &tb.profile("balanced"));
    let f = drill::refused_bind(&tb, &w).expect("the drill runs");
    assert_eq!(f.placed, 8, "{f:?}");
    assert!(f.refused >= 8, "forbidden binds counted: {f:?}");
    assert!(f.reported_to_scheduler >= 8, "kube-scheduler was told why: {f:?}");
    assert_eq!(f.scorer_told, 0, "the scorer was told of a bind that failed: {f:?}");
}

/// A pod deleted and re-created under the same name between scheduling and binding: the
/// bind names the old UID, the API server refuses it, nothing is bound.
#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn a_bind_meant_for_a_replaced_pod_binds_nothing() {
    let _turn = take_turn();
    let tb = Testbed::start(TestbedConfig::new("replaced-pod", 3)).expect("testbed starts");
    let f = drill::replaced_pod_bind(&tb, "apps").expect("the drill runs");
    assert!(f.error.contains("409") || f.error.to_lowercase().contains("uid"), "{f:?}");
    assert!(!f.bound, "the re-created pod was bound by a bind meant for its predecessor: {f:?}");
    assert_eq!(f.scorer_told, 0, "{f:?}");
}

/// The chart's scorer checks tokens with the real API server's TokenReview: an agent's
/// token bound to a pod speaks for that pod's node only, an unbound one for none, the
/// scheduler's account may score but not stream, and a token for another audience is no
/// token at all.
#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn the_api_server_says_who_calls_and_an_agent_reports_its_own_node_only() {
    let _turn = take_turn();
    let tb = Testbed::start(TestbedConfig::new("token-review", 2)).expect("testbed starts");
    let ns = tb.installed.namespace.clone();
    let account = |kind: &str, suffix: &str| -> String {
        let o = tb
            .installed
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(suffix)));
        o.expect("the chart's workload")["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap().to_owned()
    };
    let (agent_sa, scheduler_sa) = (account("DaemonSet", "-agent"), account("Deployment", "-scheduler"));
    let (own, other) = (tb.nodes[0].name.clone(), tb.nodes[1].name.clone());

    // The agent pod on `own`, as the DaemonSet would make it (API only: no kubelet runs it).
    let pods: Api<Pod> = Api::namespaced(tb.cluster.client(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "agent-on-own"},
        "spec": {"serviceAccountName": agent_sa, "nodeName": own, "containers": [{"name": "agent", "image": "fitsched-agent"}]},
    }))
    .unwrap();
    let pod = tb.cluster.block_on(pods.create(&PostParams::default(), &pod)).expect("agent pod created");
    let audience = json!(["fitsched-scorer"]);
    let bound = tb
        .cluster
        .token_request(
            &ns,
            &agent_sa,
            json!({"audiences": audience, "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "agent-on-own", "uid": pod.metadata.uid}}),
        )
        .expect("a projected agent token");
    let unbound = tb.cluster.token_request(&ns, &agent_sa, json!({"audiences": audience})).unwrap();
    let scheduler = tb.cluster.token_request(&ns, &scheduler_sa, json!({"audiences": audience})).unwrap();
    let other_audience = tb.cluster.token_request(&ns, &scheduler_sa, json!({"audiences": ["api"]})).unwrap();

    let stream = |token: &str, node: &str| -> Result<u64, tonic::Status> {
        let mut window = NodeWindow {
            node_name: node.into(),
            agent_id: format!("test-{}", fastrand::u64(..)),
            sequence: 1,
            start_unix_ms: 0,
            end_unix_ms: 20_000,
            ..Default::default()
        };
        window
            .metrics
            .insert("cpu_utilization".into(), MetricSummary { mean: 0.2, max: 0.3, p95: 0.3, last: 0.2, samples: 20 });
        fitsched_e2e::stack::block_on(async {
            let mut client = IngestClient::new(tb.stack.channel_with(Some(token)).await.unwrap());
            let mut acks = client.stream(tonic::codegen::tokio_stream::iter(vec![window])).await?.into_inner();
            match acks.message().await? {
                Some(ack) => Ok(ack.acked_sequence),
                None => Err(tonic::Status::unknown("stream ended without an ack")),
            }
        })
    };
    assert_eq!(stream(&bound, &own).expect("the agent reports its own node"), 1);
    let refused = stream(&bound, &other).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains(&own), "the refusal names the node the token is bound to: {refused:?}");
    assert_eq!(stream(&unbound, &own).unwrap_err().code(), tonic::Code::Unauthenticated, "no node, no windows");
    assert_eq!(stream(&scheduler, &own).unwrap_err().code(), tonic::Code::PermissionDenied);
    assert_eq!(stream(&other_audience, &own).unwrap_err().code(), tonic::Code::Unauthenticated);

    // The scheduler's account scores.
    let scored = fitsched_e2e::stack::block_on(async {
        let channel = tb.stack.channel_with(Some(&scheduler)).await.unwrap();
        let pod = PodFacts { name: "p".into(), namespace: "apps".into(), ..Default::default() };
        fitsched_proto::scorer_client::ScorerClient::new(channel)
            .score(ScoreRequest {
                pod: Some(pod),
                nodes: vec![CandidateNode { name: "any-node".into(), ..Default::default() }],
                ..Default::default()
            })
            .await
    });
    assert_eq!(scored.expect("the scheduler's account may score").into_inner().scores.len(), 1);
    assert!(metric(tb.stack.scorer_http, "fitsched_scorer_token_reviews_total", "result=\"accepted\"") >= 2);
}

/// Bursts at 500 nodes, made by a Deployment scale-up and by parallel creates, of 100 and
/// 1 000 replicas. kube-scheduler scores the next replica before the last one's bind
/// reaches the scorer, so only its own cache knows where the burst went: under `spread`
/// no node takes a second replica while a node holds none, and `balanced` stacks no more
/// than kube-scheduler alone ([`drill::burst_failures`] says exactly what is checked).
/// (`cargo xtask drill --only bursts --runs 5` repeats it and prints the figures.)
#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn bursts_keep_replicas_apart() {
    let _turn = take_turn();
    let nodes = 500;
    let mut tb = Testbed::start(TestbedConfig { window: "5s".into(), ..TestbedConfig::new("bursts", nodes) })
        .expect("testbed starts");
    let bursts = drill::bursts(&mut tb, &[100, 1000]).expect("the bursts run");
    let failures = drill::burst_failures(&bursts, nodes);
    assert!(failures.is_empty(), "{failures:#?} in {bursts:#?}");
}

/// The short version of `cargo xtask drill --only slow-apiserver`: etcd 100-300 ms away
/// from the API server each way, so every write takes about half a second to a second,
/// and a burst through fitsched still ends with every pod bound. What went wrong on the
/// way is counted: attempts kube-scheduler retried, and the shim's refused or late binds.
#[test]
#[ignore = "runs a control plane (etcd, ../shared/kube) and the built binaries: cargo xtask test"]
fn every_pod_is_bound_on_a_slow_control_plane() {
    let _turn = take_turn();
    let config = TestbedConfig {
        cluster: fitsched_e2e::cluster::ClusterOptions { etcd_proxy: true, ..Default::default() },
        ..TestbedConfig::new("slow-apiserver", 12)
    };
    let mut tb = Testbed::start(config).expect("testbed starts");
    tb.start_scheduler().expect("kube-scheduler starts");
    tb.cluster.etcd_latency(Duration::from_millis(100), Duration::from_millis(300)).unwrap();
    let w = Workload::new("apps", "slow", 60, &tb.profile("balanced"));
    tb.cluster.create_workload(&w).expect("Deployment created");
    let placed = tb.cluster.wait_scheduled(&w, Duration::from_secs(300)).expect("every replica bound");
    tb.cluster.etcd_latency(Duration::ZERO, Duration::ZERO).unwrap();
    assert_eq!(placed.len(), 60);
    let errors =
        sum_metric(&tb.cluster.scheduler_metrics().unwrap(), "scheduler_schedule_attempts_total", "result=\"error\"");
    let bind_errors = metric(tb.stack.shim_metrics, "fitsched_shim_bind_errors_total", "");
    let found = metric(tb.stack.shim_metrics, "fitsched_shim_binds_found_bound_total", "");
    println!(
        "slow control plane: 60 pods bound; kube-scheduler retried {errors} attempts; shim binds: {bind_errors} failed, {found} found already bound"
    );
}
