"""Renders charts/fitsched as `helm install` would and prints its objects as JSON.

Used by the end-to-end harness (e2e/src/chart.rs) to install the chart's objects into a
test control plane. Rendering is the chart tests' own (charts/tests/conftest.py: Helm's
Go SDK through helm-python-sdk), so the objects tested are the objects users install.

    python render_chart.py '<values as JSON>'   ->   {"objects": [...]}
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "charts" / "tests"))

from conftest import NAMESPACE, RELEASE, objects, render  # noqa: E402

values = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
json.dump({"release": RELEASE, "namespace": NAMESPACE, "objects": objects(render(values))}, sys.stdout)
