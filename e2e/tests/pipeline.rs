//! End to end: the three real binaries on loopback, fed by real agents, answering the
//! captured kube-scheduler requests, queried with the real grpcurl.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fitsched_e2e::paths;
use fitsched_e2e::stack::{Stack, StackConfig, block_on, http_agent};
use fitsched_e2e::tools;
use fitsched_proto::{ExplainRequest, ListNodesRequest, MetricSummary, NodeWindow, metric};
use serde_json::{Value, json};

const WORKERS: [&str; 4] = ["worker-1", "worker-2", "worker-3", "worker-4"];

/// One real agent per captured node name: each reads this machine's /proc.
fn stack(name: &str, shim_args: &[&str]) -> Stack {
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: WORKERS.iter().map(|w| Some((*w).to_owned())).collect(),
        shim_args: shim_args.iter().map(|s| (*s).to_owned()).collect(),
        log_dir: paths::target_dir().join("fitsched-logs").join(name),
        ..StackConfig::default()
    };
    let mut stack = Stack::start(config).expect("stack starts");
    stack.wait_for_nodes(&WORKERS, 4, Duration::from_secs(60)).expect("every worker's window is scored");
    stack
}

fn post(url: &str, body: impl AsRef<[u8]>) -> (u16, Value) {
    let mut r = http_agent(Duration::from_secs(10))
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.as_ref())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.body_mut().with_config().limit(1 << 30).read_to_string().expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url} answered non-JSON ({e}): {text}"));
    (status, value)
}

/// Sends only the headers of a request whose declared body exceeds the shim's limit and
/// reads the answer: the shim must refuse from the header, before any body arrives.
fn declare_oversized(addr: std::net::SocketAddr, path: &str, len: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: shim\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the (small, JSON) body is complete or the shim closes the connection.
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && serde_json::from_str::<Value>(body).is_ok()
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("non-JSON 413 body ({e}): {text}")))
}

fn get(url: &str) -> String {
    http_agent(Duration::from_secs(10)).get(url).call().expect("GET").body_mut().read_to_string().expect("body")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("JSON")
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// Request node names, from `NodeNames` or `Nodes.items`.
fn request_nodes(req: &Value) -> Vec<String> {
    if let Some(names) = req["NodeNames"].as_array() {
        return names.iter().map(|n| n.as_str().expect("name").to_owned()).collect();
    }
    req["Nodes"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
#[ignore = "runs the built binaries, grpcurl and ONNX Runtime from the venv: cargo xtask test"]
fn shim_answers_every_captured_request_with_the_captured_shape() {
    let stack = stack("fixtures", &[]);
    let fixtures = paths::fixtures_dir();
    assert!(fixtures.is_dir(), "fixtures missing at {} (they are part of the repository)", fixtures.display());
    let mut checked = 0;
    for mode in ["names", "full"] {
        let mut files: Vec<_> = std::fs::read_dir(fixtures.join(mode)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for req_path in files.iter().filter(|p| p.to_string_lossy().ends_with("-request.json")) {
            let file = req_path.file_name().unwrap().to_string_lossy().into_owned();
            let verb = file.split('-').nth(1).unwrap();
            let req_bytes = std::fs::read(req_path).unwrap();
            let req: Value = serde_json::from_slice(&req_bytes).unwrap();
            let (status, got) = post(&format!("{}/{verb}", stack.shim_url()), &req_bytes);
            assert_eq!(status, 200, "{mode}/{file}: {got}");
            let want_path = req_path.with_file_name(file.replace("-request", "-response"));
            match verb {
                "filter" => {
                    let want = read_json(&want_path);
                    assert_eq!(keys(&got), keys(&want), "{mode}/{file}: filter result keys");
                    assert_eq!(got["Error"], "");
                    // No hardware filter rule is enabled here, so every node passes,
                    // and full mode echoes the Node objects exactly as sent.
                    if mode == "names" {
                        assert_eq!(got["NodeNames"], req["NodeNames"], "{mode}/{file}");
                        assert!(got["Nodes"].is_null());
                    } else {
                        assert_eq!(got["Nodes"]["items"], req["Nodes"]["items"], "{mode}/{file}");
                        assert!(got["NodeNames"].is_null());
                    }
                }
                "prioritize" => {
                    let want = read_json(&want_path);
                    let list = got.as_array().expect("HostPriorityList");
                    let hosts: Vec<&str> = list.iter().map(|h| h["Host"].as_str().unwrap()).collect();
                    assert_eq!(hosts, request_nodes(&req), "{mode}/{file}: one entry per node, in order");
                    for h in list {
                        assert_eq!(keys(h), keys(&want[0]), "{mode}/{file}");
                        assert!((0..=10).contains(&h["Score"].as_i64().unwrap()), "{h}");
                    }
                    // The scores came from fitness of real windows, not the fallback.
                    let pod = &req["Pod"]["metadata"];
                    let ask = ExplainRequest {
                        pod_namespace: pod["namespace"].as_str().unwrap().into(),
                        pod_name: pod["name"].as_str().unwrap().into(),
                    };
                    let d = block_on(async { stack.scorer_client().await.unwrap().explain(ask).await })
                        .expect("the scorer explains its decision")
                        .into_inner();
                    assert_eq!(d.candidates as usize, hosts.len());
                    assert!(d.top.iter().all(|s| s.fitness.is_some()), "{:?}", d.top);
                }
                "bind" => {
                    let want = serde_json::json!({"Error": ""});
                    if want_path.exists() {
                        assert_eq!(read_json(&want_path), want);
                    }
                    assert_eq!(got, want, "{mode}/{file}");
                }
                other => panic!("unexpected fixture verb {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12, "every captured request was replayed");
}

#[test]
#[ignore = "runs the built binaries, grpcurl and ONNX Runtime from the venv: cargo xtask test"]
fn grpcurl_reflection_health_score_metrics_and_bad_input() {
    let venv = tools::ensure_venv().expect("grpcurl venv");
    let stack = stack("grpcurl", &["--max-body-bytes", "1048576"]);
    // As an operator would call it; the shim's credential for Score.
    let as_role = |role: &str, args: &[&str]| -> String {
        let auth = format!("authorization: Bearer {}", stack.token(role).expect("the stack is closed"));
        let out =
            Command::new(venv.grpcurl()).args(["-plaintext", "-H", &auth]).args(args).output().expect("grpcurl runs");
        assert!(out.status.success(), "grpcurl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let grpcurl = |args: &[&str]| as_role("operator", args);
    let addr = stack.scorer_grpc.to_string();

    let services = grpcurl(&[&addr, "list"]);
    for s in [
        "fitsched.v1.Scorer",
        "fitsched.v1.Ingest",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.lines().any(|l| l == s), "`grpcurl list` lacks {s}:\n{services}");
    }
    let health = grpcurl(&[&addr, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    let body = json!({"pod": {"name": "p", "namespace": "default", "strategy": "spread"},
                      "nodes": [{"name": "worker-1"}, {"name": "never-seen"}]})
    .to_string();
    let scored: Value =
        serde_json::from_str(&as_role("scheduler", &["-d", &body, &addr, "fitsched.v1.Scorer/Score"])).expect("JSON");
    assert_eq!(scored["strategy"], "spread");
    assert_eq!(scored["scores"][0]["basis"], "SCORE_BASIS_FITNESS", "{scored}");
    assert_eq!(scored["scores"][1]["basis"], "SCORE_BASIS_UNKNOWN_NODE", "{scored}");
    // A node without telemetry is scored like the cluster's median node, and says so.
    let reason = scored["scores"][1]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("no window from this node yet: median fitness"), "{scored}");
    let model: Value = serde_json::from_str(&grpcurl(&[&addr, "fitsched.v1.Scorer/ModelInfo"])).expect("JSON");
    assert_eq!(model["kind"], "heuristic");

    // The real agents' windows carry this machine's procfs metrics. The very first
    // window may hold only the first tick, which has no rates yet (absent, not zero), so
    // wait for one that has them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let w1 = loop {
        let nodes = block_on(async { stack.scorer_client().await.unwrap().list_nodes(ListNodesRequest {}).await })
            .unwrap()
            .into_inner()
            .nodes;
        let w1 = nodes.iter().find(|n| n.name == "worker-1").and_then(|n| n.latest.clone()).expect("worker-1 window");
        if w1.metrics.contains_key(metric::CPU_UTILIZATION) || std::time::Instant::now() > deadline {
            break w1;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(w1.samples > 0);
    for m in [metric::CPU_UTILIZATION, metric::MEMORY_AVAILABLE_RATIO, metric::LOAD1_PER_CPU] {
        assert!(w1.metrics.contains_key(m), "worker-1's window lacks {m}: {:?}", w1.metrics.keys());
    }

    // Every binary serves Prometheus metrics; the scorer keeps the seed's names.
    let scorer_metrics = get(&format!("http://{}/metrics", stack.scorer_http));
    assert!(scorer_metrics.contains("inference_predictions_total"), "{scorer_metrics}");
    assert!(scorer_metrics.contains("inference_prediction_duration_seconds_bucket"), "{scorer_metrics}");
    assert!(get(&format!("http://{}/metrics", stack.agent_http[0])).contains("fitsched_agent_windows_total"));

    // Bad input: a clear error, a JSON body, no change, no crash.
    let shim = stack.shim_url();
    for (path, body, want) in [
        ("filter", b"{".to_vec(), 400),
        ("prioritize", b"{\"Pod\": 7}".to_vec(), 400),
        ("filter", b"{}".to_vec(), 400),
        ("frobnicate", b"{}".to_vec(), 404),
    ] {
        let (status, answer) = post(&format!("{shim}/{path}"), &body);
        assert_eq!(status, want, "/{path}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "/{path}: {answer}");
    }
    let (status, answer) = declare_oversized(stack.shim_http, "/prioritize", 2 << 20);
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("limit")), "{answer}");
    let empty = json!({"Pod": {"metadata": {"name": "p", "namespace": "ns"}}, "NodeNames": []});
    let (status, answer) = post(&format!("{shim}/prioritize"), empty.to_string());
    assert_eq!((status, answer), (200, json!([])));
    // A bare pod (no owner) on an unknown node is scored, not refused.
    let bare = json!({"Pod": {"metadata": {"name": "bare", "namespace": "ns"}}, "NodeNames": ["worker-1", "ghost"]});
    let (status, answer) = post(&format!("{shim}/prioritize"), bare.to_string());
    assert_eq!(status, 200);
    assert_eq!(answer[1]["Host"], "ghost", "{answer}");
    assert!(answer[1]["Score"].as_i64().is_some_and(|s| (0..=10).contains(&s)), "{answer}");
    assert!(get(&format!("http://{}/metrics", stack.shim_metrics)).contains("fitsched_shim_bad_requests_total"));

    // A window with NaN is refused with INVALID_ARGUMENT and stores nothing.
    let (status, after) = block_on(async {
        let mut w =
            NodeWindow { node_name: "worker-1".into(), agent_id: "intruder".into(), sequence: 1, ..Default::default() };
        w.metrics.insert(metric::CPU_UTILIZATION.into(), MetricSummary { mean: f64::NAN, ..Default::default() });
        let mut ingest = stack.ingest_client().await.unwrap();
        let status = match ingest.stream(tokio_stream_once(w)).await {
            Ok(resp) => resp.into_inner().message().await.expect_err("the window must be refused"),
            Err(status) => status,
        };
        let nodes = stack.scorer_client().await.unwrap().list_nodes(ListNodesRequest {}).await.unwrap().into_inner();
        (status, nodes.nodes)
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let stored = after.iter().find(|n| n.name == "worker-1").and_then(|n| n.latest.as_ref()).unwrap();
    assert_ne!(stored.agent_id, "intruder");
}

fn tokio_stream_once(w: NodeWindow) -> impl tonic::codegen::tokio_stream::Stream<Item = NodeWindow> + Send + 'static {
    tonic::codegen::tokio_stream::iter(vec![w])
}

#[test]
#[ignore = "runs the built binaries, grpcurl and ONNX Runtime from the venv: cargo xtask test"]
fn scheduling_goes_on_while_the_scorer_is_down_and_agents_come_back() {
    let mut stack = stack("outage", &["--deadline", "200ms"]);
    let shim = stack.shim_url();
    let args = json!({"Pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}, "NodeNames": WORKERS});
    stack.kill("scorer").unwrap();

    let (status, scores) = post(&format!("{shim}/prioritize"), args.to_string());
    assert_eq!(status, 200);
    let neutral: Vec<Value> =
        WORKERS.iter().map(|w| json!({"Host": w, "Score": fitsched_proto::score::NEUTRAL})).collect();
    assert_eq!(scores, Value::Array(neutral), "neutral scores while the scorer is down");
    let (status, filtered) = post(&format!("{shim}/filter"), args.to_string());
    assert_eq!(status, 200);
    assert_eq!(filtered["NodeNames"], json!(WORKERS), "every node passes while the scorer is down");
    assert!(get(&format!("http://{}/metrics", stack.shim_metrics)).contains("fitsched_shim_fallbacks_total"));

    // The agents reconnect to a restarted scorer on their own.
    stack.start_scorer().unwrap();
    stack.wait_for_nodes(&WORKERS, 4, Duration::from_secs(60)).expect("agents stream again after the restart");
    let log = stack.log("shim");
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("answering neutrally") && l.contains("ns/p")),
        "the fallback is logged with the pod:\n{log}"
    );
    let (status, scores) = post(&format!("{shim}/prioritize"), args.to_string());
    assert_eq!(status, 200);
    assert_eq!(scores.as_array().unwrap().len(), 4);
}

#[test]
#[ignore = "runs the built binaries, grpcurl and ONNX Runtime from the venv: cargo xtask test"]
fn the_committed_onnx_model_scores_real_windows() {
    let venv = tools::ensure_venv().expect("venv with onnxruntime and grpcurl");
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: vec![Some("model-node".into())],
        log_dir: paths::target_dir().join("fitsched-logs").join("model"),
        ..StackConfig::default()
    }
    .with_committed_model(&venv)
    .expect("model config");
    let mut stack = Stack::start(config).expect("stack starts with the ONNX model");
    stack.wait_for_nodes(&["model-node"], 1, Duration::from_secs(60)).expect("fitness from the model");

    let addr = stack.scorer_grpc.to_string();
    let auth = format!("authorization: Bearer {}", stack.token("operator").unwrap());
    let out = Command::new(venv.grpcurl())
        .args(["-plaintext", "-H", &auth, &addr, "fitsched.v1.Scorer/ModelInfo"])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&out.stdout).expect("ModelInfo JSON");
    assert_eq!(info["kind"], "onnx", "{info}");
    // grpcurl shows the held-out validation first: the selection rule scored on outer
    // folds, then the shipped model leading its grouped scheme.
    let v = info["validation"].as_array().expect("validation");
    assert_eq!(
        (&v[0]["scheme"], &v[0]["model"]),
        (&json!("nested_leave_one_group_out"), &json!("selection_rule")),
        "{info}"
    );
    let first = v.iter().find(|x| x["scheme"] == "leave_one_group_out").expect("per-model figures");
    assert_eq!(first["shipped"], json!(true), "{info}");
    let kind = first["model"].as_str().unwrap_or("?");
    assert!(info["version"].as_str().is_some_and(|v| v.starts_with(kind)), "the version names the {kind}: {info}");
    assert!(info["features"].as_array().is_some_and(|f| !f.is_empty()));

    let node = block_on(async { stack.scorer_client().await.unwrap().list_nodes(ListNodesRequest {}).await })
        .unwrap()
        .into_inner()
        .nodes
        .into_iter()
        .find(|n| n.name == "model-node")
        .unwrap();
    let fitness = node.fitness.expect("a fitness");
    assert!((0.0..=1.0).contains(&fitness));
    let log = stack.log("scorer");
    assert!(
        log.contains(&format!("{kind} fitness model"))
            && log.contains("held out nested, outer: leave one interference group out"),
        "the scorer says which model it runs and how it held out:\n{log}"
    );
}

/// `fitsched-agent --replay`: the scorer receives exactly the windows of the file, through
/// the real stream and ingest, and a rewritten file is the next window.
#[test]
#[ignore = "runs the built binaries, grpcurl and ONNX Runtime from the venv: cargo xtask test"]
fn a_replaying_agent_streams_the_windows_of_its_file() {
    let dir = paths::target_dir().join("fitsched-logs").join("replay");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("replay.json");
    let write = |cpu: f64| {
        let w = |c: f64| {
            json!({"metrics": {metric::CPU_UTILIZATION: {"mean": c, "max": c, "p95": c, "last": c},
                                            metric::CPU_COUNT: {"mean": 2.0, "max": 2.0, "p95": 2.0, "last": 2.0}},
                                "missing": {metric::PERF_IPC: "no PMU (replayed)"}})
        };
        let tmp = dir.join("replay.json.tmp");
        std::fs::write(&tmp, json!({"nodes": {"replayed-1": w(cpu), "replayed-2": w(1.0 - cpu)}}).to_string()).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write(0.25);
    let config = StackConfig {
        window: "1s".into(),
        real_agents: vec![],
        replay: Some(file.clone()),
        log_dir: dir.join("logs"),
        ..StackConfig::default()
    };
    let mut stack = Stack::start(config).expect("stack starts");
    stack.wait_for_nodes(&["replayed-1", "replayed-2"], 2, Duration::from_secs(30)).expect("both nodes are scored");
    let latest = |stack: &Stack| -> Vec<(String, f64, u32, Vec<String>)> {
        let nodes = block_on(async {
            let mut c = stack.scorer_client().await.unwrap();
            c.list_nodes(ListNodesRequest {}).await.unwrap().into_inner().nodes
        });
        let mut out: Vec<_> = nodes
            .into_iter()
            .filter_map(|n| {
                let w = n.latest?;
                let missing = w.missing.iter().map(|m| m.name.clone()).collect();
                Some((n.name, w.metrics[metric::CPU_UTILIZATION].mean, w.samples, missing))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let first = latest(&stack);
    assert_eq!(
        first.iter().map(|n| (n.0.as_str(), n.1)).collect::<Vec<_>>(),
        [("replayed-1", 0.25), ("replayed-2", 0.75)]
    );
    assert!(
        first.iter().all(|n| n.2 == 5 && n.3 == [metric::PERF_IPC]),
        "a full window, missing what the file says: {first:?}"
    );
    write(0.5);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while latest(&stack).iter().any(|n| n.1 != 0.5) {
        assert!(std::time::Instant::now() < deadline, "the rewritten file never arrived: {:?}", latest(&stack));
        std::thread::sleep(Duration::from_millis(100));
    }
    stack.check_alive().expect("every process still runs");
}
