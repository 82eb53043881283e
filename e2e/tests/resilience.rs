//! End to end: what the stream promises when things go wrong. A scorer crash and a cut
//! network lose no window, and no scorer process stores one twice; TLS and tokens keep
//! strangers out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fitsched_e2e::drill;
use fitsched_e2e::paths;
use fitsched_e2e::stack::{Stack, StackConfig, TlsFiles, block_on};
use fitsched_proto::ingest_client::IngestClient;
use fitsched_proto::{ExplainRequest, NodeWindow};

fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    drill::wait_until(what, timeout, done).unwrap();
}

#[test]
#[ignore = "runs the built binaries: cargo xtask test"]
fn a_scorer_crash_loses_no_window_and_no_process_stores_one_twice() {
    let node = "restart-node";
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: vec![Some(node.into())],
        log_dir: paths::target_dir().join("fitsched-logs/restart"),
        ..StackConfig::default()
    };
    let mut stack = Stack::start(config).expect("stack starts");
    let now = |stack: &Stack| drill::stored_windows(stack, node).unwrap_or_default();
    wait_until("three stored windows", Duration::from_secs(30), || now(&stack).stored >= 3);

    // Windows close on whole seconds and are acknowledged within a tick or two; read and
    // kill in the middle of a window so none is in flight: then the only window both
    // processes store is the newest acknowledged one, which the agent sends first on every
    // new connection (a window stored but not yet acknowledged at the kill would be stored
    // by both too: the scorer keeps windows in memory only).
    let second = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() / 1000;
    let before = loop {
        wait_until("mid-window", Duration::from_secs(2), || {
            let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % 1000;
            (400..600).contains(&ms)
        });
        let started = second();
        let before = drill::stored_windows(&stack, node).unwrap();
        // Read and kill within one window: no window closed (so none was stored) since.
        if second() == started {
            stack.kill("scorer").unwrap();
            if second() == started {
                break before;
            }
            panic!("the kill took past the window's end; the test cannot tell what both processes stored");
        }
    };
    // Five windows' worth of outage: the agent buffers them (default 30).
    std::thread::sleep(Duration::from_secs(5));
    stack.start_scorer().expect("scorer restarts on the same ports");
    wait_until("the outage's windows to arrive", Duration::from_secs(60), || now(&stack).latest >= before.latest + 7);
    let after = drill::stored_windows(&stack, node).unwrap();

    // Each process stores in increasing order by construction; what it stored is the run
    // from its first window to its latest, less what it skipped.
    assert_eq!((before.first(), before.skipped), (1, 0), "the first scorer lost windows: {before:?}");
    assert_eq!(after.skipped, 0, "the restarted scorer lost windows: {after:?}");
    assert_eq!(
        after.first(),
        before.latest,
        "the restarted scorer's first window is the newest acknowledged one: before {before:?}, after {after:?}"
    );
    assert!(after.stored >= 6, "the outage's windows were resent: {after:?}");
}

#[test]
#[ignore = "runs the built binaries: cargo xtask test"]
fn a_network_cut_loses_no_window_stores_none_twice_and_keeps_order() {
    let cut = drill::network_cut("cut", Duration::from_secs(8)).expect("the drill runs");
    assert!(cut.resent >= 8, "the cut's windows were resent: {cut:?}");
    assert_eq!(cut.lost, 0, "{cut:?}");
}

#[test]
#[ignore = "runs the built binaries: cargo xtask test"]
fn a_scorer_slowed_past_the_deadline_gets_neutral_answers_before_it_would_have() {
    let slow = drill::slow_scorer("slow", Duration::from_secs(2), 10).expect("the drill runs");
    assert_eq!(slow.neutral, slow.requests, "{slow:?}");
    // Every answer came from the shim's deadline, not from the slowed scorer.
    assert!(slow.max < slow.delay, "{slow:?}");
    assert!(slow.rss_kib.1 < slow.rss_kib.0 + 16 * 1024, "the shim's memory grew: {slow:?}");
}

#[test]
#[ignore = "runs the built binaries: cargo xtask test"]
fn tls_and_tokens_keep_strangers_out() {
    let dir = paths::target_dir().join("fitsched-logs/tls");
    let tls = TlsFiles::generate(&dir.join("pki")).unwrap();
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: vec![Some("tls-node".into())],
        log_dir: dir.clone(),
        tls: Some(tls.clone()),
        ..StackConfig::default()
    };
    let mut stack = Stack::start(config).expect("stack starts with TLS and a token");
    // The agent got in (TLS verified, token accepted) and the shim reaches the scorer
    // over TLS: its answer comes from fitness, not from the fallback.
    stack.wait_for_nodes(&["tls-node"], 1, Duration::from_secs(60)).expect("the agent streams over TLS");
    let body = serde_json::json!({"Pod": {"metadata": {"name": "p", "namespace": "ns"}}, "NodeNames": ["tls-node"]});
    let mut r = fitsched_e2e::stack::http_agent(Duration::from_secs(10))
        .post(format!("{}/prioritize", stack.shim_url()))
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.body_mut().read_to_string().unwrap());
    let decision = block_on(async {
        let req = ExplainRequest { pod_namespace: "ns".into(), pod_name: "p".into() };
        stack.scorer_client().await.unwrap().explain(req).await
    });
    assert!(decision.expect("the shim's call reached the scorer").into_inner().top[0].fitness.is_some());

    // Strangers: no token, a wrong token, another role's token, plaintext.
    let window = NodeWindow { node_name: "intruder".into(), agent_id: "x".into(), sequence: 1, ..Default::default() };
    let shim_token = stack.token("scheduler").unwrap();
    for (token, code) in [
        (None, tonic::Code::Unauthenticated),
        (Some("guess"), tonic::Code::Unauthenticated),
        (Some(shim_token.as_str()), tonic::Code::PermissionDenied),
    ] {
        let w = window.clone();
        let status = block_on(async {
            let mut client = IngestClient::new(stack.channel_with(token).await.unwrap());
            match client.stream(tonic::codegen::tokio_stream::iter(vec![w])).await {
                Ok(resp) => resp.into_inner().message().await.expect_err("a stranger's window must be refused"),
                Err(status) => status,
            }
        });
        assert_eq!(status.code(), code, "token {token:?}: {status:?}");
    }
    let plaintext = format!("http://{}", stack.scorer_grpc);
    let refused = block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(plaintext).unwrap().connect().await;
        match channel {
            Err(e) => Err(e.to_string()),
            Ok(ch) => IngestClient::new(ch)
                .stream(tonic::codegen::tokio_stream::iter(vec![window]))
                .await
                .map(|_| ())
                .map_err(|s| s.to_string()),
        }
    });
    assert!(refused.is_err(), "plaintext reached a TLS scorer");
    assert!(!stack.scored_nodes().unwrap().contains(&"intruder".to_owned()), "no stranger's window was stored");
    // The agent's token does not open the shim's RPCs either.
    let bind = block_on(async {
        let req = fitsched_proto::BindRequest { node: "tls-node".into(), ..Default::default() };
        stack.scorer_client_as("agent").await.unwrap().bind(req).await
    });
    assert_eq!(bind.unwrap_err().code(), tonic::Code::PermissionDenied);
    let log = stack.log("scorer");
    assert!(log.contains("call refused") && log.contains("unauthenticated"), "refusals are logged: {log}");
}

#[test]
#[ignore = "runs the built binaries: cargo xtask test"]
fn a_bad_model_pushed_under_load_leaves_the_old_one_serving() {
    let venv = fitsched_e2e::tools::ensure_venv().expect("venv");
    let f = drill::bad_model("bad-model", &venv, 2).expect("the drill runs");
    assert_eq!((f.failed, f.neutral), (0, 0), "every call was answered from the model: {f:?}");
    assert_eq!(f.refused, 2, "{f:?}");
    assert_eq!(f.reasons.len(), 2, "the log says why: {f:?}");
    assert_eq!(f.version.0, f.version.1, "the old model kept serving: {f:?}");
    assert!(f.scored_on_fitness_after > 0, "scores rested on the old model's fitness after the refusals: {f:?}");
    assert!(f.good_reloaded, "{f:?}");
}
