"""The chart renders, with default values and with every toggle on, into objects that the
Kubernetes API schemas accept in strict mode (unknown fields refused), and those objects
hold the chart's promises: least privilege, resources everywhere, the right wiring."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import (
    NAMESPACE,
    NEWEST_KUBE,
    OLDEST_KUBE,
    PROMETHEUS_OPERATOR_APIS,
    SCHEMAS,
    container,
    find,
    flag,
    fullname,
    load_values,
    merged,
    objects,
    one,
    pod_specs,
    render,
    scheduler_config,
)

VARIANTS: dict[str, dict[str, Any]] = load_values("variants")

# (config name, values, Prometheus Operator present)
CONFIGS = [("default", None, False), ("full", load_values("full"), True)] + [
    (name, values, False) for name, values in VARIANTS.items()
]


def strict_crd_schema(schema: Any) -> Any:
    """A CRD's structural schema made strict the way kubernetes-validate's strict schemas
    are: objects with declared properties refuse unknown ones."""
    if isinstance(schema, dict):
        out = {k: strict_crd_schema(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_crd_schema(v) for v in schema]
    return schema


CRD_SCHEMAS = {
    kind: strict_crd_schema(json.loads((SCHEMAS / f"monitoring.coreos.com_v1_{kind}.json").read_text()))
    for kind in ("ServiceMonitor", "PodMonitor")
}


def validate_strict(obj: dict[str, Any], kube: str) -> None:
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["apiVersion"] == "monitoring.coreos.com/v1":
        try:
            jsonschema.Draft7Validator(CRD_SCHEMAS[obj["kind"]]).validate(obj)
        except jsonschema.ValidationError as e:
            pytest.fail(f"{where} against the Prometheus Operator's CRD: {e.message} at {list(e.absolute_path)}")
        return
    try:
        kubernetes_validate.validate(obj, kube, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{where} is not a valid Kubernetes {kube} object: {e.message} at {list(e.absolute_path)}")


@pytest.mark.parametrize("kube", [OLDEST_KUBE, NEWEST_KUBE])
@pytest.mark.parametrize("name,values,operator", CONFIGS[:2], ids=[c[0] for c in CONFIGS[:2]])
def test_every_object_is_valid_for_kubernetes_in_strict_mode(name, values, operator, kube):
    objs = objects(render(values, kube_version=kube, api_versions=PROMETHEUS_OPERATOR_APIS if operator else None))
    assert len(objs) >= 10
    for obj in objs:
        validate_strict(obj, kube)


@pytest.mark.parametrize("name,values,operator", CONFIGS[2:], ids=[c[0] for c in CONFIGS[2:]])
def test_variants_are_valid_for_kubernetes_in_strict_mode(name, values, operator):
    for obj in objects(render(values, kube_version=NEWEST_KUBE)):
        validate_strict(obj, NEWEST_KUBE)


def test_strict_validation_refuses_unknown_fields():
    """The validator used above does fail: a misspelt field is refused."""
    objs = objects(render())
    deploy = one(objs, "Deployment", f"{fullname()}-scorer")
    deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, NEWEST_KUBE, strict=True)
    monitors = objects(render(load_values("full"), api_versions=PROMETHEUS_OPERATOR_APIS))
    sm = one(monitors, "ServiceMonitor")
    sm["spec"]["endpoints"][0]["intervall"] = "1s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(CRD_SCHEMAS["ServiceMonitor"]).validate(sm)


def test_default_install_has_every_part():
    objs = objects(render())
    name = fullname()
    one(objs, "DaemonSet", f"{name}-agent")
    one(objs, "Deployment", f"{name}-scorer")
    one(objs, "Deployment", f"{name}-scheduler")
    one(objs, "Service", f"{name}-scorer")
    one(objs, "PodDisruptionBudget", f"{name}-scorer")
    one(objs, "ConfigMap", f"{name}-scheduler")
    assert find(objs, "NetworkPolicy")
    # Off by default, or present only when asked for.
    assert not find(objs, "ServiceMonitor") and not find(objs, "PodMonitor"), "no Prometheus Operator CRDs"
    assert not [o for o in objs if o["kind"] == "Deployment" and "-bench-" in o["metadata"]["name"]]
    assert not find(objs, "Secret")
    for obj in objs:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "FlowSchema"):
            assert obj["metadata"].get("namespace") in (NAMESPACE, "kube-system"), obj["metadata"]


def test_monitoring_objects_only_with_the_prometheus_operator():
    full = load_values("full")
    without = objects(render(full))
    assert not find(without, "ServiceMonitor") and not find(without, "PodMonitor")
    objs = objects(render(full, api_versions=PROMETHEUS_OPERATOR_APIS))
    sm = one(objs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    monitors = {p["metadata"]["name"]: p for p in find(objs, "PodMonitor")}
    assert set(monitors) == {f"{fullname()}-agent", f"{fullname()}-scheduler"}
    # Every monitored port exists on the pods it selects.
    agent = container(objs, "DaemonSet", f"{fullname()}-agent", "agent")
    assert "http" in [p["name"] for p in agent["ports"]]
    shim = container(objs, "Deployment", f"{fullname()}-scheduler", "shim")
    assert "shim-metrics" in [p["name"] for p in shim["ports"]]
    assert monitors[f"{fullname()}-scheduler"]["spec"]["podMetricsEndpoints"][0]["port"] == "shim-metrics"
    off = dict(full, monitoring={"enabled": False})
    assert not find(objects(render(off, api_versions=PROMETHEUS_OPERATOR_APIS)), "ServiceMonitor")


# ---- least privilege ------------------------------------------------------------------


def effective(pod: dict[str, Any], c: dict[str, Any], key: str) -> Any:
    sc = c.get("securityContext", {})
    if key in sc:
        return sc[key]
    return pod.get("securityContext", {}).get(key)


@pytest.mark.parametrize("name,values,operator", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_every_container_is_least_privilege_and_sized(name, values, operator):
    v = merged(values)
    objs = objects(render(values, api_versions=PROMETHEUS_OPERATOR_APIS if operator else None))
    specs = pod_specs(objs)
    assert specs
    for workload, pod in specs:
        assert not pod.get("hostPID"), f"{workload}: hostPID"
        assert not pod.get("hostIPC"), f"{workload}: hostIPC"
        is_agent = workload.endswith("-agent")
        if pod.get("hostNetwork"):
            assert is_agent and v["agent"]["hostNetwork"], f"{workload}: hostNetwork"
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{workload} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}: resources.{part} needs cpu and memory"
            sc = c.get("securityContext")
            assert sc, f"{where}: no securityContext"
            seccomp = effective(pod, c, "seccompProfile")
            if c["name"] == "pcm":
                # Intel PCM reads MSRs: the one privileged container, only when asked for.
                assert is_agent and v["agent"]["pcm"]["enabled"]
                assert sc["privileged"] is True
                continue
            assert seccomp == {"type": "RuntimeDefault"}, f"{where}: seccomp {seccomp}"
            assert sc.get("privileged") is False, f"{where}: privileged"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            caps = sc.get("capabilities", {})
            assert caps.get("drop") == ["ALL"], f"{where}: capabilities.drop {caps.get('drop')}"
            if is_agent and c["name"] == "agent" and v["agent"]["perf"]["enabled"]:
                # perf_event_open system-wide: exactly one capability, which only UID 0 can hold.
                assert caps.get("add") == [v["agent"]["perf"]["capability"]], where
                assert caps["add"][0] in ("PERFMON", "SYS_ADMIN")
                assert effective(pod, c, "runAsUser") == 0
            else:
                assert not caps.get("add"), f"{where}: adds {caps.get('add')}"
                assert effective(pod, c, "runAsNonRoot") is True, f"{where}: runAsNonRoot"
                assert effective(pod, c, "runAsUser") not in (None, 0), f"{where}: runAsUser"


@pytest.mark.parametrize("values", [None, load_values("full")], ids=["default", "full"])
def test_agent_mounts_the_node_read_only_and_needs_no_api_access(values):
    v = merged(values)
    objs = objects(render(values))
    ds = one(objs, "DaemonSet", f"{fullname()}-agent")
    pod = ds["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in pod["tolerations"], "runs on every node, tainted or not"
    host_paths = {vol["name"]: vol["hostPath"]["path"] for vol in pod["volumes"] if "hostPath" in vol}
    expected = {"host-proc": "/proc", "host-cgroup": v["agent"]["cgroupRoot"]}
    if v["agent"]["pcm"]["enabled"]:
        expected["dev-cpu"] = "/dev/cpu"
    assert host_paths == expected
    agent = container(objs, "DaemonSet", ds["metadata"]["name"], "agent")
    for m in agent["volumeMounts"]:
        if m["name"] in host_paths:
            assert m.get("readOnly") is True, f"agent mounts {m['name']} writable"
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert flag(agent, "proc-root") == "/host/proc"
    assert flag(agent, "cgroup-root") == "/host/cgroup"
    assert flag(agent, "window") == v["window"]
    scorer_url = flag(agent, "scorer")
    scheme = "https" if v["tls"]["enabled"] else "http"
    assert scorer_url == f"{scheme}://{fullname()}-scorer.{NAMESPACE}.svc:{v['scorer']['grpcPort']}"
    if v["agent"]["pcm"]["enabled"]:
        assert flag(agent, "pcm-url") == f"http://127.0.0.1:{v['agent']['pcm']['port']}"
        pcm = container(objs, "DaemonSet", ds["metadata"]["name"], "pcm")
        assert str(v["agent"]["pcm"]["port"]) in pcm["args"]
    else:
        assert flag(agent, "pcm-url") is None
    if v["tls"]["enabled"]:
        assert flag(agent, "tls-ca") == "/etc/fitsched/tls/ca.crt"
        secret_vol = next(vol for vol in pod["volumes"] if vol["name"] == "scorer-ca")
        assert secret_vol["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "agents get the CA only"
    if v["auth"]["tokenReview"]:
        assert flag(agent, "token-file") == "/var/run/secrets/fitsched/token"
    elif v["ingestToken"]["enabled"]:
        assert flag(agent, "token-file") == "/etc/fitsched/token/token"


def test_agent_resources_follow_the_measured_overhead():
    """Measured: 0.106 % of one core (about 1 millicore), 7.8 MiB peak RSS at a 1-s tick."""
    agent = container(objects(render()), "DaemonSet", f"{fullname()}-agent", "agent")
    res = agent["resources"]

    def cpu_milli(q: str) -> float:
        return float(q[:-1]) if q.endswith("m") else float(q) * 1000

    def mib(q: str) -> float:
        return float(q[:-2]) if q.endswith("Mi") else float(q[:-2]) * 1024

    assert 1.06 <= cpu_milli(res["requests"]["cpu"]) <= 20
    assert cpu_milli(res["limits"]["cpu"]) <= 200
    assert 7.8 < mib(res["requests"]["memory"]) <= 32
    assert 2 * 7.8 < mib(res["limits"]["memory"]) <= 128


def test_rbac_grants_only_what_each_part_uses():
    for values in (None, load_values("full")):
        v = merged(values)
        objs = objects(render(values))
        for role in find(objs, "ClusterRole") + find(objs, "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
        scorer_rules = one(objs, "ClusterRole", f"{fullname()}-scorer")["rules"]
        # The scorer only watches, and checks its callers' tokens; the shim binds with the
        # scheduler's account.
        assert scorer_rules[0] == {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["list", "watch"]}
        review = {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
        assert scorer_rules[1:] == ([review] if v["auth"]["tokenReview"] else [])
        bindings = {
            b["roleRef"]["name"]: b for b in find(objs, "ClusterRoleBinding") if b["metadata"]["name"].endswith(("kube-scheduler", "volume-scheduler"))
        }
        assert set(bindings) == {"system:kube-scheduler", "system:volume-scheduler"}
        for b in bindings.values():
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": f"{fullname()}-scheduler", "namespace": NAMESPACE}]
        # The Lease the scheduler elects on is the one its Role may renew.
        _, cfg = scheduler_config(objs)
        lease = one(objs, "Role", f"{fullname()}-scheduler-lease")
        named = [r for r in lease["rules"] if r.get("resourceNames")]
        assert named == [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": [cfg["leaderElection"]["resourceName"]],
                "verbs": ["get", "update"],
            }
        ]
        assert cfg["leaderElection"]["resourceNamespace"] == lease["metadata"]["namespace"]
        # Every pod runs under its own ServiceAccount, which the chart creates.
        accounts = {sa["metadata"]["name"] for sa in find(objs, "ServiceAccount")}
        for workload, pod in pod_specs(objs):
            if "-bench-" not in workload:
                assert pod["serviceAccountName"] in accounts, workload


def test_scorer_probes_and_model():
    objs = objects(render())
    scorer = container(objs, "Deployment", f"{fullname()}-scorer", "scorer")
    assert scorer["readinessProbe"]["grpc"] == {"port": 50051}, "readiness on grpc.health.v1"
    assert scorer["livenessProbe"]["httpGet"]["path"] == "/health"
    assert flag(scorer, "model") is None, "no model configured: the image's default"
    assert {p["containerPort"] for p in scorer["ports"]} == {50051, 9090}
    svc = one(objs, "Service", f"{fullname()}-scorer")
    assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {("grpc", 50051), ("http", 9090)}

    full = objects(render(load_values("full")))
    scorer = container(full, "Deployment", f"{fullname()}-scorer", "scorer")
    assert flag(scorer, "model") == "/models/fitness.onnx"
    model_mount = next(m for m in scorer["volumeMounts"] if m["name"] == "model")
    assert model_mount["mountPath"] == "/models" and "subPath" not in model_mount, "hot reload needs a directory mount"
    cm = one(full, "ConfigMap", f"{fullname()}-model")
    assert set(cm["binaryData"]) == {"fitness.onnx"}
    # kubelet's gRPC probe is plaintext; with TLS the readiness probe moves to HTTP.
    assert "grpc" not in scorer["readinessProbe"] and scorer["readinessProbe"]["httpGet"]["path"] == "/health"
    assert flag(scorer, "tls-cert") == "/etc/fitsched/tls/tls.crt"
    assert flag(scorer, "ingest-token-file") == "/etc/fitsched/token/token"
    assert flag(scorer, "default-strategy") == "spread"
    assert flag(scorer, "filter-min-fitness") == "0.2"
    pdb = one(full, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": one(full, "Deployment", f"{fullname()}-scorer")["spec"]["selector"]["matchLabels"]},
    }


def test_network_policy_lets_only_agents_and_the_shim_reach_the_scorer():
    objs = objects(render())
    np = one(objs, "NetworkPolicy", f"{fullname()}-scorer")
    scorer_pods = one(objs, "Deployment", f"{fullname()}-scorer")["spec"]["selector"]["matchLabels"]
    assert np["spec"]["podSelector"]["matchLabels"] == scorer_pods
    grpc_rule = next(r for r in np["spec"]["ingress"] if r["ports"][0]["port"] == "grpc")
    allowed = [peer["podSelector"]["matchLabels"] for peer in grpc_rule["from"]]
    agent = one(objs, "DaemonSet", f"{fullname()}-agent")["spec"]["template"]["metadata"]["labels"]
    scheduler = one(objs, "Deployment", f"{fullname()}-scheduler")["spec"]["template"]["metadata"]["labels"]
    assert len(allowed) == 2
    assert all(sel.items() <= agent.items() for sel in allowed[:1])
    assert all(sel.items() <= scheduler.items() for sel in allowed[1:])
    bench = objects(render({"bench": {"enabled": True}}))
    for d in find(bench, "Deployment"):
        if "-bench-" in d["metadata"]["name"]:
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert not any(sel.items() <= labels.items() for sel in allowed), "bench pods must not reach the scorer"
    # The shim's verbs are reachable from nowhere outside its pod.
    sched_np = one(objs, "NetworkPolicy", f"{fullname()}-scheduler")
    assert sched_np["spec"]["ingress"] == []
    assert flag(container(objs, "Deployment", f"{fullname()}-scheduler", "shim"), "listen") == "127.0.0.1:8080"


def test_agent_host_network_needs_the_nodes_in_the_network_policy():
    from helm_python import HelmRenderError

    with pytest.raises(HelmRenderError, match="extraScorerIngressFrom"):
        render({"agent": {"hostNetwork": True}})
    objs = objects(render(VARIANTS["host-network"]))
    pod = one(objs, "DaemonSet", f"{fullname()}-agent")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_benchmark_workload_runs_under_each_scheduler():
    objs = objects(render(load_values("full")))
    benches = {d["spec"]["template"]["spec"]["schedulerName"]: d for d in find(objs, "Deployment") if "-bench-" in d["metadata"]["name"]}
    assert set(benches) == {"fitsched", "default-scheduler"}
    selectors = [yaml.safe_dump(d["spec"]["selector"]) for d in benches.values()]
    assert len(set(selectors)) == 2, "the two Deployments must not adopt each other's pods"
    for d in benches.values():
        pod = d["spec"]["template"]
        assert pod["metadata"]["annotations"]["fitsched.io/strategy"] == "spread"
        assert d["spec"]["replicas"] == 6
        names = [c["name"] for c in pod["spec"]["containers"]]
        assert names == ["nginx", "wrk"]
        wrk = pod["spec"]["containers"][1]
        env = {e["name"]: e.get("value") for e in wrk["env"]}
        assert env["WRK_URL"].startswith("http://127.0.0.1:8080"), "wrk loads its own pod's nginx on localhost"
        assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
        assert pod["spec"]["automountServiceAccountToken"] is False
    # Default: one Deployment for the chart's own scheduler.
    default = objects(render({"bench": {"enabled": True}}))
    names = [d["spec"]["template"]["spec"]["schedulerName"] for d in find(default, "Deployment") if "-bench-" in d["metadata"]["name"]]
    assert names == ["fitsched"]


def test_notes_print_the_grpcurl_commands():
    notes = render()["fitsched/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{fullname()}-scorer 50051:50051" in notes
    for method in ("list", "fitsched.v1.Scorer/Score", "fitsched.v1.Scorer/ListNodes", "fitsched.v1.Scorer/ModelInfo"):
        assert f"grpcurl -plaintext" in notes and method in notes, method
    assert "schedulerName: fitsched" in notes
    tls_notes = render(load_values("full"))["fitsched/templates/NOTES.txt"]
    assert "-cacert ca.crt" in tls_notes and "-plaintext" not in tls_notes
    no_scheduler = render(VARIANTS["extend-default-scheduler"])["fitsched/templates/NOTES.txt"]
    assert "--show-only templates/policy.yaml --set policy.print=full" in no_scheduler


def test_closed_by_default():
    """Nothing reaches the shim's verbs but the kube-scheduler beside it, scrapers get a
    port of their own, and the scorer checks every caller's service account token with
    the API server, an agent's bound to its pod and so to its node."""
    objs = objects(render())
    shim = container(objs, "Deployment", f"{fullname()}-scheduler", "shim")
    assert flag(shim, "listen") == "127.0.0.1:8080"
    assert flag(shim, "metrics-listen") == "127.0.0.1:9091"
    exposed = container(objects(render({"shim": {"exposeMetrics": True}})), "Deployment", f"{fullname()}-scheduler", "shim")
    assert flag(exposed, "listen") == "127.0.0.1:8080", "exposing metrics never exposes the verbs"
    assert flag(exposed, "metrics-listen") == "0.0.0.0:9091"
    assert exposed["readinessProbe"]["httpGet"]["port"] == "shim-metrics"

    scorer = container(objs, "Deployment", f"{fullname()}-scorer", "scorer")
    assert "--token-review" in scorer["args"] and "--allow-unauthenticated" not in scorer["args"]
    assert flag(scorer, "token-audience") == "fitsched-scorer"
    accounts = [a.split("=", 1)[1] for a in scorer["args"] if a.startswith("--service-account=")]
    roles = [a.split("=", 2)[1] for a in scorer["args"] if a.startswith("--service-account=")]
    agent_sa = one(objs, "DaemonSet", f"{fullname()}-agent")["spec"]["template"]["spec"]["serviceAccountName"]
    shim_sa = one(objs, "Deployment", f"{fullname()}-scheduler")["spec"]["template"]["spec"]["serviceAccountName"]
    assert roles == ["agent", "scheduler"]
    assert accounts == [f"agent={NAMESPACE}/{agent_sa}", f"scheduler={NAMESPACE}/{shim_sa}"]
    for kind, name, c in (("DaemonSet", "agent", "agent"), ("Deployment", "scheduler", "shim")):
        pod = one(objs, kind, f"{fullname()}-{name}")["spec"]["template"]["spec"]
        vol = next(v for v in pod["volumes"] if v["name"] == "scorer-token")
        source = vol["projected"]["sources"][0]["serviceAccountToken"]
        assert source == {"audience": "fitsched-scorer", "expirationSeconds": 3600, "path": "token"}
        assert flag(container(objs, kind, f"{fullname()}-{name}", c), "token-file") == "/var/run/secrets/fitsched/token"
    ops = container(objects(render({"auth": {"operators": ["ops/grpcurl"]}})), "Deployment", f"{fullname()}-scorer", "scorer")
    assert "--service-account=operator=ops/grpcurl" in ops["args"]
    assert "create token grpcurl --audience fitsched-scorer" in render({"auth": {"operators": ["ops/grpcurl"]}})["fitsched/templates/NOTES.txt"]
    from helm_python import HelmRenderError

    with pytest.raises(HelmRenderError, match="let no one in"):
        render({"auth": {"tokenReview": False}})
    open_scorer = container(
        objects(render({"auth": {"tokenReview": False, "allowUnauthenticated": True}})), "Deployment", f"{fullname()}-scorer", "scorer"
    )
    assert "--allow-unauthenticated" in open_scorer["args"] and "--token-review" not in open_scorer["args"]


def test_ingest_token_is_generated_once_and_shared():
    objs = objects(render({"ingestToken": {"enabled": True}}))
    secret = one(objs, "Secret", f"{fullname()}-ingest-token")
    assert len(secret["data"]["token"]) >= 48
    for kind, name, c in (("DaemonSet", "agent", "agent"), ("Deployment", "scorer", "scorer")):
        pod = one(objs, kind, f"{fullname()}-{name}")["spec"]["template"]["spec"]
        vol = next(v for v in pod["volumes"] if v["name"] == "ingest-token")
        assert vol["secret"]["secretName"] == secret["metadata"]["name"]
    existing = objects(render(VARIANTS["existing-secrets"]))
    assert not find(existing, "Secret") and not find(existing, "ConfigMap", f"{fullname()}-model")


@pytest.mark.parametrize("leader", [True, False])
def test_scheduler_flow_schemas_match_its_account_and_lease(leader):
    """The scheduler's Lease renewals at `leader-election`, everything else of its account at
    `workload-high`, as the API server's own schemas do for kube-scheduler."""
    objs = objects(render({"scheduler": {"leaderElection": {"enabled": leader}}}))
    schemas = {s["metadata"]["name"]: s["spec"] for s in find(objs, "FlowSchema")}
    account = {"kind": "ServiceAccount", "serviceAccount": {"name": f"{fullname()}-scheduler", "namespace": NAMESPACE}}
    rest = schemas.pop(f"{fullname()}-scheduler")
    assert rest["priorityLevelConfiguration"] == {"name": "workload-high"}
    assert rest["rules"][0]["subjects"] == [account]
    if leader:
        election = schemas.pop(f"{fullname()}-scheduler-leader-election")
        assert election["priorityLevelConfiguration"] == {"name": "leader-election"}
        assert election["matchingPrecedence"] < rest["matchingPrecedence"], "renewals are matched first"
        assert election["rules"][0]["subjects"] == [account]
        assert election["rules"][0]["resourceRules"][0]["namespaces"] == [NAMESPACE]
    assert schemas == {}
    off = objects(render({"scheduler": {"priorityAndFairness": False}}))
    assert find(off, "FlowSchema") == []
