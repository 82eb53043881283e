//! The Helm chart installed into a test [`Cluster`]: rendered with Helm's Go SDK (the
//! chart tests' own renderer, `e2e/scripts/render_chart.py`), every object the API
//! server can hold without a kubelet created (RBAC, ServiceAccounts, ConfigMaps,
//! Services, NetworkPolicies, ...), the workloads (Deployments, DaemonSets) checked with
//! a server-side dry run, and what their containers would run handed back: kube-scheduler's
//! configuration and the scorer's and shim's arguments, with the tokens of the chart's
//! own ServiceAccounts, so a missing permission fails the test.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::paths;
use crate::stack::ClusterAccess;
use crate::tools::{self, Venv};

/// Kinds that would start containers: created with a server-side dry run only, since
/// no kubelet would run them (and their pods would wait for a scheduler forever).
const WORKLOAD_KINDS: [&str; 4] = ["Deployment", "DaemonSet", "StatefulSet", "Job"];

/// What an install of the chart gives the test.
#[derive(Debug, Clone)]
pub struct Installed {
    pub namespace: String,
    /// Every rendered object.
    pub objects: Vec<Value>,
    /// The scheduler's KubeSchedulerConfiguration, as rendered.
    pub scheduler_config: Value,
    /// The profiles' scheduler names, the main profile first.
    pub profiles: Vec<String>,
    /// The scheduler pod's identity (kube-scheduler and the shim beside it).
    pub scheduler_kubeconfig: PathBuf,
    /// The scorer's identity.
    pub scorer_kubeconfig: PathBuf,
    /// The scorer container's arguments, less what the stack sets itself (listen
    /// addresses, window, TLS, the watch switch).
    pub scorer_args: Vec<String>,
    /// The shim container's arguments, less listen address, scorer URL and binder.
    pub shim_args: Vec<String>,
}

impl Installed {
    pub fn access(&self) -> ClusterAccess {
        ClusterAccess {
            scorer_kubeconfig: self.scorer_kubeconfig.clone(),
            shim_kubeconfig: self.scheduler_kubeconfig.clone(),
        }
    }
}

/// Flags the stack sets for every scorer and shim it starts (ports, window, TLS, the
/// model file, the token files, whether to watch or bind): the chart's values for them
/// are paths and addresses inside its containers.
const STACK_OWNED_FLAGS: [&str; 14] = [
    "--grpc-listen",
    "--http-listen",
    "--listen",
    "--window",
    "--cluster-watch",
    "--scorer",
    "--binder",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
    "--model",
    "--ingest-token-file",
    "--token-file",
    "--metrics-listen",
];

/// Renders the chart with `values` and installs it into `cluster`: the workloads by a
/// server-side dry run only, for a cluster without kubelets.
pub fn install(cluster: &Cluster, venv: &Venv, values: &Value) -> anyhow::Result<Installed> {
    install_with(cluster, venv, values, false)
}

/// [`install`] with the workloads created too, for a cluster with a real node
/// ([`crate::node`]) to run them.
pub fn install_for_real(cluster: &Cluster, venv: &Venv, values: &Value) -> anyhow::Result<Installed> {
    install_with(cluster, venv, values, true)
}

fn install_with(cluster: &Cluster, venv: &Venv, values: &Value, workloads: bool) -> anyhow::Result<Installed> {
    let script = paths::workspace_root().join("e2e/scripts/render_chart.py");
    let mut render = Command::new(venv.python());
    render.arg(&script).arg(values.to_string());
    if workloads {
        // As `helm install` does: the chart sees the cluster's own version (the scheduler
        // image's tag follows it).
        render.arg(cluster.block_on(cluster.client().apiserver_version())?.git_version);
    }
    let out = tools::run(&mut render)?;
    let rendered: Value = serde_json::from_str(&out).context("render_chart.py printed no JSON")?;
    let namespace = rendered["namespace"].as_str().context("no namespace")?.to_owned();
    let objects: Vec<Value> = rendered["objects"].as_array().context("no objects")?.clone();

    cluster.create_namespace(&namespace)?;
    for obj in &objects {
        create(cluster, &namespace, obj, workloads)?;
    }

    let scheduler_config = scheduler_config(&objects)?;
    let profiles = scheduler_config["profiles"]
        .as_array()
        .context("no profiles")?
        .iter()
        .filter_map(|p| p["schedulerName"].as_str().map(str::to_owned))
        .collect();
    let scheduler = container(&objects, "-scheduler", "shim")?;
    let scorer = container(&objects, "-scorer", "scorer")?;
    let token = |sa: &str| cluster.service_account_token(&namespace, sa);
    Ok(Installed {
        scheduler_kubeconfig: cluster.kubeconfig("scheduler", &token(&scheduler.service_account)?)?,
        scorer_kubeconfig: cluster.kubeconfig("scorer", &token(&scorer.service_account)?)?,
        scorer_args: without_stack_flags(&scorer.args),
        shim_args: without_stack_flags(&scheduler.args),
        namespace,
        objects,
        scheduler_config,
        profiles,
    })
}

fn create(cluster: &Cluster, namespace: &str, obj: &Value, workloads: bool) -> anyhow::Result<()> {
    let (group, version) = match obj["apiVersion"].as_str().context("object without apiVersion")?.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", obj["apiVersion"].as_str().unwrap_or_default()),
    };
    let kind = obj["kind"].as_str().context("object without kind")?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = cluster
        .block_on(kube::discovery::pinned_kind(&cluster.client(), &gvk))
        .with_context(|| format!("the API server does not serve {kind} ({})", obj["apiVersion"]))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            cluster.client(),
            obj["metadata"]["namespace"].as_str().unwrap_or(namespace),
            &resource,
        ),
        Scope::Cluster => Api::all_with(cluster.client(), &resource),
    };
    let dry_run = !workloads && WORKLOAD_KINDS.contains(&kind);
    let object: DynamicObject = serde_json::from_value(obj.clone())?;
    cluster
        .block_on(api.create(&PostParams { dry_run, ..PostParams::default() }, &object))
        .with_context(|| format!("the API server refused the chart's {kind} {name} (dry run: {dry_run})"))?;
    Ok(())
}

fn scheduler_config(objects: &[Value]) -> anyhow::Result<Value> {
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-scheduler")))
        .context("the chart rendered no scheduler ConfigMap")?;
    let text = cm["data"]["scheduler-config.yaml"].as_str().context("no scheduler-config.yaml in it")?;
    serde_saphyr::from_str(text).context("the rendered KubeSchedulerConfiguration is not YAML")
}

struct Container {
    service_account: String,
    args: Vec<String>,
}

/// The container `name` of the Deployment whose name ends with `suffix`.
fn container(objects: &[Value], suffix: &str, name: &str) -> anyhow::Result<Container> {
    let Some(deploy) = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
    else {
        bail!("the chart rendered no Deployment *{suffix}");
    };
    let spec = &deploy["spec"]["template"]["spec"];
    // Native sidecars (init containers that keep running) count as the pod's containers.
    let c = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| spec[*list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .with_context(|| format!("Deployment *{suffix} has no container {name}"))?;
    Ok(Container {
        service_account: spec["serviceAccountName"].as_str().context("no serviceAccountName")?.to_owned(),
        args: c["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
    })
}

/// The args less [`STACK_OWNED_FLAGS`], written `--flag=value` or `--flag value`.
fn without_stack_flags(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        let (flag, inline_value) = match a.split_once('=') {
            Some((f, _)) => (f, true),
            None => (a.as_str(), false),
        };
        if !STACK_OWNED_FLAGS.contains(&flag) {
            out.push(a.clone());
        } else if !inline_value {
            args.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_flags_the_stack_sets() {
        let args: Vec<String> = [
            "--listen=127.0.0.1:8080",
            "--deadline=300ms",
            "--scorer",
            "http://x",
            "--profile-strategy=a=pack",
            "--model=/models/fitness.onnx",
        ]
        .map(String::from)
        .into();
        assert_eq!(without_stack_flags(&args), ["--deadline=300ms", "--profile-strategy=a=pack"]);
    }
}
