//! A real node beside the API-only ones: kubelet v1.36.2 ([`kube_bins`]), Debian's
//! containerd, runc and CNI plugins, and kube-proxy, each started by the harness.
//!
//! The node lives in a network namespace of its own, [`NETNS`], linked to the host by a
//! veth pair: the node's address [`NODE_IP`] in the namespace (kubelet refuses a loopback
//! node address, and this kernel has no dummy interfaces) and [`HOST_IP`] on the host,
//! where the API server listens ([`ClusterOptions::serve_kubelets_on`]). The namespace
//! routes only that link and the Service range: nothing in it reaches an outside
//! address. The test's own clients stay on the host and reach the API server directly.
//!
//! What this does to the host, and how it is undone (`../shared/kube/real-node/RECIPE.md`
//! has the errors behind each):
//! - one real node per machine at a time: an exclusive lock on [`LOCK`], held for the
//!   node's life;
//! - a run killed halfway is recovered by the next one: [`RealNode::start`] first undoes
//!   whatever a previous node left ([`recover`]), from the pid and sysctl records it keeps
//!   under [`STATE`];
//! - kubelet rewrites `vm.overcommit_memory`, `kernel.panic` and `kernel.panic_on_oops`
//!   (and three more): their values are recorded before it starts and restored after;
//! - its fixed paths (`/var/lib/kubelet/device-plugins`, `/var/log/containers`) and the
//!   `kubepods` cgroups it makes are removed; so are every mount under its folders, the
//!   namespace and the veth pair.
//!
//! containerd runs with its own root, state and socket, so a containerd of the host's is
//! left alone, and with `restrict_oom_score_adj` (root here lacks `CAP_SYS_RESOURCE`).
//! kubelet runs with `failCgroupV1: false` and the `cgroupfs` driver: this host's cgroups
//! are hybrid and PID 1 is not systemd.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::cluster::{Cluster, ClusterOptions};
use crate::images::{self, Image};
use crate::process::{Processes, tail};
use crate::{kube_bins, progress, tools};

pub mod install;

/// The node's name in the cluster.
pub const NODE_NAME: &str = "real-node-1";
/// The node's network namespace.
pub const NETNS: &str = "fitsched-node";
/// The node's address, in [`NETNS`].
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
/// The host's end of the link: the API server listens here.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
/// The pods' addresses (the bridge CNI's range).
pub const POD_CIDR: &str = "10.88.0.0/16";
/// The Services' range (the API server's `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
const HOST_LINK: &str = "fsn-host";
const NODE_LINK: &str = "fsn-node";
/// Held while a real node lives: one per machine.
pub const LOCK: &str = "/run/fitsched-real-node.lock";
/// Everything the node writes: containerd's root, kubelet's, the records [`recover`] reads.
pub const STATE: &str = "/var/lib/fitsched-node";
/// The sysctls kubelet sets when it starts (`protectKernelDefaults: false`).
pub const KUBELET_SYSCTLS: [&str; 6] = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];
/// The pause image containerd starts each pod's sandbox from (its `sandbox_image`).
const PAUSE_IMAGE: (&str, &str) = ("registry.k8s.io/pause", "3.10");

/// Debian's packages the node runs on: `(command, package)`.
const PACKAGES: [(&str, &str); 5] = [
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("iptables", "iptables"),
    ("gcc", "gcc"),
    ("nsenter", "util-linux"),
];
const CNI_BIN: &str = "/usr/lib/cni";

fn state() -> PathBuf {
    PathBuf::from(STATE)
}

fn run_dir() -> PathBuf {
    state().join("run")
}

fn socket() -> PathBuf {
    run_dir().join("containerd.sock")
}

/// The exclusive lock on [`LOCK`], released when dropped (the file closed).
struct Lock(#[allow(dead_code)] std::fs::File);

fn lock() -> anyhow::Result<Lock> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK)?;
    match file.try_lock() {
        Ok(()) => Ok(Lock(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            progress(format!("another real node runs on this machine; waiting for {LOCK}"));
            file.lock()?;
            Ok(Lock(file))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(LOCK),
    }
}

/// A real node, joined to a [`Cluster`]. Dropping it tears it down and restores the host.
pub struct RealNode {
    procs: Processes,
    _lock: Lock,
}

/// The host side of a real node, made before the control plane starts (the API server
/// listens on [`HOST_IP`]): the lock held, a previous run's leftovers undone, the
/// network namespace and link up.
pub struct Prepared {
    /// Taken by [`RealNode::start`]; still here, the node never started.
    lock: Option<Lock>,
}

impl Prepared {
    /// The control plane's options for this node.
    pub fn cluster_options(&self) -> ClusterOptions {
        ClusterOptions { serve_kubelets_on: Some(HOST_IP), ..ClusterOptions::default() }
    }
}

/// Takes the lock, undoes what a previous node left and brings up the network.
pub fn prepare() -> anyhow::Result<Prepared> {
    tools::ensure_debian_tools(&PACKAGES)?;
    tools::ensure_debian_file(&Path::new(CNI_BIN).join("bridge"), "containernetworking-plugins")?;
    let lock = lock()?;
    if let Some(why) = foreign_kubelet() {
        anyhow::bail!("this host runs a kubelet of its own ({why}): a real node would share its paths and cgroups");
    }
    recover()?;
    std::fs::create_dir_all(run_dir())?;
    network_up()?;
    Ok(Prepared { lock: Some(lock) })
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    tools::run(Command::new("ip").args(args)).map(drop)
}

fn network_up() -> anyhow::Result<()> {
    let host = format!("{HOST_IP}/24");
    let node = format!("{NODE_IP}/24");
    ip(&["netns", "add", NETNS])?;
    ip(&["link", "add", HOST_LINK, "type", "veth", "peer", "name", NODE_LINK, "netns", NETNS])?;
    ip(&["addr", "add", &host, "dev", HOST_LINK])?;
    ip(&["link", "set", HOST_LINK, "up"])?;
    ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
    ip(&["-n", NETNS, "addr", "add", &node, "dev", NODE_LINK])?;
    ip(&["-n", NETNS, "link", "set", NODE_LINK, "up"])?;
    // No default route: only the link and the Service range, which kube-proxy rewrites.
    ip(&["-n", NETNS, "route", "add", SERVICE_CIDR, "dev", NODE_LINK])?;
    Ok(())
}

/// `cmd` run inside the node's network namespace (the host's mount namespace kept).
fn in_netns(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{NETNS}")).arg(program);
    cmd
}

impl RealNode {
    /// Starts containerd (with `images` imported), kubelet and kube-proxy in the node's
    /// namespace and waits until the node is Ready.
    pub fn start(mut prepared: Prepared, cluster: &Cluster, images: &[PathBuf]) -> anyhow::Result<RealNode> {
        let started = Instant::now();
        let kube = kube_bins::locate_node(None)?;
        let mut procs = Processes::new(cluster.dir().join("logs/real-node"))?;
        // Configuration under the node's state folder: every process of the node names
        // it on its command line, which is how a later run recognises its pids.
        let dir = state().join("config");
        std::fs::create_dir_all(&dir)?;

        write_containerd_config(&dir)?;
        procs.spawn("containerd", {
            let mut c = in_netns("containerd");
            c.arg("--config").arg(dir.join("containerd.toml"));
            c
        })?;
        record_pid(&procs, "containerd")?;
        wait_for(Duration::from_secs(20), "containerd's socket", || {
            procs.check_alive()?;
            Ok(ctr(5).args(["version"]).output().is_ok_and(|o| o.status.success()))
        })?;
        let pause = pause_image(&dir)?;
        for archive in std::iter::once(&pause).chain(images) {
            tools::run(ctr(300).args(["images", "import", "--no-unpack"]).arg(archive))
                .with_context(|| format!("importing {}", archive.display()))?;
        }

        let kubeconfig = cluster.kubeconfig("real-node", cluster.admin_token())?;
        let config = write_kubelet_config(&dir, cluster)?;
        save_sysctls()?;
        procs.spawn("kubelet", {
            let mut c = in_netns(kube.join("kubelet"));
            c.arg(format!("--config={}", config.display()))
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .arg(format!("--hostname-override={NODE_NAME}"))
                .arg(format!("--node-ip={NODE_IP}"))
                .arg(format!("--root-dir={}", state().join("kubelet").display()))
                .arg(format!("--cert-dir={}", state().join("kubelet/pki").display()))
                .arg("-v=2");
            c
        })?;
        record_pid(&procs, "kubelet")?;
        let proxy_config = dir.join("kube-proxy.yaml");
        std::fs::write(&proxy_config, kube_proxy_config(&kubeconfig))?;
        procs.spawn("kube-proxy", {
            let mut c = in_netns(kube.join("kube-proxy"));
            c.arg(format!("--config={}", proxy_config.display())).arg("-v=2");
            c
        })?;
        record_pid(&procs, "kube-proxy")?;

        let lock = prepared.lock.take().context("this node was started already")?;
        let mut node = RealNode { procs, _lock: lock };
        let nodes: Api<Node> = Api::all(cluster.client());
        wait_for(Duration::from_secs(90), "the real node to be Ready", || {
            node.procs.check_alive()?;
            let ready = cluster
                .block_on(nodes.get_opt(NODE_NAME))?
                .and_then(|n| n.status?.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Ok(ready)
        })
        .with_context(|| format!("kubelet's log ends:\n{}", tail(&node.procs.log_dir().join("kubelet.log"), 30)))?;
        progress(format!("real node {NODE_NAME} Ready in {:.1?}", started.elapsed()));
        Ok(node)
    }

    /// Fails when containerd, kubelet or kube-proxy has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.procs.check_alive()
    }

    /// Where the node's processes log.
    pub fn log_dir(&self) -> &Path {
        self.procs.log_dir()
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let started = Instant::now();
        if let Err(e) = recover() {
            eprintln!("tearing down the real node: {e:#}");
        }
        self.procs.stop_all();
        progress(format!("real node torn down in {:.1?}", started.elapsed()));
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = recover();
        }
    }
}

/// `ctr` on the node's containerd, killed after `seconds`: a containerd that hangs must
/// not hang the harness.
fn ctr(seconds: u32) -> Command {
    let mut c = Command::new("timeout");
    c.arg(seconds.to_string()).args(["ctr", "--address"]).arg(socket()).args(["--namespace", "k8s.io"]);
    c
}

fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Records a started process's pid, for [`recover`] after a run killed halfway.
fn record_pid(procs: &Processes, name: &str) -> anyhow::Result<()> {
    let pid = procs.pid(name).with_context(|| format!("{name} has no pid"))?;
    std::fs::write(run_dir().join(format!("{name}.pid")), pid.to_string())?;
    Ok(())
}

fn save_sysctls() -> anyhow::Result<()> {
    let path = state().join("sysctl.orig");
    if path.exists() {
        return Ok(()); // the first record is the host's own
    }
    let mut lines = String::new();
    for key in KUBELET_SYSCTLS {
        let value = tools::run(Command::new("sysctl").args(["-n", key]))?;
        lines.push_str(&format!("{key}={}\n", value.trim()));
    }
    std::fs::write(path, lines)?;
    Ok(())
}

/// Undoes whatever a real node left on this host, running or not: its processes, the
/// pods' containers, mounts and cgroups, its network, kubelet's sysctls and fixed paths.
/// Idempotent; on a clean host it changes nothing. Every step is tried; the first error
/// is returned, and the state folder (with the sysctl record) is kept unless all went well.
pub fn recover() -> anyhow::Result<()> {
    let ran = Path::new(STATE).exists();
    let mut errors: Vec<anyhow::Error> = Vec::new();
    let run = run_dir();
    // kubelet first, so it starts no container while they are stopped.
    for name in ["kube-proxy", "kubelet"] {
        stop_recorded(&run.join(format!("{name}.pid")));
    }
    if socket().exists() {
        // The pods' containers, through containerd while it still answers.
        if let Ok(out) = ctr(20).args(["tasks", "ls", "-q"]).output() {
            for task in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = ctr(20).args(["tasks", "kill", "-s", "KILL", task]).output();
            }
            std::thread::sleep(Duration::from_millis(500));
            for task in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = ctr(20).args(["tasks", "rm", "-f", task]).output();
            }
        }
    }
    stop_recorded(&run.join("containerd.pid"));
    kill_shims();
    // Whatever still runs in the pods' cgroups (containerd killed with the test's process
    // group, shims killed above: their containers live on, reparented).
    if let Err(e) = kill_pod_processes() {
        errors.push(e);
    }
    // Deepest first, lazily: a pod's volumes, container roots, the sandboxes' network
    // namespaces (containerd keeps them under its state folder).
    let ours = || {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut ours: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| *m == STATE || m.starts_with(&format!("{STATE}/")))
            .map(str::to_owned)
            .collect();
        ours.sort_unstable_by_key(|m| std::cmp::Reverse(m.len()));
        ours
    };
    for m in ours() {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
    let left = ours();
    if !left.is_empty() {
        errors.push(anyhow::anyhow!("still mounted, so {STATE} is kept: {}", left.join(", ")));
    }
    if let Err(e) = remove_kubepods_cgroups() {
        errors.push(e);
    }
    if Path::new(&format!("/run/netns/{NETNS}")).exists() {
        // The veth pair and everything kube-proxy and the CNI set up in it go with it.
        if let Err(e) = ip(&["netns", "del", NETNS]) {
            errors.push(e);
        }
    }
    let _ = Command::new("ip").args(["link", "del", HOST_LINK]).output();
    let orig = state().join("sysctl.orig");
    if let Ok(text) = std::fs::read_to_string(&orig) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Err(e) = tools::run(Command::new("sysctl").args(["-q", "-w", line])) {
                errors.push(e);
            }
        }
    }
    if ran {
        // kubelet's paths it does not take from its configuration ([`prepare`] refuses a
        // host with a kubelet of its own, so what is there is ours).
        let _ = std::fs::remove_file("/var/lib/kubelet/device-plugins/kubelet.sock");
        for dir in ["/var/lib/kubelet/device-plugins", "/var/lib/kubelet"] {
            let _ = std::fs::remove_dir(dir);
        }
    }
    for link in std::fs::read_dir("/var/log/containers").into_iter().flatten().flatten() {
        if std::fs::read_link(link.path()).is_ok_and(|t| t.starts_with(STATE)) {
            let _ = std::fs::remove_file(link.path());
        }
    }
    let _ = std::fs::remove_dir("/var/log/containers");
    if let Some(first) = errors.into_iter().next() {
        return Err(first.context("recovering the host from a real node"));
    }
    if ran {
        std::fs::remove_dir_all(STATE).with_context(|| format!("removing {STATE}"))?;
    }
    Ok(())
}

/// Whether this host has a kubelet that is not one of ours: its fixed paths or a
/// `kubepods` cgroup without our state folder. A real node would share them.
fn foreign_kubelet() -> Option<String> {
    if Path::new(STATE).exists() {
        return None;
    }
    if Path::new("/var/lib/kubelet").exists() {
        return Some("/var/lib/kubelet exists".into());
    }
    kubepods_roots().into_iter().next().map(|p| format!("{} exists", p.display()))
}

/// The `kubepods` cgroup of every hierarchy (v1 controllers, unified, or a pure v2 root).
fn kubepods_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join("kubepods"))
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup/kubepods"));
    roots.retain(|r| r.is_dir());
    roots
}

/// Every cgroup under `root`, children before parents.
fn cgroups_under(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// SIGKILL to every process in the pods' cgroups, until none is left (5 s at most).
fn kill_pod_processes() -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<String> = kubepods_roots()
            .iter()
            .flat_map(|r| cgroups_under(r))
            .filter_map(|c| std::fs::read_to_string(c.join("cgroup.procs")).ok())
            .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "processes in the pods' cgroups survive SIGKILL: {}", pids.join(" "));
        let _ = Command::new("kill").arg("-KILL").args(&pids).output();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM to a recorded pid, SIGKILL after 10 s; the record removed.
fn stop_recorded(pid_file: &Path) {
    let Ok(pid) = std::fs::read_to_string(pid_file) else { return };
    let pid = pid.trim();
    let alive = || Path::new(&format!("/proc/{pid}")).exists() && is_ours(pid);
    if alive() {
        let _ = Command::new("kill").args(["-TERM", pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

/// Whether a recorded pid is still one of the node's processes (not a reused pid).
fn is_ours(pid: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(STATE.len()).any(|w| w == STATE.as_bytes()))
}

/// containerd's shims of this node (they name its state folder's socket).
fn kill_shims() {
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&cmdline);
        if text.starts_with("/usr/bin/containerd-shim") && text.contains(STATE) {
            let _ = Command::new("kill").arg("-KILL").arg(entry.file_name()).status();
        }
    }
}

/// Removes the `kubepods` cgroups kubelet made, in every hierarchy.
fn remove_kubepods_cgroups() -> anyhow::Result<()> {
    for root in kubepods_roots() {
        for cgroup in cgroups_under(&root) {
            let _ = std::fs::remove_dir(&cgroup);
        }
        ensure!(!root.exists(), "{} could not be removed", root.display());
    }
    Ok(())
}

fn write_containerd_config(dir: &Path) -> anyhow::Result<()> {
    let cni = dir.join("cni");
    std::fs::create_dir_all(&cni)?;
    std::fs::write(
        cni.join("10-fitsched-bridge.conflist"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "fitsched-bridge",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
                 "ipam": {"type": "host-local", "dataDir": state().join("cni").display().to_string(),
                          "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        }))?,
    )?;
    let (root, run) = (state().join("containerd"), run_dir().join("containerd"));
    let (pause_name, pause_tag) = PAUSE_IMAGE;
    std::fs::write(
        dir.join("containerd.toml"),
        format!(
            r#"version = 2
root = "{root}"
state = "{run}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_name}:{pause_tag}"
  # The sandboxes' network namespaces under the state folder, not /run/netns, where a
  # containerd of the host's keeps its own.
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni}"
"#,
            root = root.display(),
            run = run.display(),
            socket = socket().display(),
            opt = state().join("opt").display(),
            cni = cni.display(),
        ),
    )?;
    Ok(())
}

fn write_kubelet_config(dir: &Path, cluster: &Cluster) -> anyhow::Result<PathBuf> {
    let path = dir.join("kubelet.yaml");
    let config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        // The host's cgroups are hybrid (v1 controllers) and PID 1 is not systemd.
        "failCgroupV1": false,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": true,
        "failSwapOn": false,
        "containerRuntimeEndpoint": format!("unix://{}", socket().display()),
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": cluster.ca().display().to_string()},
        },
        "authorization": {"mode": "Webhook"},
        "address": NODE_IP.to_string(),
        "port": 10250,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "readOnlyPort": 0,
        "resolvConf": "/etc/resolv.conf",
        // No evictions in tests, and never a GC of the imported images (nothing can pull them again).
        "evictionHard": {},
        "evictionSoft": {},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": false,
        "registerNode": true,
        "podLogsDir": state().join("pod-logs").display().to_string(),
        "volumePluginDir": state().join("volume-plugins").display().to_string(),
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

fn kube_proxy_config(kubeconfig: &Path) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig.display().to_string()},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP.to_string(),
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        // Leave the host's conntrack table sizes alone.
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }))
    .unwrap_or_default()
}

/// The sandbox image: [`pause.c`](pause.c) built statically, in an image of its own.
fn pause_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let source = dir.join("pause.c");
    std::fs::write(&source, include_str!("pause.c"))?;
    let binary = dir.join("pause");
    tools::run(Command::new("gcc").args(["-static", "-Os", "-s", "-o"]).arg(&binary).arg(&source))
        .context("building the pause program")?;
    let (name, tag) = PAUSE_IMAGE;
    let mut image = Image::new(name, tag, "pause", "the pod sandbox's process, built by the test harness");
    image.file("/pause", &binary).entrypoint(&["/pause"]);
    Ok(images::write_archive(&image, dir)?.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_runs_apart_from_the_host() {
        // The node's addresses are on one /24 and apart from pods and Services.
        assert_eq!(NODE_IP.octets()[..3], HOST_IP.octets()[..3]);
        assert!(!NODE_IP.is_loopback(), "kubelet refuses a loopback node address");
        assert!(HOST_LINK.len() <= 15 && NODE_LINK.len() <= 15, "interface names are at most 15 bytes");
        let config = kube_proxy_config(Path::new("/k"));
        assert!(config.contains(POD_CIDR) && config.contains(NODE_NAME));
    }

    #[test]
    fn a_dead_pid_record_is_removed_and_not_killed() {
        let dir = std::env::temp_dir().join(format!("fitsched-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let record = dir.join("x.pid");
        // A pid that is surely not one of the node's: this test process, whose command
        // line does not name the node's state folder.
        std::fs::write(&record, std::process::id().to_string()).unwrap();
        stop_recorded(&record);
        assert!(!record.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
