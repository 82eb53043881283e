//! A real Kubernetes control plane without kubelets: etcd (Debian's `etcd-server`),
//! kube-apiserver, kube-controller-manager (the Deployment, ReplicaSet, garbage
//! collector and namespace controllers) and, on demand, kube-scheduler, all v1.36.2
//! ([`kube_bins`](crate::kube_bins)). Nodes are API objects: Ready, with allocatable
//! resources and zone labels; the scheduler places pods on them and nothing runs them.
//!
//! Everything listens on free loopback ports, lives in `<target>/fitsched-cluster/<name>`
//! (logs in `logs/`, kept after the test for a look at a failure; etcd's data on tmpfs,
//! removed) and is stopped when the [`Cluster`] is dropped.
//!
//! The API is synchronous, like the rest of the harness: each call runs on the
//! cluster's own single-threaded tokio runtime. [`Cluster::block_on`] runs any future
//! there, with [`Cluster::client`] for what the helpers do not cover.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use fitsched_proto::ZONE_LABEL;

use crate::process::Processes;
use crate::proxy::Proxy;
use crate::stack::{TlsFiles, free_addr};
use crate::{kube_bins, paths, progress, tools};

/// A node to create: an API object only.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub zone: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl NodeSpec {
    /// The size the measurements used: 16 CPUs, 64 Gi, 110 pods.
    pub fn standard(name: impl Into<String>, zone: impl Into<String>) -> Self {
        Self { name: name.into(), zone: zone.into(), cpu: "16".into(), memory: "64Gi".into(), pods: 110 }
    }

    fn to_json(&self) -> Value {
        let resources = json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string()});
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": {
                ZONE_LABEL: self.zone,
                "kubernetes.io/hostname": self.name,
                "kubernetes.io/os": "linux",
            }},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "API-only test node"}],
            },
        })
    }
}

/// A Deployment of small pods for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    pub scheduler_name: String,
    /// The `fitsched.io/strategy` annotation, if any.
    pub strategy: Option<String>,
    pub cpu: String,
    pub memory: String,
}

impl Workload {
    /// `replicas` pods of 100m CPU and 128Mi, placed by `scheduler_name`.
    pub fn new(namespace: &str, name: &str, replicas: u32, scheduler_name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            replicas,
            scheduler_name: scheduler_name.into(),
            strategy: None,
            cpu: "100m".into(),
            memory: "128Mi".into(),
        }
    }

    pub fn with_strategy(mut self, strategy: &str) -> Self {
        self.strategy = Some(strategy.into());
        self
    }

    /// One of the workload's pods as a bare pod named `name`: the Deployment's template.
    fn pod(&self, name: &str) -> anyhow::Result<Pod> {
        let template = self.deployment()?.spec.context("deployment spec")?.template;
        Ok(Pod {
            metadata: kube::core::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.namespace.clone()),
                ..template.metadata.unwrap_or_default()
            },
            spec: template.spec,
            status: None,
        })
    }

    fn deployment(&self) -> anyhow::Result<Deployment> {
        let annotations = match &self.strategy {
            Some(s) => json!({ fitsched_proto::STRATEGY_ANNOTATION: s }),
            None => json!({}),
        };
        Ok(serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": self.name}},
                "template": {
                    "metadata": {"labels": {"app": self.name}, "annotations": annotations},
                    "spec": {
                        "schedulerName": self.scheduler_name,
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": self.cpu, "memory": self.memory}},
                        }],
                    },
                },
            },
        }))?)
    }
}

/// Where one pod went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub pod: String,
    pub node: String,
}

/// A running control plane. Dropping it stops every process.
pub struct Cluster {
    procs: Processes,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    dir: PathBuf,
    etcd_data: PathBuf,
    bins: PathBuf,
    tls: TlsFiles,
    api_url: String,
    admin_token: String,
    /// A client of the running kube-scheduler's own port (admin token), built once per
    /// start: the benchmark reads its metrics every 100 ms.
    scheduler: Option<kube::Client>,
    /// The running kube-scheduler's leader-election Lease (namespace, name).
    scheduler_lease: Option<(String, String)>,
    /// Between the API server and etcd, when asked for: a slow control plane on demand.
    etcd_proxy: Option<Proxy>,
}

/// How a control plane is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// The API server reaches etcd through a [`Proxy`], so [`Cluster::etcd_latency`] can
    /// slow every etcd call (and so every write the API server makes) at will.
    pub etcd_proxy: bool,
    /// Serve kubelets too ([`crate::node`]): the API server listens and advertises on this
    /// address (the host's end of a real node's link) rather than loopback, with
    /// ServiceAccount tokens mounted into pods and a client certificate for kubelets'
    /// logs and exec; the controller manager runs every controller a node needs
    /// (DaemonSets, ServiceAccounts, the root CA, EndpointSlices).
    pub serve_kubelets_on: Option<std::net::Ipv4Addr>,
}

impl Cluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API
    /// server is ready. `kube_bin`: see [`kube_bins::locate`].
    pub fn start(name: &str, kube_bin: Option<&Path>) -> anyhow::Result<Cluster> {
        Self::start_with(name, kube_bin, ClusterOptions::default())
    }

    /// [`Cluster::start`] with `options`.
    pub fn start_with(name: &str, kube_bin: Option<&Path>, options: ClusterOptions) -> anyhow::Result<Cluster> {
        let bins = kube_bins::locate(kube_bin)?;
        ensure_etcd()?;
        let dir = paths::target_dir().join("fitsched-cluster").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut procs = Processes::new(dir.join("logs"))?;
        progress(format!("control plane {name}: logs in {}", procs.log_dir().display()));

        // etcd fsyncs every write: on tmpfs that costs nothing, and the data is thrown away.
        let shm = Path::new("/dev/shm");
        // Named after the cluster, so a run killed before its drop leaves nothing behind
        // for long: the next run of the same name clears it.
        let etcd_data =
            if shm.is_dir() { shm.to_path_buf() } else { dir.clone() }.join(format!("fitsched-etcd-{name}"));
        let _ = std::fs::remove_dir_all(&etcd_data);
        let (etcd_client, etcd_peer) = (free_addr()?, free_addr()?);
        let mut etcd = Command::new("etcd");
        etcd.args(["--name", "fitsched-test", "--data-dir"])
            .arg(&etcd_data)
            .arg(format!("--listen-client-urls=http://{etcd_client}"))
            .arg(format!("--advertise-client-urls=http://{etcd_client}"))
            .arg(format!("--listen-peer-urls=http://{etcd_peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{etcd_peer}"))
            .arg(format!("--initial-cluster=fitsched-test=http://{etcd_peer}"));
        procs.spawn("etcd", etcd)?;
        procs.wait_http_ok(&format!("http://{etcd_client}/health"), Duration::from_secs(30))?;
        let etcd_proxy = if options.etcd_proxy { Some(Proxy::start(etcd_client)?) } else { None };
        let etcd_url = format!("http://{}", etcd_proxy.as_ref().map_or(etcd_client, |p| p.addr));

        let pki = dir.join("pki");
        let api_host = options.serve_kubelets_on.map_or("127.0.0.1".to_owned(), |ip| ip.to_string());
        // Pods reach the API server through the `kubernetes` Service's first address.
        let tls = TlsFiles::generate_for(&pki, &[&api_host, "10.96.0.1", "kubernetes.default.svc"])?;
        let sa_key = rcgen::KeyPair::generate()?;
        std::fs::write(pki.join("sa.key"), sa_key.serialize_pem())?;
        std::fs::write(pki.join("sa.pub"), sa_key.public_key_pem())?;
        let admin_token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        std::fs::write(pki.join("tokens.csv"), format!("{admin_token},admin,admin,system:masters\n"))?;

        let api = free_addr()?;
        let mut apiserver = Command::new(bins.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--secure-port={}", api.port()))
            .arg(format!("--bind-address={api_host}"))
            .arg(format!("--cert-dir={}", dir.join("apiserver-certs").display()))
            .arg(format!("--tls-cert-file={}", tls.cert.display()))
            .arg(format!("--tls-private-key-file={}", tls.key.display()))
            .arg(format!("--token-auth-file={}", pki.join("tokens.csv").display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg(format!("--service-account-key-file={}", pki.join("sa.pub").display()))
            .arg(format!("--service-account-signing-key-file={}", pki.join("sa.key").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--delete-collection-workers=4");
        if options.serve_kubelets_on.is_some() {
            let (client_cert, client_key) = tls.client();
            apiserver
                .arg(format!("--advertise-address={api_host}"))
                // The node's name does not resolve here (no DNS): reach kubelets by address.
                .arg("--kubelet-preferred-address-types=InternalIP")
                .arg(format!("--kubelet-client-certificate={}", client_cert.display()))
                .arg(format!("--kubelet-client-key={}", client_key.display()))
                // Publishes the CA (`extension-apiserver-authentication`) that kube-scheduler in
                // a pod reads to authenticate calls to its own port.
                .arg(format!("--client-ca-file={}", tls.ca.display()))
                // API-only nodes never report their conditions: no taints from them.
                .arg("--disable-admission-plugins=TaintNodesByCondition");
        } else {
            // No kubelets: nothing mounts tokens into pods, and nodes carry no condition taints.
            apiserver.arg("--disable-admission-plugins=ServiceAccount,TaintNodesByCondition");
        }
        procs.spawn("kube-apiserver", apiserver)?;

        let api_url = format!("https://{api_host}:{}", api.port());
        let admin = dir.join("admin.kubeconfig");
        write_kubeconfig(&admin, &api_url, &tls.ca, &admin_token)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = rt.block_on(client_from(&admin))?;
        wait_ready(&rt, &client, "/readyz", &mut procs, Duration::from_secs(90))?;

        let mut kcm = Command::new(bins.join("kube-controller-manager"));
        kcm.arg(format!("--kubeconfig={}", admin.display()))
            .arg(format!("--authentication-kubeconfig={}", admin.display()))
            .arg(format!("--authorization-kubeconfig={}", admin.display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_addr()?.port()))
            .arg(format!("--cert-dir={}", dir.join("kcm-certs").display()))
            .arg("--leader-elect=false")
            .arg(if options.serve_kubelets_on.is_some() {
                // Everything but what needs a cloud or node IPAM (the bridge CNI assigns pod
                // addresses) and the node lifecycle, which would taint the API-only nodes.
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-ttl,-bootstrapsigner,-tokencleaner"
            } else {
                "--controllers=replicaset,deployment,garbagecollector,namespace"
            })
            .arg(format!("--root-ca-file={}", tls.ca.display()))
            .arg(format!("--flex-volume-plugin-dir={}", dir.join("flexvolume").display()))
            .arg(format!("--service-account-private-key-file={}", pki.join("sa.key").display()))
            // Its default of 20 requests/s would take minutes to create a benchmark's pods.
            .args(["--kube-api-qps=1000", "--kube-api-burst=2000", "--concurrent-replicaset-syncs=10"]);
        procs.spawn("kube-controller-manager", kcm)?;

        Ok(Cluster {
            procs,
            rt,
            client,
            dir,
            etcd_data,
            bins,
            tls,
            api_url,
            admin_token,
            scheduler: None,
            scheduler_lease: None,
            etcd_proxy,
        })
    }

    /// Delays every chunk between the API server and etcd by a random time in
    /// `low..=high`, each way (zero and zero: none); needs [`ClusterOptions::etcd_proxy`].
    pub fn etcd_latency(&self, low: Duration, high: Duration) -> anyhow::Result<()> {
        let proxy = self.etcd_proxy.as_ref().context("this control plane reaches etcd directly (no etcd_proxy)")?;
        proxy.latency(low, high);
        Ok(())
    }

    /// The API server's URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The CA that signed the API server's certificate (and the client certificate it
    /// shows kubelets).
    pub fn ca(&self) -> &Path {
        &self.tls.ca
    }

    /// The static admin token (`system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The cluster's folder (kubeconfigs, certificates, `logs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An admin client (`system:masters`), on the cluster's runtime: use it inside
    /// [`Cluster::block_on`].
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Runs a future on the cluster's runtime.
    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Writes a kubeconfig that reaches this API server with `token`.
    pub fn kubeconfig(&self, name: &str, token: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write_kubeconfig(&path, &self.api_url, &self.tls.ca, token)?;
        Ok(path)
    }

    /// A token of a ServiceAccount, from the API server's TokenRequest API, valid for a
    /// day: longer than any benchmark, which would otherwise go on with refused calls.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        self.token_request(namespace, name, json!({"expirationSeconds": 86_400}))
    }

    /// A token of ServiceAccount `namespace/name` from a TokenRequest with `spec`
    /// (audiences, a bound pod, as the kubelet asks for a projected token).
    pub fn token_request(&self, namespace: &str, name: &str, spec: Value) -> anyhow::Result<String> {
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(self.client(), namespace);
        let req: k8s_openapi::api::authentication::v1::TokenRequest = serde_json::from_value(json!({"spec": spec}))?;
        let out = self
            .block_on(api.create_token_request(name, &PostParams::default(), &req))
            .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{name}"))?;
        out.status.and_then(|s| s.token).context("TokenRequest answered without a token")
    }

    /// Creates a namespace (no error when it exists).
    pub fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        match self.block_on(api.create(&PostParams::default(), &ns)) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
        }
    }

    /// Creates the nodes, 16 requests at a time.
    pub fn create_nodes(&self, nodes: &[NodeSpec]) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client());
        self.concurrently(nodes, |n| {
            let api = api.clone();
            async move {
                let node: Node = serde_json::from_value(n.to_json())?;
                api.create(&PostParams::default(), &node).await.with_context(|| format!("creating node {}", n.name))?;
                Ok(())
            }
        })
    }

    /// Deletes nodes (a node leaving the cluster).
    pub fn delete_nodes(&self, names: &[String]) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client());
        for n in names {
            self.block_on(api.delete(n, &DeleteParams::default()))?;
        }
        Ok(())
    }

    /// Creates a Deployment; the controller manager makes its ReplicaSet and pods.
    pub fn create_workload(&self, w: &Workload) -> anyhow::Result<()> {
        self.create_workloads(std::slice::from_ref(w))
    }

    /// A burst made by scaling: `w` created with no replica, then scaled to its replicas
    /// in one update, so the ReplicaSet controller creates them all at once.
    pub fn scale_up(&self, w: &Workload) -> anyhow::Result<()> {
        self.create_workload(&Workload { replicas: 0, ..w.clone() })?;
        let api: Api<Deployment> = Api::namespaced(self.client(), &w.namespace);
        let patch = json!({"spec": {"replicas": w.replicas}});
        self.block_on(api.patch(&w.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)))
            .with_context(|| format!("scaling {}/{}", w.namespace, w.name))?;
        Ok(())
    }

    /// A burst made by parallel creates: `w`'s replicas as bare pods, `streams` requests
    /// at a time. They share one controlling owner (a ConfigMap named after `w`, which
    /// the scorer counts siblings by) and a Service of that name selects them (which
    /// kube-scheduler's default topology spread finds siblings by), as a ReplicaSet's
    /// replicas would have.
    pub fn create_in_parallel(&self, w: &Workload, streams: usize) -> anyhow::Result<()> {
        self.create_namespace(&w.namespace)?;
        let owner: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": w.name, "namespace": w.namespace}}),
        )?;
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": w.name, "namespace": w.namespace},
            "spec": {"selector": {"app": w.name}, "ports": [{"port": 80}]},
        }))?;
        let owner = self
            .block_on(Api::namespaced(self.client(), &w.namespace).create(&PostParams::default(), &owner))
            .with_context(|| format!("creating the owner ConfigMap {}/{}", w.namespace, w.name))?;
        self.block_on(Api::namespaced(self.client(), &w.namespace).create(&PostParams::default(), &service))
            .with_context(|| format!("creating Service {}/{}", w.namespace, w.name))?;
        let reference = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: w.name.clone(),
            uid: owner.metadata.uid.context("the owner has no UID")?,
            controller: Some(true),
            block_owner_deletion: None,
        };
        let pods = (0..w.replicas)
            .map(|i| {
                let mut pod = w.pod(&format!("{}-{i:05}", w.name))?;
                pod.metadata.owner_references = Some(vec![reference.clone()]);
                Ok(pod)
            })
            .collect::<anyhow::Result<Vec<Pod>>>()?;
        use futures::{StreamExt, TryStreamExt};
        let api: Api<Pod> = Api::namespaced(self.client(), &w.namespace);
        self.block_on(
            futures::stream::iter(pods.iter().map(|p| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), p).await.map(|_| ()) }
            }))
            .buffer_unordered(streams.max(1))
            .try_collect::<Vec<()>>(),
        )?;
        Ok(())
    }

    /// Creates the workloads' namespaces, then the workloads, 16 requests at a time.
    pub fn create_workloads(&self, ws: &[Workload]) -> anyhow::Result<()> {
        let namespaces: std::collections::BTreeSet<&str> = ws.iter().map(|w| w.namespace.as_str()).collect();
        for ns in namespaces {
            self.create_namespace(ns)?;
        }
        self.concurrently(ws, |w| async move {
            let api: Api<Deployment> = Api::namespaced(self.client(), &w.namespace);
            api.create(&PostParams::default(), &w.deployment()?)
                .await
                .with_context(|| format!("creating Deployment {}/{}", w.namespace, w.name))?;
            Ok(())
        })
    }

    /// Waits until `w.replicas` of the workload's pods are bound to nodes.
    pub fn wait_scheduled(&self, w: &Workload, timeout: Duration) -> anyhow::Result<Vec<Placement>> {
        let deadline = Instant::now() + timeout;
        loop {
            let placed: Vec<Placement> =
                self.bound_pods(&w.namespace, Some(&w.name))?.into_iter().map(|(_, p)| p).collect();
            if placed.len() >= w.replicas as usize {
                return Ok(placed);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} pods of {}/{} bound after {timeout:?} (logs in {})",
                    placed.len(),
                    w.replicas,
                    w.namespace,
                    w.name,
                    self.procs.log_dir().display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pods of `namespace` (of workload `app`, if given) that are bound and not being
    /// deleted, each with its `app` label.
    pub fn bound_pods(&self, namespace: &str, app: Option<&str>) -> anyhow::Result<Vec<(String, Placement)>> {
        let api: Api<Pod> = Api::namespaced(self.client(), namespace);
        let lp = match app {
            Some(app) => ListParams::default().labels(&format!("app={app}")),
            None => ListParams::default(),
        };
        let pods = self.block_on(api.list(&lp))?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let app = p.metadata.labels.as_ref().and_then(|l| l.get("app")).cloned().unwrap_or_default();
                Some((app, Placement { pod: p.metadata.name?, node: p.spec?.node_name? }))
            })
            .collect())
    }

    /// Deletes a workload and its pods at once: no grace period, no ReplicaSet left to
    /// replace them.
    pub fn delete_workload(&self, w: &Workload) -> anyhow::Result<()> {
        self.delete_workloads(std::slice::from_ref(w))
    }

    /// [`Cluster::delete_workload`] for many, 16 at a time.
    pub fn delete_workloads(&self, ws: &[Workload]) -> anyhow::Result<()> {
        self.concurrently(ws, |w| async move {
            let lp = ListParams::default().labels(&format!("app={}", w.name));
            self.delete_all(&w.namespace, Some(&w.name), &lp).await
        })
    }

    /// Deletes every Deployment, ReplicaSet and pod of `namespace` (three requests, where
    /// deleting workload by workload takes three each).
    pub fn clear_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        self.block_on(self.delete_all(namespace, None, &ListParams::default()))
    }

    /// Deletes the Deployment `deployment` (every Deployment when `None`: a Deployment
    /// carries no `app` label, only its template does), then the ReplicaSets and pods
    /// `lp` selects, orphaning so no controller replaces what is being deleted.
    async fn delete_all(&self, namespace: &str, deployment: Option<&str>, lp: &ListParams) -> anyhow::Result<()> {
        let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..DeleteParams::default() };
        let context = || format!("deleting {namespace}/{}", deployment.unwrap_or("every workload"));
        let deployments: Api<Deployment> = Api::namespaced(self.client(), namespace);
        match deployment {
            Some(name) => deployments.delete(name, &orphan).await.map(|_| ()),
            None => deployments.delete_collection(&orphan, &ListParams::default()).await.map(|_| ()),
        }
        // A workload created as bare pods ([`Cluster::create_in_parallel`]) has none.
        .or_else(|e| if matches!(&e, kube::Error::Api(s) if s.code == 404) { Ok(()) } else { Err(e) })
        .with_context(context)?;
        let replica_sets: Api<ReplicaSet> = Api::namespaced(self.client(), namespace);
        replica_sets.delete_collection(&orphan, lp).await.with_context(context)?;
        let pods: Api<Pod> = Api::namespaced(self.client(), namespace);
        pods.delete_collection(&DeleteParams::default().grace_period(0), lp).await.with_context(context)?;
        Ok(())
    }

    /// Runs `f` on every item, 16 at a time, stopping at the first error.
    fn concurrently<'a, T: 'a, F>(&'a self, items: &'a [T], f: impl Fn(&'a T) -> F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = anyhow::Result<()>> + 'a,
    {
        use futures::{StreamExt, TryStreamExt};
        self.block_on(futures::stream::iter(items.iter().map(f)).buffer_unordered(16).try_collect::<Vec<()>>())?;
        Ok(())
    }

    /// Starts kube-scheduler with `config` (a KubeSchedulerConfiguration as JSON, which
    /// kube-scheduler reads as YAML) and `kubeconfig` as its identity, on free ports with
    /// the cluster's certificate, and waits until it is healthy.
    pub fn start_scheduler(&mut self, config: &Value, kubeconfig: &Path) -> anyhow::Result<()> {
        let mut config = config.clone();
        config["clientConnection"]["kubeconfig"] = json!(kubeconfig.display().to_string());
        let file = self.dir.join("scheduler-config.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&config)?)?;
        let port = free_addr()?.port();
        let mut cmd = Command::new(self.bins.join("kube-scheduler"));
        cmd.arg(format!("--config={}", file.display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--tls-cert-file={}", self.tls.cert.display()))
            .arg(format!("--tls-private-key-file={}", self.tls.key.display()))
            // In a pod these come from the service account; here from the same identity.
            .arg(format!("--authentication-kubeconfig={}", kubeconfig.display()))
            .arg(format!("--authorization-kubeconfig={}", kubeconfig.display()))
            .arg("--v=2");
        self.procs.spawn("kube-scheduler", cmd)?;
        let path = self.dir.join("scheduler-metrics.kubeconfig");
        write_kubeconfig(&path, &format!("https://127.0.0.1:{port}"), &self.tls.ca, &self.admin_token)?;
        let client = self.block_on(client_from(&path))?;
        self.scheduler = Some(client.clone());
        let election = &config["leaderElection"];
        self.scheduler_lease = (election["leaderElect"] != false).then(|| {
            let field = |k: &str, default: &str| election[k].as_str().unwrap_or(default).to_owned();
            (field("resourceNamespace", "kube-system"), field("resourceName", "kube-scheduler"))
        });
        let rt = &self.rt;
        wait_ready(rt, &client, "/healthz", &mut self.procs, Duration::from_secs(60))
    }

    /// Stops kube-scheduler, and removes its Lease: killed, it cannot release it, and the
    /// next one would wait for the lease to expire.
    pub fn stop_scheduler(&mut self) -> anyhow::Result<()> {
        self.scheduler = None;
        self.procs.kill("kube-scheduler")?;
        if let Some((namespace, name)) = self.scheduler_lease.take() {
            let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(self.client(), &namespace);
            match self.block_on(api.delete(&name, &DeleteParams::default())) {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e).context("deleting kube-scheduler's Lease"),
            }
        }
        Ok(())
    }

    /// kube-scheduler's `/metrics` (Prometheus text), read with the admin token.
    pub fn scheduler_metrics(&self) -> anyhow::Result<String> {
        let client = self.scheduler.clone().context("kube-scheduler is not running")?;
        let req = http::Request::get("/metrics").body(Vec::new())?;
        Ok(self.block_on(client.request_text(req))?)
    }

    /// Pods kube-scheduler counts as scheduled (`scheduler_schedule_attempts_total`
    /// with `result="scheduled"`, summed over profiles).
    pub fn scheduled_attempts(&self) -> anyhow::Result<u64> {
        Ok(sum_metric(&self.scheduler_metrics()?, "scheduler_schedule_attempts_total", "result=\"scheduled\""))
    }

    /// Fails with the tail of its log when a control-plane process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.procs.check_alive()
    }

    /// Everything a control-plane process logged.
    pub fn log(&self, name: &str) -> String {
        self.procs.log(name)
    }

    /// The OS process id of a control-plane process (`kube-apiserver`, `kube-scheduler`...).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.pid(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // etcd must be gone before its data is removed; the fields drop after this body.
        self.procs.stop_all();
        let _ = std::fs::remove_dir_all(&self.etcd_data);
    }
}

/// Installs etcd from Debian (`etcd-server`) when it is missing, and stops the service the
/// package starts: each cluster runs its own etcd on free ports.
pub fn ensure_etcd() -> anyhow::Result<()> {
    if !tools::ensure_debian_tools(&[("etcd", "etcd-server")])?.is_empty() {
        let _ = Command::new("sh")
            .args(["-c", "systemctl stop etcd 2>/dev/null || service etcd stop 2>/dev/null || true"])
            .status();
    }
    Ok(())
}

/// The sum of a counter's samples that carry `label` ([`sum_samples`]).
pub fn sum_metric(text: &str, name: &str, label: &str) -> u64 {
    sum_samples(text, name, label) as u64
}

/// The sum of the samples of `name` in a `/metrics` text that carry `label`
/// (`key="value"`; empty: every sample of `name`), read with the one exposition parser
/// (`fitsched_runtime::exposition`). A text with no sample sums to 0.
pub fn sum_samples(text: &str, name: &str, label: &str) -> f64 {
    let want = label.split_once('=').map(|(k, v)| (k.trim(), v.trim().trim_matches('"')));
    let Ok(exposition) = fitsched_runtime::exposition::parse(text) else { return 0.0 };
    exposition
        .samples
        .iter()
        .filter(|s| s.name == name && want.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) -> anyhow::Result<()> {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": ca.display().to_string()}}],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
        "current-context": "test",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?).with_context(|| format!("writing {}", path.display()))
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(kubeconfig)?, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Polls `path` until it answers `ok`, failing early when a process died.
fn wait_ready(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    path: &str,
    procs: &mut Processes,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let req = http::Request::get(path).body(Vec::new())?;
        let answer =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await });
        if let Ok(Ok(text)) = answer
            && text.trim() == "ok"
        {
            return Ok(());
        }
        procs.check_alive()?;
        ensure!(Instant::now() < deadline, "{path} not ok after {timeout:?} (logs in {})", procs.log_dir().display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The address kube-scheduler reaches an extender at in a chart-rendered policy is the
/// shim's loopback port; tests move it to wherever the shim listens.
pub fn point_extenders_at(config: &mut Value, shim: SocketAddr) {
    if let Some(extenders) = config.get_mut("extenders").and_then(Value::as_array_mut) {
        for e in extenders {
            e["urlPrefix"] = json!(format!("http://{shim}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counter_samples_by_label() {
        let text = "# HELP x\nscheduler_schedule_attempts_total{profile=\"a\",result=\"scheduled\"} 12\n\
                    scheduler_schedule_attempts_total{profile=\"b\",result=\"scheduled\"} 3\n\
                    scheduler_schedule_attempts_total{profile=\"a\",result=\"error\"} 7\n\
                    scheduler_schedule_attempts_total_other{result=\"scheduled\"} 100\n";
        assert_eq!(sum_metric(text, "scheduler_schedule_attempts_total", "result=\"scheduled\""), 15);
        let text = "x_seconds_sum 1.5\nx_seconds_count 3\nx_seconds_sum_other 9\n";
        assert_eq!((sum_samples(text, "x_seconds_sum", ""), sum_samples(text, "x_seconds_count", "")), (1.5, 3.0));
    }
}
