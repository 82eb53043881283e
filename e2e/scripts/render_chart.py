"""Renders charts/fitsched as `helm install` would and prints its objects as JSON.

Used by the end-to-end harness (e2e/src/chart.rs) to install the chart's objects into a
test control plane. Rendering is the chart tests' own (charts/tests/conftest.py: Helm's
Go SDK through helm-python-sdk), so the objects tested are the objects users install.

    python render_chart.py '<values as JSON>' [KUBE_VERSION]   ->   {"objects": [...]}

KUBE_VERSION: the cluster's (the API server's gitVersion), which the chart reads for the
scheduler image's tag; default the newest the chart tests render for.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "charts" / "tests"))

from conftest import NAMESPACE, NEWEST_KUBE, RELEASE, objects, render  # noqa: E402

values = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
kube_version = sys.argv[2] if len(sys.argv) > 2 else NEWEST_KUBE
rendered = render(values, kube_version=kube_version)
json.dump({"release": RELEASE, "namespace": NAMESPACE, "objects": objects(rendered)}, sys.stdout)
