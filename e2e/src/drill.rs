//! Outage drills with real processes, each returning its figures: `cargo xtask drill`
//! prints them at full length, `e2e/tests/resilience.rs` runs short ones and asserts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cluster::Workload;
use crate::process::scrape;
use crate::proxy::Proxy;
use crate::stack::{Stack, StackConfig, free_addr};
use crate::testbed::Testbed;
use crate::{paths, progress};

/// What the running scorer says it stored of a stack's one node, from its `/metrics`
/// and `ListNodes`, not from its log. A scorer stores a node's windows in increasing
/// sequence order by construction (a resend at or below its latest is refused as a
/// duplicate), so counts and the latest sequence say what was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredWindows {
    /// Windows this scorer process stored (`fitsched_scorer_windows_total`).
    pub stored: u64,
    /// The node's latest stored sequence (`ListNodes`); 0 before any.
    pub latest: u64,
    /// Sequences skipped between two stored windows (`fitsched_scorer_windows_skipped_total`).
    pub skipped: u64,
    /// Resends refused as already stored (`fitsched_scorer_windows_duplicate_total`).
    pub refused_duplicates: u64,
}

impl StoredWindows {
    /// The first sequence this scorer process stored.
    pub fn first(&self) -> u64 {
        (self.latest + 1).saturating_sub(self.stored + self.skipped)
    }
}

/// [`StoredWindows`] of `node`, the only node `stack`'s agents report.
pub fn stored_windows(stack: &Stack, node: &str) -> anyhow::Result<StoredWindows> {
    let text = scrape(stack.scorer_http)?;
    let counter = |name: &str| crate::cluster::sum_metric(&text, name, "");
    let nodes = crate::stack::block_on(async {
        anyhow::Ok(stack.scorer_client().await?.list_nodes(fitsched_proto::ListNodesRequest {}).await?.into_inner())
    })?;
    let latest = nodes.nodes.iter().find(|n| n.name == node).and_then(|n| n.latest.as_ref()).map_or(0, |w| w.sequence);
    Ok(StoredWindows {
        stored: counter("fitsched_scorer_windows_total"),
        latest,
        skipped: counter("fitsched_scorer_windows_skipped_total"),
        refused_duplicates: counter("fitsched_scorer_windows_duplicate_total"),
    })
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
    pub resent: u64,
    /// Sequences never stored, up to the latest stored.
    pub lost: u64,
    /// Resends the scorer refused as already stored (none is stored twice).
    pub refused_duplicates: u64,
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
        log_dir: paths::target_dir().join("fitsched-logs").join(name),
        ..StackConfig::default()
    };
    let stack = Stack::start(config)?;
    let now = || stored_windows(&stack, &node).unwrap_or_default();
    wait_until("three stored windows", Duration::from_secs(30), || now().stored >= 3)?;
    progress(format!("{name}: cutting the agent's connection to the scorer for {cut:?}"));
    proxy.cut();
    let before = stored_windows(&stack, &node)?;
    std::thread::sleep(cut);
    proxy.restore();
    let restored = Instant::now();
    let last_made = before.latest + cut.as_secs();
    wait_until("the cut's windows to arrive", cut + Duration::from_secs(60), || now().latest >= last_made)?;
    let caught_up = restored.elapsed();
    let after = stored_windows(&stack, &node)?;
    Ok(CutFigures {
        cut,
        resent: after.stored - before.stored,
        // Every sequence up to the latest that this scorer process did not store (one agent,
        // from its first window: it never stores more windows than its latest sequence).
        lost: after
            .latest
            .checked_sub(after.stored)
            .context("the scorer stored more windows than its latest sequence")?,
        refused_duplicates: after.refused_duplicates,
        caught_up,
    })
}

/// What a scorer slowed past the shim's deadline did to the answers kube-scheduler got.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowFigures {
    pub deadline: Duration,
    pub delay: Duration,
    pub requests: usize,
    /// Answers that were 200 with every node at the neutral score.
    pub neutral: usize,
    pub p50: Duration,
    pub max: Duration,
    /// The shim's resident memory before and after the requests, KiB.
    pub rss_kib: (u64, u64),
}

/// The shim reaches the scorer through a [`Proxy`] that holds every chunk `delay`;
/// `requests` `/prioritize` calls follow one another, as kube-scheduler sends them.
pub fn slow_scorer(name: &str, delay: Duration, requests: usize) -> anyhow::Result<SlowFigures> {
    let deadline = Duration::from_millis(300);
    let scorer = free_addr()?;
    let proxy = Proxy::start(scorer)?;
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        real_agents: vec![Some(format!("{name}-node"))],
        scorer_grpc: Some(scorer),
        shim_scorer: Some(format!("http://{}", proxy.addr)),
        shim_args: vec!["--deadline".into(), format!("{}ms", deadline.as_millis())],
        log_dir: paths::target_dir().join("fitsched-logs").join(name),
        ..StackConfig::default()
    };
    let mut stack = Stack::start(config)?;
    let node = format!("{name}-node");
    stack.wait_for_nodes(&[node.as_str()], 1, Duration::from_secs(60))?;
    let body = serde_json::json!({"Pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}},
        "NodeNames": [node, "other-node"]})
    .to_string();
    let agent = crate::process::http_agent(Duration::from_secs(10));
    let url = format!("{}/prioritize", stack.shim_url());
    let rss = || -> anyhow::Result<u64> {
        let pid = stack.pid("shim").ok_or_else(|| anyhow::anyhow!("the shim is not running"))?;
        crate::process::status_kib(pid, "VmRSS")
    };
    progress(format!("{name}: the scorer slowed by {delay:?}, past the shim's {deadline:?} deadline"));
    proxy.slow(delay);
    let before = rss()?;
    let mut latencies = Vec::with_capacity(requests);
    let mut neutral = 0;
    for _ in 0..requests {
        let t = Instant::now();
        let mut r = agent.post(&url).send(body.as_str())?;
        latencies.push(t.elapsed());
        let answer: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        if r.status() == 200 && all_neutral(&answer) {
            neutral += 1;
        }
    }
    let after = rss()?;
    proxy.restore();
    latencies.sort();
    Ok(SlowFigures {
        deadline,
        delay,
        requests,
        neutral,
        p50: latencies[latencies.len() / 2],
        max: *latencies.last().unwrap_or(&Duration::ZERO),
        rss_kib: (before, after),
    })
}

/// Whether a `/prioritize` answer gives every node the neutral score: the shim's
/// fallback when the scorer could not answer.
fn all_neutral(answer: &serde_json::Value) -> bool {
    answer.as_array().is_some_and(|a| a.iter().all(|h| h["Score"] == fitsched_proto::score::NEUTRAL))
}

/// What killing the scorer during a burst did to scheduling.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartFigures {
    pub pods: usize,
    /// How long the scorer stayed down each time.
    pub down: Duration,
    /// The agents' (and scorer's) window.
    pub window: Duration,
    /// Pods kube-scheduler had counted as scheduled at each kill.
    pub scheduled_at_kill: Vec<u64>,
    /// Per restart: from the restarted scorer answering health to a fresh fitness for
    /// every node with telemetry again.
    pub recovered: Vec<Duration>,
    /// From the Deployment's creation until the drill saw every pod bound (after its
    /// last recovery wait, so at most that much late).
    pub burst: Duration,
    pub placed: usize,
    /// Per verb: extender calls the shim answered, and how many left more than 50 ms after
    /// the verb's deadline counted from the request's arrival
    /// (`fitsched_shim_late_answers_total`: 300 ms for `filter` and `prioritize`, the bind
    /// deadline for `bind`).
    pub calls: Vec<VerbCalls>,
    /// Calls the shim answered neutrally because the scorer was unreachable or late.
    pub fallbacks: u64,
    /// What the last scorer process scored its candidates on: a fresh window's fitness,
    /// or the median for nodes it had no (fresh) window from yet.
    pub scored_on_fitness: u64,
    pub scored_on_median: u64,
}

/// One verb's calls in a drill.
#[derive(Debug, Clone, PartialEq)]
pub struct VerbCalls {
    pub verb: &'static str,
    pub calls: u64,
    pub late: u64,
}

impl RestartFigures {
    /// Calls answered later than their deadline plus 50 ms, every verb.
    pub fn late(&self) -> u64 {
        self.calls.iter().map(|c| c.late).sum()
    }
}

/// Creates `workload` (its pods kube-scheduler's burst) and kills the scorer `kills`
/// times while kube-scheduler places them, each time for `down`: first once a tenth of
/// the pods are scheduled, then as soon as the restarted scorer scores every node on a
/// fresh window again (kube-scheduler places a few hundred pods a second here, so a burst
/// is over in seconds). Waits for every pod to be bound.
pub fn scorer_restarts(
    tb: &mut Testbed,
    workload: &Workload,
    kills: usize,
    down: Duration,
) -> anyhow::Result<RestartFigures> {
    let pods = workload.replicas as usize;
    let telemetry: usize = tb.nodes.iter().filter(|n| !crate::testbed::is_without_telemetry(&n.name)).count();
    let window = tb.stack.window()?;
    let start = Instant::now();
    let scheduled_before = tb.cluster.scheduled_attempts()?;
    tb.cluster.create_workload(workload)?;
    let mut scheduled_at_kill = Vec::new();
    let mut recovered = Vec::new();
    wait_until("a tenth of the burst scheduled", Duration::from_secs(120), || {
        tb.cluster.scheduled_attempts().is_ok_and(|n| n >= scheduled_before + (pods / 10) as u64)
    })?;
    for k in 1..=kills {
        let scheduled = tb.cluster.scheduled_attempts()? - scheduled_before;
        if scheduled as usize >= pods {
            bail!("the burst of {pods} pods was over before kill {k}: use more pods");
        }
        progress(format!(
            "killing the scorer ({k} of {kills}) with {scheduled} of {pods} pods scheduled, for {down:?}"
        ));
        tb.stack.kill("scorer")?;
        scheduled_at_kill.push(scheduled);
        std::thread::sleep(down);
        tb.stack.start_scorer()?;
        let up = Instant::now();
        wait_until("a fresh fitness for every node again", window * 4, || {
            tb.stack.scored_nodes().is_ok_and(|n| n.len() >= telemetry)
        })?;
        recovered.push(up.elapsed());
    }
    let placed = tb.cluster.wait_scheduled(workload, Duration::from_secs(300))?.len();
    let burst = start.elapsed();
    let shim = scrape(tb.stack.shim_metrics)?;
    let calls = ["filter", "prioritize", "bind"]
        .into_iter()
        .map(|verb| {
            let label = format!("verb=\"{verb}\"");
            VerbCalls {
                verb,
                calls: crate::cluster::sum_metric(&shim, "fitsched_shim_request_duration_seconds_count", &label),
                late: crate::cluster::sum_metric(&shim, "fitsched_shim_late_answers_total", &label),
            }
        })
        .filter(|c| c.calls > 0)
        .collect();
    let scorer = scrape(tb.stack.scorer_http)?;
    let scored = |basis: &str| {
        crate::cluster::sum_metric(&scorer, "fitsched_scorer_scored_nodes_total", &format!("basis=\"{basis}\""))
    };
    Ok(RestartFigures {
        pods,
        down,
        window,
        scheduled_at_kill,
        recovered,
        burst,
        placed,
        calls,
        fallbacks: crate::cluster::sum_metric(&shim, "fitsched_shim_fallbacks_total", ""),
        scored_on_fitness: scored("fitness"),
        scored_on_median: scored("stale") + scored("unknown_node") + scored("no_fitness"),
    })
}

/// What pushing broken model files under load did to the answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFigures {
    /// `/prioritize` calls made while the bad files were pushed, and how many were not
    /// 200 or came back all neutral (a fallback).
    pub calls: usize,
    pub failed: usize,
    pub neutral: usize,
    /// Refusals the scorer counted (`fitsched_scorer_model_reloads_total{outcome="refused"}`)
    /// and the reasons its log gave.
    pub refused: u64,
    pub reasons: Vec<String>,
    /// The model version before the pushes and after them.
    pub version: (String, String),
    /// Candidates scored on a fitness (not the median) after the refusals.
    pub scored_on_fitness_after: u64,
    /// Whether the good file pushed last was loaded again.
    pub good_reloaded: bool,
}

/// Scores under load from `clients` kube-scheduler-like callers (each call's next starts
/// when it is answered) while two broken model files replace the scorer's model: bytes
/// that are not ONNX, and the real model cut in half. Then puts the good file back.
pub fn bad_model(name: &str, venv: &crate::tools::Venv, clients: usize) -> anyhow::Result<ModelFigures> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let log_dir = paths::target_dir().join("fitsched-logs").join(name);
    std::fs::create_dir_all(&log_dir)?;
    let model = log_dir.join("fitness.onnx");
    let good = std::fs::read(paths::workspace_root().join("onnx/fitness.onnx"))?;
    std::fs::write(&model, &good)?;
    let nodes = 20;
    let config = StackConfig {
        window: "1s".into(),
        tick: "100ms".into(),
        simulated: nodes,
        real_agents: Vec::new(),
        scorer_args: vec!["--model-poll".into(), "200ms".into()],
        log_dir,
        ..StackConfig::default()
    }
    .with_model(venv, &model)?;
    let mut stack = Stack::start(config)?;
    stack.wait_for_nodes(&[], nodes as usize, Duration::from_secs(60))?;
    let info = |stack: &Stack| -> anyhow::Result<String> {
        crate::stack::block_on(async {
            let mut c = stack.scorer_client().await?;
            anyhow::Ok(c.model_info(fitsched_proto::ModelInfoRequest {}).await?.into_inner().version)
        })
    };
    let reloads = |outcome: &str| -> anyhow::Result<u64> {
        let text = scrape(stack.scorer_http)?;
        Ok(crate::cluster::sum_metric(&text, "fitsched_scorer_model_reloads_total", &format!("outcome=\"{outcome}\"")))
    };
    let before = info(&stack)?;
    let body = serde_json::json!({
        "Pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}},
        "NodeNames": (0..nodes as usize).map(crate::testbed::sim_node_name).collect::<Vec<_>>(),
    })
    .to_string();
    let url = format!("{}/prioritize", stack.shim_url());
    let stop = AtomicBool::new(false);
    let (calls, failed, neutral) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let pushed = std::thread::scope(|s| -> anyhow::Result<(u64, u64, bool)> {
        for _ in 0..clients {
            s.spawn(|| {
                let agent = crate::process::http_agent(Duration::from_secs(10));
                while !stop.load(Relaxed) {
                    calls.fetch_add(1, Relaxed);
                    let answer = agent.post(&url).send(body.as_str()).ok().and_then(|mut r| {
                        let ok = r.status() == 200;
                        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
                        ok.then_some(v)
                    });
                    match answer {
                        None => _ = failed.fetch_add(1, Relaxed),
                        Some(v) if all_neutral(&v) => _ = neutral.fetch_add(1, Relaxed),
                        Some(_) => {}
                    }
                }
            });
        }
        let run = || -> anyhow::Result<(u64, u64, bool)> {
            std::thread::sleep(Duration::from_secs(2));
            progress(format!("{name}: pushing a file that is not ONNX, then half the model, under load"));
            let broken: [&[u8]; 2] = [b"this is not an ONNX model", &good[..good.len() / 2]];
            for (i, bytes) in broken.iter().enumerate() {
                // Replaced as a ConfigMap update replaces it: a new file renamed over.
                let tmp = model.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &model)?;
                wait_until("the scorer to refuse it", Duration::from_secs(30), || {
                    reloads("refused").is_ok_and(|n| n > i as u64)
                })?;
            }
            let fitness_at_refusal = scored_on_fitness(&scrape(stack.scorer_http)?);
            std::thread::sleep(Duration::from_secs(2));
            let after = scored_on_fitness(&scrape(stack.scorer_http)?) - fitness_at_refusal;
            std::fs::write(&model, &good)?;
            let reloaded = wait_until("the good model to load again", Duration::from_secs(30), || {
                reloads("loaded").is_ok_and(|n| n >= 1)
            });
            Ok((reloads("refused")?, after, reloaded.is_ok()))
        };
        let result = run();
        stop.store(true, Relaxed);
        result
    })?;
    let reasons = stack
        .log("scorer")
        .lines()
        .filter(|l| l.contains("new model file refused"))
        .map(|l| l.split("error=").nth(1).unwrap_or(l).split(" keeping=").next().unwrap_or_default().to_owned())
        .collect();
    Ok(ModelFigures {
        calls: calls.into_inner(),
        failed: failed.into_inner(),
        neutral: neutral.into_inner(),
        refused: pushed.0,
        reasons,
        version: (before, info(&stack)?),
        scored_on_fitness_after: pushed.1,
        good_reloaded: pushed.2,
    })
}

fn scored_on_fitness(scorer_metrics: &str) -> u64 {
    crate::cluster::sum_metric(scorer_metrics, "fitsched_scorer_scored_nodes_total", "basis=\"fitness\"")
}

/// What a refused bind did, as kube-scheduler and the API server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct BindFigures {
    pub pods: usize,
    /// Binds the API server refused (`fitsched_shim_bind_errors_total{reason="forbidden"}`).
    pub refused: u64,
    /// kube-scheduler log lines reporting the extender's bind error, with the API server's words.
    pub reported_to_scheduler: usize,
    /// Pods bound in the end (by kube-scheduler's own binder, the extender being ignorable).
    pub placed: usize,
    /// Binds the scorer was told of (none of them happened).
    pub scorer_told: u64,
}

/// Runs `workload` through a testbed whose shim may not create Bindings (RBAC).
pub fn refused_bind(tb: &Testbed, workload: &Workload) -> anyhow::Result<BindFigures> {
    tb.cluster.create_workload(workload)?;
    let placed = tb.cluster.wait_scheduled(workload, Duration::from_secs(120))?.len();
    let shim = scrape(tb.stack.shim_metrics)?;
    let scorer = scrape(tb.stack.scorer_http)?;
    let reported_to_scheduler = tb
        .cluster
        .log("kube-scheduler")
        .lines()
        .filter(|l| l.contains("Skipping extender in bind as it returned error") && l.contains("403 Forbidden"))
        .count();
    Ok(BindFigures {
        pods: workload.replicas as usize,
        refused: crate::cluster::sum_metric(&shim, "fitsched_shim_bind_errors_total", "reason=\"forbidden\""),
        reported_to_scheduler,
        placed,
        scorer_told: crate::cluster::sum_metric(&scorer, "fitsched_scorer_binds_total", ""),
    })
}

/// A bind for a pod that was deleted and re-created under its name between scheduling
/// and binding, sent to the shim as kube-scheduler sends it (with the old pod's UID).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplacedPodFigures {
    /// The `Error` kube-scheduler got back.
    pub error: String,
    /// Whether the re-created pod got bound by it.
    pub bound: bool,
    /// Binds the scorer was told of.
    pub scorer_told: u64,
}

pub fn replaced_pod_bind(tb: &Testbed, namespace: &str) -> anyhow::Result<ReplacedPodFigures> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};
    tb.cluster.create_namespace(namespace)?;
    let pods: Api<Pod> = Api::namespaced(tb.cluster.client(), namespace);
    let ghost: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ghost"},
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "nginx:1.27"}]},
    }))?;
    let old = tb.cluster.block_on(pods.create(&PostParams::default(), &ghost))?;
    tb.cluster.block_on(pods.delete("ghost", &DeleteParams::default().grace_period(0)))?;
    tb.cluster.block_on(pods.create(&PostParams::default(), &ghost))?;
    let told_before = crate::cluster::sum_metric(&scrape(tb.stack.scorer_http)?, "fitsched_scorer_binds_total", "");
    let args = serde_json::json!({"PodName": "ghost", "PodNamespace": namespace,
        "PodUID": old.metadata.uid.unwrap_or_default(), "Node": tb.nodes[0].name});
    let mut r = crate::process::http_agent(Duration::from_secs(10))
        .post(&format!("{}/bind", tb.stack.shim_url()))
        .send_json(&args)?;
    anyhow::ensure!(r.status() == 200, "/bind answered {}", r.status());
    let answer: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
    let now = tb.cluster.block_on(pods.get("ghost"))?;
    let told = crate::cluster::sum_metric(&scrape(tb.stack.scorer_http)?, "fitsched_scorer_binds_total", "");
    Ok(ReplacedPodFigures {
        error: answer["Error"].as_str().unwrap_or_default().to_owned(),
        bound: now.spec.and_then(|s| s.node_name).is_some(),
        scorer_told: told - told_before,
    })
}

/// Where one burst's replicas went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// The most replicas on one node.
    pub most: u32,
    /// Nodes left without a replica.
    pub empty: u32,
}

/// Each burst's outcome by (profile, how, replicas): profile `spread` and `balanced`
/// through fitsched, `default` for kube-scheduler alone (the chart's configuration
/// without the extender); each burst of `sizes` made by a Deployment scale-up
/// (`scale-up`) and by parallel creates in four streams (`parallel`).
pub fn bursts(tb: &mut Testbed, sizes: &[u32]) -> anyhow::Result<BTreeMap<(String, &'static str, u32), Burst>> {
    let kubeconfig = tb.installed.scheduler_kubeconfig.clone();
    let mut alone = tb.installed.scheduler_config.clone();
    alone.as_object_mut().map(|o| o.remove("extenders"));
    let runs = [
        (
            tb.installed.scheduler_config.clone(),
            vec![("spread", tb.profile("spread")), ("balanced", tb.profile("balanced"))],
        ),
        (alone, vec![("default", tb.installed.profiles[0].clone())]),
    ];
    let nodes = tb.nodes.len() as u32;
    let mut out = BTreeMap::new();
    for (config, profiles) in runs {
        tb.cluster.start_scheduler(&config, &kubeconfig)?;
        for (profile, scheduler_name) in &profiles {
            for &replicas in sizes {
                for how in ["scale-up", "parallel"] {
                    let w = Workload::new("bursts", &format!("{profile}-{how}-{replicas}"), replicas, scheduler_name);
                    progress(format!("burst: {replicas} replicas of {profile} by {how}"));
                    match how {
                        "scale-up" => tb.cluster.scale_up(&w)?,
                        _ => tb.cluster.create_in_parallel(&w, 4)?,
                    }
                    let placed = tb.cluster.wait_scheduled(&w, Duration::from_secs(300))?;
                    let per_node = tb.spread(&placed).per_node;
                    let burst = Burst {
                        most: per_node.values().copied().max().unwrap_or(0) as u32,
                        empty: nodes.saturating_sub(per_node.len() as u32),
                    };
                    out.insert(((*profile).to_owned(), how, replicas), burst);
                    tb.cluster.delete_workload(&w)?;
                }
            }
        }
        tb.cluster.stop_scheduler()?;
    }
    Ok(out)
}

/// What [`bursts`] found wrong, one line each, on `nodes` nodes, all feasible:
/// - `spread`: no replica shares a node while a node is empty: one per node up to
///   `nodes` replicas; above, no node left empty (a node empty at the end was empty
///   throughout the burst);
/// - `balanced`: never more on a node than kube-scheduler alone, up to `nodes` replicas;
///   above, no node left empty and at most one more than an even share. kube-scheduler
///   scores only a window of about half of 500 nodes per pod (its adaptive
///   `percentageOfNodesToScore`), so near the end of such a burst the window may hold no
///   node below the even share and it, alone or with the extender, stacks one more at
///   random: comparing the two there compares two coin tosses.
pub fn burst_failures(bursts: &BTreeMap<(String, &'static str, u32), Burst>, nodes: u32) -> Vec<String> {
    let mut failures = Vec::new();
    for ((profile, how, replicas), b) in bursts {
        let even = replicas.div_ceil(nodes);
        let ok = match profile.as_str() {
            "spread" if *replicas <= nodes => b.most == 1,
            "spread" => b.empty == 0,
            "balanced" if *replicas <= nodes => b.most <= bursts[&("default".to_owned(), *how, *replicas)].most,
            "balanced" => b.empty == 0 && b.most <= even + 1,
            _ => true,
        };
        if !ok {
            failures.push(format!("{profile}, {how} of {replicas}: {b:?}"));
        }
    }
    failures
}
