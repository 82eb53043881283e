"""Shared helpers of the chart tests.

The chart is rendered with Helm's own Go SDK (helm-python-sdk, module ``helm_python``),
never with a ``helm`` binary. ``cargo xtask test`` runs these through ``chart::check()``,
which sets FITSCHED_BIN_DIR (the built fitsched binaries). The wire fixtures are the repository's own, in
``extender-shim/testdata/kube-scheduler-extender/``.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from helm_python import _native

TESTS = Path(__file__).resolve().parent
CHART = TESTS.parent / "fitsched"
WORKSPACE = TESTS.parent.parent
SCHEMAS = TESTS / "schemas"
FIXTURES = WORKSPACE / "extender-shim" / "testdata" / "kube-scheduler-extender"

RELEASE = "fs"
NAMESPACE = "fitsched"
# The newest Kubernetes whose API schemas kubernetes-validate ships, and the oldest the
# chart supports (Chart.yaml kubeVersion).
NEWEST_KUBE = "1.37.0"
OLDEST_KUBE = "1.27.0"
# What the Prometheus Operator's CRDs add to the API server's discovery.
PROMETHEUS_OPERATOR_APIS = [
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
]


def load_values(name: str) -> dict[str, Any]:
    """A values file of charts/tests/values/."""
    return yaml.safe_load((TESTS / "values" / f"{name}.yaml").read_text())


@lru_cache(maxsize=1)
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(
    values: dict[str, Any] | None = None,
    *,
    kube_version: str = NEWEST_KUBE,
    api_versions: list[str] | None = None,
) -> dict[str, str]:
    """Renders the chart as `helm install` would for this cluster version and API set.

    helm_python's ``Chart.render`` does not expose the ``kube_version`` and
    ``api_versions`` options that its native ``helm_render`` call takes (the same as
    ``helm template --kube-version --api-versions``); this calls it with them.
    """
    opts: dict[str, Any] = {
        "name": RELEASE,
        "namespace": NAMESPACE,
        "is_install": True,
        "kube_version": f"v{kube_version.lstrip('v')}",
    }
    if api_versions:
        opts["api_versions"] = api_versions
    out = _native.call_string(
        "helm_render",
        chart()._raw(),
        None if values is None else json.dumps(values),
        json.dumps(opts),
    )
    return json.loads(out)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render, NOTES.txt left out."""
    out = []
    for name, text in sorted(rendered.items()):
        if name.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(doc)
    return out


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def merged(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The chart's defaults coalesced with overrides, as an install sees them."""
    return chart().merge_values(copy.deepcopy(overrides) if overrides else None)


def fullname() -> str:
    return f"{RELEASE}-fitsched"


def scheduler_config(objs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The rendered KubeSchedulerConfiguration, as text and parsed."""
    cm = one(objs, "ConfigMap", f"{fullname()}-scheduler")
    text = cm["data"]["scheduler-config.yaml"]
    return text, yaml.safe_load(text)


def pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment and DaemonSet."""
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objs
        if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")
    ]


def container(objs: list[dict[str, Any]], kind: str, name: str, container_name: str) -> dict[str, Any]:
    spec = one(objs, kind, name)["spec"]["template"]["spec"]
    # Native sidecars (init containers that keep running) count as the pod's containers.
    matches = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container_name]
    assert matches, f"{kind}/{name} has no container {container_name}"
    return matches[0]


def flag(c: dict[str, Any], name: str) -> str | None:
    """The value of --name=value among a container's args."""
    for a in c.get("args", []):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def duration_ms(d: str) -> int:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    for unit in ("ms", "s", "m", "h"):
        if d.endswith(unit) and d[: -len(unit)].isdigit():
            return int(d[: -len(unit)]) * units[unit]
    raise ValueError(f"not a simple duration: {d!r}")


def bin_path(name: str) -> Path:
    """A built fitsched binary; skips when none is built and none was promised."""
    explicit = os.environ.get("FITSCHED_BIN_DIR")
    path = Path(explicit or WORKSPACE / "target" / "debug") / name
    if not path.is_file():
        if explicit:
            pytest.fail(f"{path} is missing: build the binaries first (cargo build --workspace --bins)")
        pytest.skip(f"{path} is not built (cargo build --workspace --bins)")
    return path
