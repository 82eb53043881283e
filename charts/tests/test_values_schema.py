"""values.schema.json refuses bad values before anything renders, and says which field;
combinations the schema cannot express are refused by the templates, also by name."""

from __future__ import annotations

import helm_python as helm
import pytest

from conftest import chart, load_values, render

REFUSED = [
    # (values, the field the message must name, what it must say)
    ({"extender": {"weight": 0}}, "/extender/weight", "minimum"),
    ({"extender": {"weight": "5"}}, "/extender/weight", "want integer"),
    ({"extender": {"weight": 2.5}}, "/extender/weight", "want integer"),
    ({"extender": {"httpTimeout": "-1s"}}, "/extender/httpTimeout", "does not match pattern"),
    ({"extender": {"httpTimeout": 2}}, "/extender/httpTimeout", "want string"),
    ({"extender": {"httpTimeout": "0s"}}, "/extender/httpTimeout", "does not match pattern"),
    ({"extender": {"bindVerb": "bind-it"}}, "/extender/bindVerb", "must be one of"),
    ({"extender": {"nodeCacheCapable": "yes"}}, "/extender/nodeCacheCapable", "want boolean"),
    ({"extender": {"wieght": 3}}, "/extender", "additional properties 'wieght'"),
    ({"scorer": {"defaultStrategy": "sideways"}}, "/scorer/defaultStrategy", "must be one of"),
    ({"scorer": {"replicas": 2}}, "/scorer/replicas", "maximum"),
    ({"scorer": {"grpcPort": 70000}}, "/scorer/grpcPort", "maximum"),
    ({"scorer": {"filter": {"minFitness": 1.5}}}, "/scorer/filter/minFitness", "maximum"),
    ({"shim": {"deadline": "fast"}}, "/shim/deadline", "does not match pattern"),
    ({"agent": {"perf": {"capability": "NET_ADMIN"}}}, "/agent/perf/capability", "must be one of"),
    ({"agent": {"resources": {"limits": None}}}, "/agent/resources", "missing property 'limits'"),
    ({"scorer": {"resources": {"limits": {"memory": None}}}}, "/scorer/resources/limits", "missing property 'memory'"),
    ({"shim": {"resources": {"requests": {"cpu": "lots"}}}}, "/shim/resources/requests/cpu", "does not match pattern"),
    ({"scheduler": {"name": "Fit Sched"}}, "/scheduler/name", "does not match pattern"),
    ({"bench": {"strategy": "sideways"}}, "/bench/strategy", "must be one of"),
    ({"window": "20"}, "/window", "does not match pattern"),
    ({"unknown": True}, "additional properties 'unknown'", ""),
]


@pytest.mark.parametrize("values,field,says", REFUSED, ids=[r[1] + ":" + repr(r[0]) for r in REFUSED])
def test_invalid_values_are_refused_with_the_field_named(values, field, says):
    with pytest.raises(helm.HelmValuesError) as schema_error:
        chart().validate_schema(values)
    message = str(schema_error.value)
    assert field in message and says in message, message
    # `helm install` (the render) refuses the same values, with the same message.
    with pytest.raises(helm.HelmValuesError) as render_error:
        render(values)
    assert field in str(render_error.value)


@pytest.mark.parametrize("values", [None, load_values("full")], ids=["default", "full"])
def test_valid_values_pass(values):
    chart().validate_schema(values)


TEMPLATE_REFUSALS = [
    ({"shim": {"deadline": "1500ms"}}, "shim.deadline (1500ms) must be at most half of extender.httpTimeout (2s)"),
    ({"extender": {"bindVerb": "bind", "httpTimeout": "1s"}, "shim": {"bindDeadline": "1s", "deadline": "300ms"}},
     "shim.bindDeadline (1s) must be at least 500ms below extender.httpTimeout (1s)"),
    ({"extender": {"bindVerb": "bind", "httpTimeout": "2s"}, "shim": {"bindDeadline": "1600ms", "deadline": "300ms"}},
     "shim.bindDeadline (1600ms) must be at least 500ms below extender.httpTimeout (2s)"),
    ({"tls": {"enabled": True}}, "tls.secretName must name a Secret"),
    ({"scorer": {"model": {"existingConfigMap": "m", "onnxBase64": "AAAA"}}}, "scorer.model.existingConfigMap"),
    ({"agent": {"hostNetwork": True}}, "networkPolicy.extraScorerIngressFrom"),
    ({"scheduler": {"replicas": 2, "leaderElection": {"enabled": False}}}, "scheduler.replicas above 1 needs"),
]


@pytest.mark.parametrize("values,message", TEMPLATE_REFUSALS, ids=[m.split(" ")[0] for _, m in TEMPLATE_REFUSALS])
def test_inconsistent_values_are_refused_by_the_templates(values, message):
    chart().validate_schema(values)  # each value alone is fine
    with pytest.raises(helm.HelmRenderError) as e:
        render(values)
    assert message in str(e.value)
