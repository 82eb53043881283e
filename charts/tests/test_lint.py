"""`helm lint`, through Helm's own Go SDK, in strict mode (warnings fail)."""

from __future__ import annotations

import helm_python as helm
import pytest

from conftest import CHART, NEWEST_KUBE, OLDEST_KUBE, load_values

ERROR, WARNING = 3, 2


@pytest.mark.parametrize("kube", [OLDEST_KUBE, NEWEST_KUBE])
@pytest.mark.parametrize("values", [None, load_values("full")], ids=["default", "full"])
def test_helm_lint_is_clean(values, kube):
    report = helm.lint(CHART, values, strict=True, namespace="fitsched", kube_version=f"v{kube}")
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert report["errors"] == [] and problems == [], report
    assert report["total_charts_linted"] == 1


def test_helm_lint_reports_broken_values():
    """Lint does fail: values the schema refuses are reported as errors."""
    report = helm.lint(CHART, {"extender": {"weight": 0}}, strict=True, namespace="fitsched")
    found = [m for m in report["messages"] if m["severity"] >= ERROR] or report["errors"]
    assert found and "/extender/weight" in str(found), report


def test_kube_version_floor_matches_the_tests():
    """Chart.yaml's kubeVersion is the oldest version the objects are validated against
    (gRPC probes are GA from 1.27). The offline render does not enforce it; install does."""
    from conftest import chart

    assert chart().metadata["kubeVersion"] == f">={OLDEST_KUBE}-0"
