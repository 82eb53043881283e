"""The second scheduler: its KubeSchedulerConfiguration is valid against the
kubescheduler.config.k8s.io/v1 schema, is what templates/policy.yaml prints for a
scheduler of an operator's own, and points at verbs the real shim serves on the port it
listens on."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import (
    FIXTURES,
    NAMESPACE,
    OLDEST_KUBE,
    SCHEMAS,
    bin_path,
    container,
    duration_ms,
    flag,
    fullname,
    load_values,
    merged,
    objects,
    one,
    render,
    scheduler_config,
)

SCHEMA = json.loads((SCHEMAS / "kubescheduler.config.k8s.io_v1_KubeSchedulerConfiguration.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
VARIANTS = load_values("variants")
CONFIGS = {
    "default": None,
    "full": load_values("full"),
    "no-leader-election": VARIANTS["no-leader-election"],
    "filter-and-prioritize-off": VARIANTS["filter-and-prioritize-off"],
    "pack-without-strategy-profiles": VARIANTS["pack-without-strategy-profiles"],
    "filter-rule": VARIANTS["filter-rule"],
}
STRATEGIES = ["spread", "pack", "balanced"]


def schema_errors(cfg: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(cfg)]


def test_schema_accepts_the_configurations_kube_scheduler_ran_with():
    """Sanity of the hand-written schema: the configs of the real captures pass."""
    for mode in ("names", "full"):
        cfg = yaml.safe_load((FIXTURES / mode / "scheduler-config.yaml").read_text())
        assert schema_errors(cfg) == [], mode


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda c: c["extenders"][0].update(weigth=3), "Additional properties"),
        (lambda c: c["extenders"][0].update(weight=0), "less than the minimum"),
        (lambda c: c["extenders"][0].update(weight="5"), "is not of type 'integer'"),
        (lambda c: c["extenders"][0].update(httpTimeout="2 seconds"), "does not match"),
        (lambda c: c["extenders"][0].pop("urlPrefix"), "'urlPrefix' is a required property"),
        (lambda c: c.update(apiVersion="kubescheduler.config.k8s.io/v1beta3"), "was expected"),
        (lambda c: c["leaderElection"].update(leaderElection=True), "Additional properties"),
        (lambda c: c["profiles"][0].update(plugins={"scores": {}}), "Additional properties"),
    ],
)
def test_schema_refuses_what_kube_scheduler_refuses(mutate, expected):
    _, cfg = scheduler_config(objects(render()))
    mutate(cfg)
    errors = schema_errors(cfg)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rendered_configuration_is_valid_and_wired(name):
    values = CONFIGS[name]
    v = merged(values)
    objs = objects(render(values))
    _, cfg = scheduler_config(objs)
    assert schema_errors(cfg) == []

    name = v["scheduler"]["name"]
    extra = [f"{name}-{s}" for s in STRATEGIES] if v["scheduler"]["strategyProfiles"] else []
    assert [p["schedulerName"] for p in cfg["profiles"]] == [name, *extra]
    le = cfg["leaderElection"]
    if v["scheduler"]["leaderElection"]["enabled"]:
        assert le["leaderElect"] is True and le["resourceLock"] == "leases"
        assert le["resourceName"] != "kube-scheduler", "its own Lease, not the default scheduler's"
        assert le["resourceName"] == (v["scheduler"]["leaderElection"]["leaseName"] or f"{fullname()}-scheduler")
        assert le["resourceNamespace"] == NAMESPACE
    else:
        assert le == {"leaderElect": False}
    # In-cluster credentials (no kubeconfig), and a rate limit that does not cap binding.
    conn = v["scheduler"]["clientConnection"]
    assert cfg["clientConnection"] == {"qps": conn["qps"], "burst": conn["burst"]}

    assert len(cfg["extenders"]) == 1
    ext = cfg["extenders"][0]
    e = v["extender"]
    assert ext.get("filterVerb", "") == (e["filterVerb"] if filter_rule(v) else "")
    assert ext.get("prioritizeVerb", "") == e["prioritizeVerb"]
    assert ext.get("bindVerb", "") == e["bindVerb"]
    assert ext["weight"] == e["weight"] and isinstance(ext["weight"], int)
    assert ext["nodeCacheCapable"] is e["nodeCacheCapable"]
    assert ext["ignorable"] is e["ignorable"]
    assert ext["httpTimeout"] == e["httpTimeout"]

    # The extender is the shim beside kube-scheduler, on the port the shim listens on.
    scheduler = one(objs, "Deployment", f"{fullname()}-scheduler")
    pod = scheduler["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["kube-scheduler"]
    # A native sidecar: running (and, with exposeMetrics, answering) before kube-scheduler
    # starts, so no pod is scheduled while the extender cannot answer.
    assert [(c["name"], c["restartPolicy"]) for c in pod["initContainers"]] == [("shim", "Always")]
    shim = container(objs, "Deployment", scheduler["metadata"]["name"], "shim")
    host, port = flag(shim, "listen").rsplit(":", 1)
    assert ext["urlPrefix"] == f"http://127.0.0.1:{port}"
    assert host == "127.0.0.1", "only the kube-scheduler beside the shim may call its verbs"
    assert shim["ports"][0]["containerPort"] == int(port)
    assert flag(shim, "scorer").endswith(f"{fullname()}-scorer.{NAMESPACE}.svc:{v['scorer']['grpcPort']}")
    # The shim answers (neutrally if need be) well before kube-scheduler stops waiting.
    assert 2 * duration_ms(flag(shim, "deadline")) <= duration_ms(ext["httpTimeout"])
    if ext.get("bindVerb"):
        assert duration_ms(flag(shim, "bind-deadline")) + 500 <= duration_ms(ext["httpTimeout"])

    # kube-scheduler reads this very ConfigMap.
    ks = container(objs, "Deployment", scheduler["metadata"]["name"], "kube-scheduler")
    config_path = next(a for a in ks["args"] if a.startswith("--config=")).split("=", 1)[1]
    mount = next(m for m in ks["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    vol = next(x for x in pod["volumes"] if x["name"] == mount["name"])
    assert vol["configMap"]["name"] == f"{fullname()}-scheduler"
    assert config_path.rsplit("/", 1)[1] == "scheduler-config.yaml"


def test_before_native_sidecars_the_shim_is_a_plain_container():
    objs = objects(render(kube_version=OLDEST_KUBE))
    pod = one(objs, "Deployment", f"{fullname()}-scheduler")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["kube-scheduler", "shim"]
    assert "initContainers" not in pod
    assert all("restartPolicy" not in c for c in pod["containers"])


@pytest.mark.parametrize(
    "server,tag",
    [("1.36.2", "v1.36.2"), ("v1.30.4-eks-a737599", "v1.30.4"), ("v1.29.6+k3s1", "v1.29.6"), ("1.33.1-gke.1", "v1.33.1")],
)
def test_scheduler_image_follows_the_cluster_version(server, tag):
    ks = container(objects(render(kube_version=server)), "Deployment", f"{fullname()}-scheduler", "kube-scheduler")
    assert ks["image"] == f"registry.k8s.io/kube-scheduler:{tag}"
    pinned = objects(render({"scheduler": {"image": {"tag": "v1.31.0"}}}, kube_version=server))
    assert container(pinned, "Deployment", f"{fullname()}-scheduler", "kube-scheduler")["image"].endswith(":v1.31.0")


def filter_rule(v: dict[str, Any]) -> bool:
    return any(v["scorer"]["filter"].get(k) is not None for k in ("minFitness", "maxPsiMemoryFull"))


def policy(values: dict[str, Any] | None, printed: str) -> tuple[str, dict[str, Any] | None]:
    """templates/policy.yaml rendered with `values` and policy.print=`printed`."""
    v = {**(values or {}), "policy": {"print": printed}}
    text = render(v)["fitsched/templates/policy.yaml"]
    return text, yaml.safe_load(text)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_printed_policy_is_the_charts_own_configuration(name):
    """One source: what policy.yaml prints for a scheduler of your own is the document the
    chart's scheduler runs, from the same helpers, for the same values."""
    values = CONFIGS[name]
    _, cfg = scheduler_config(objects(render(values)))
    _, full = policy(values, "full")
    assert full == cfg
    _, entry = policy(values, "extenders")
    assert entry == {"extenders": cfg["extenders"]}


def test_nothing_is_printed_unless_asked_for():
    assert render()["fitsched/templates/policy.yaml"].strip() == ""


def test_the_policy_for_a_kubeadm_scheduler():
    """The README's values for the cluster's own kube-scheduler: its profile, Lease and
    kubeconfig as kubeadm sets them up, the shim at an address of the operator's."""
    values = {
        "scheduler": {
            "name": "default-scheduler",
            "strategyProfiles": True,
            "leaderElection": {"leaseName": "kube-scheduler", "leaseNamespace": "kube-system"},
            "clientConnection": {"kubeconfig": "/etc/kubernetes/scheduler.conf"},
        },
        "extender": {"urlPrefix": "http://127.0.0.1:8080/"},
    }
    text, full = policy(values, "full")
    assert schema_errors(full) == []
    assert full["leaderElection"] == {
        "leaderElect": True,
        "resourceLock": "leases",
        "resourceName": "kube-scheduler",
        "resourceNamespace": "kube-system",
    }
    assert full["clientConnection"]["kubeconfig"] == "/etc/kubernetes/scheduler.conf"
    assert full["extenders"][0]["urlPrefix"] == "http://127.0.0.1:8080"
    assert [p["schedulerName"] for p in full["profiles"]] == [
        "default-scheduler",
        *(f"default-scheduler-{s}" for s in STRATEGIES),
    ]
    # The shim beside it needs each profile's strategy: the comment names the flags.
    for p in full["profiles"]:
        assert f"--profile-strategy={p['schedulerName']}=" in text
    # Without a scorer filter rule kube-scheduler is not asked to filter (a wasted call).
    assert "filterVerb" not in full["extenders"][0]
    _, filtered = policy({**values, "scorer": {"filter": {"maxPsiMemoryFull": 0.1}}}, "extenders")
    assert filtered["extenders"][0]["filterVerb"] == "filter"


# ---- profiles: one per strategy ------------------------------------------------------


def plugin_args(profile: dict[str, Any], plugin: str) -> dict[str, Any] | None:
    found = [c["args"] for c in profile.get("pluginConfig", []) if c["name"] == plugin]
    assert len(found) <= 1, f"{plugin} configured twice in {profile['schedulerName']}"
    return found[0] if found else None


def assert_pack_profile(p: dict[str, Any], percentage: int = 100) -> None:
    """kube-scheduler's own plugins agree with pack: fuller nodes first, a workload's pods
    not spread, no evenness bonus, and every feasible node a candidate (by default)."""
    assert p["percentageOfNodesToScore"] == percentage
    fit = plugin_args(p, "NodeResourcesFit")
    assert fit == {
        "scoringStrategy": {
            "type": "MostAllocated",
            "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}],
        }
    }
    spread = plugin_args(p, "PodTopologySpread")
    assert spread == {"defaultingType": "List"}, "no defaultConstraints: owned pods are not spread"
    assert p["plugins"] == {"score": {"disabled": [{"name": "NodeResourcesBalancedAllocation"}]}}


def assert_spread_profile(p: dict[str, Any]) -> None:
    """kube-scheduler's own topology spread keeps a workload's replicas one per node in a
    burst (its cache sees the replicas it has just assumed), weighted above the extender's
    10 x 5; zones are left to the extender."""
    assert p["plugins"] == {"score": {"enabled": [{"name": "PodTopologySpread", "weight": 10}]}}
    assert plugin_args(p, "PodTopologySpread") == {
        "defaultingType": "List",
        "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
    }
    assert set(p) == {"schedulerName", "plugins", "pluginConfig"}, p


def assert_default_profile(p: dict[str, Any]) -> None:
    """kube-scheduler's defaults (its system default topology spread spreads owned pods)."""
    assert set(p) == {"schedulerName"}, p


@pytest.mark.parametrize("default_strategy", STRATEGIES)
def test_one_profile_per_strategy(default_strategy):
    objs = objects(render({"scorer": {"defaultStrategy": default_strategy}}))
    _, cfg = scheduler_config(objs)
    assert schema_errors(cfg) == []
    profiles = {p["schedulerName"]: p for p in cfg["profiles"]}
    assert list(profiles) == ["fitsched", "fitsched-spread", "fitsched-pack", "fitsched-balanced"]
    strategy_of = {"fitsched": default_strategy, **{f"fitsched-{s}": s for s in STRATEGIES}}
    for name, strategy in strategy_of.items():
        check = {"pack": assert_pack_profile, "spread": assert_spread_profile}.get(strategy, assert_default_profile)
        check(profiles[name])
    # The shim maps each profile to its strategy, the main profile included.
    shim = container(objs, "Deployment", f"{fullname()}-scheduler", "shim")
    mapping = [a.split("=", 1)[1] for a in shim["args"] if a.startswith("--profile-strategy=")]
    assert mapping == [f"{n}={s}" for n, s in strategy_of.items()]


def test_strategy_profiles_off_renders_one_profile():
    values = {
        "scheduler": {"name": "fs-sched", "strategyProfiles": False, "packPercentageOfNodesToScore": 40},
        "scorer": {"defaultStrategy": "pack"},
    }
    objs = objects(render(values))
    _, cfg = scheduler_config(objs)
    assert schema_errors(cfg) == []
    assert [p["schedulerName"] for p in cfg["profiles"]] == ["fs-sched"]
    assert_pack_profile(cfg["profiles"][0], percentage=40)
    shim = container(objs, "Deployment", f"{fullname()}-scheduler", "shim")
    assert [a for a in shim["args"] if a.startswith("--profile-strategy")] == ["--profile-strategy=fs-sched=pack"]


@pytest.mark.parametrize(
    "scorer_filter,filter_verb,expected",
    [
        ({}, "filter", None),
        ({"minFitness": 0.2}, "filter", "filter"),
        ({"minFitness": 0}, "filter", "filter"),
        ({"maxPsiMemoryFull": 0.1}, "filter", "filter"),
        ({"minFitness": 0.2, "maxPsiMemoryFull": 0.1}, "", None),
    ],
)
def test_filter_verb_only_with_a_filter_rule(scorer_filter, filter_verb, expected):
    values = {"scorer": {"filter": scorer_filter}, "extender": {"filterVerb": filter_verb}}
    _, cfg = scheduler_config(objects(render(values)))
    assert cfg["extenders"][0].get("filterVerb") == expected


# ---- the verbs, against the real shim -------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shim():
    """The real fitsched-shim, with no scorer behind it: it must answer every verb it
    serves (neutrally for filter and prioritize, with an Error for bind). It starts with
    the chart's profile-to-strategy args, which it must accept."""
    port, dead = free_port(), free_port()
    rendered = container(objects(render()), "Deployment", f"{fullname()}-scheduler", "shim")["args"]
    profile_args = [a for a in rendered if a.startswith("--profile-strategy=")]
    assert profile_args
    proc = subprocess.Popen(
        [str(bin_path("fitsched-shim")), "--listen", f"127.0.0.1:{port}", "--scorer", f"http://127.0.0.1:{dead}", "--deadline", "200ms", "--bind-deadline", "200ms", "--binder", "scorer-only", "--metrics-listen", "127.0.0.1:0", *profile_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fitsched-shim did not start: {proc.stderr.read().decode() if proc.poll() is not None else 'timeout'}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def post(url: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


FIXTURE_FILES = {
    ("names", "filter"): "001-filter-request.json",
    ("names", "prioritize"): "002-prioritize-request.json",
    ("names", "bind"): "003-bind-request.json",
    ("full", "filter"): "001-filter-request.json",
    ("full", "prioritize"): "002-prioritize-request.json",
    ("full", "bind"): "003-bind-request.json",
}


@pytest.mark.parametrize("name", ["default", "full"])
def test_extender_verbs_are_served_by_the_shim(shim, name):
    _, cfg = scheduler_config(objects(render(CONFIGS[name])))
    ext = cfg["extenders"][0]
    # The shim's own default port is the chart's.
    help_text = subprocess.run([str(bin_path("fitsched-shim")), "--help"], capture_output=True, text=True).stdout
    assert "[default: 127.0.0.1:8080]" in help_text and ext["urlPrefix"].endswith(":8080")
    mode = "names" if ext["nodeCacheCapable"] else "full"
    verbs = {k: ext[k] for k in ("filterVerb", "prioritizeVerb", "bindVerb") if ext.get(k)}
    assert verbs, "at least one verb"
    for key, verb in verbs.items():
        kind = key.removesuffix("Verb")
        body = (FIXTURES / mode / FIXTURE_FILES[(mode, kind)]).read_bytes()
        status, answer = post(f"{shim}/{verb}", body)
        assert status == 200, f"POST /{verb}: {status} {answer}"
        request = json.loads(body)
        if kind == "filter":
            passed = answer["NodeNames"] if mode == "names" else [n["metadata"]["name"] for n in answer["Nodes"]["items"]]
            wanted = request["NodeNames"] if mode == "names" else [n["metadata"]["name"] for n in request["Nodes"]["items"]]
            assert passed == wanted, "no scorer: every node passes"
            assert not answer.get("Error")
        elif kind == "prioritize":
            assert all(0 <= h["Score"] <= 10 for h in answer)
            assert len(answer) == len(request["NodeNames"] if mode == "names" else request["Nodes"]["items"])
        else:
            assert "fitsched" in answer["Error"], "no scorer: the bind is reported failed"
    status, _ = post(f"{shim}/no-such-verb", b"{}")
    assert status == 404, "a verb the shim does not serve is refused"
