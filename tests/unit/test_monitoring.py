"""Cloud Monitoring agrees with the code: every counter an alert names is a ``Metrics.counter`` the pipeline defines
(found by reading the source, as Dataflow would export it), every PromQL selector reads only those counters, the
Terraform turns every generated alert into a policy, and the runbook says what to do for each alert."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import hcl2

from infra.deploy import monitoring, terraform_gen
from infra.deploy.monitoring import ALERTS, Counter

REPO = Path(__file__).resolve().parents[2]
CODE = ("transforms", "pipelines", "scoring")


def _module_constants(tree: ast.Module, module) -> dict[str, object]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if hasattr(module, name):
                out[name] = getattr(module, name)
    for node in tree.body:  # imported names (OUTCOMES from transforms.identity, ...)
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                name = alias.asname or alias.name
                if hasattr(module, name):
                    out.setdefault(name, getattr(module, name))
    return out


class _Module:
    """One source module: its constants, classes, and which class each node sits in."""

    def __init__(self, path: Path):
        text = path.read_text(encoding="utf-8")
        self.tree = ast.parse(text)
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
        self.constants = _module_constants(self.tree, module)
        self.classes = {c.name: c for c in self.tree.body if isinstance(c, ast.ClassDef)}
        self.owner: dict[int, str] = {}
        for c in self.classes.values():
            for node in ast.walk(c):
                self.owner[id(node)] = c.name
        self.loops: dict[str, ast.AST] = {}
        for comp in ast.walk(self.tree):
            if isinstance(comp, ast.DictComp | ast.ListComp | ast.SetComp | ast.GeneratorExp):
                for gen in comp.generators:
                    if isinstance(gen.target, ast.Name):
                        self.loops[gen.target.id] = gen.iter

    def values(self, node: ast.AST) -> set[str]:
        """The strings a counter argument can be: a literal, a module constant, a comprehension variable over a
        constant tuple, or ``self._namespace`` (what the class is constructed with, followed to its callers)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Name) and node.id in self.loops:
            it = self.loops[node.id]
            assert isinstance(it, ast.Name) and isinstance(self.constants.get(it.id), tuple | list), ast.unparse(it)
            return set(self.constants[it.id])
        if isinstance(node, ast.Name) and isinstance(self.constants.get(node.id), str):
            return {self.constants[node.id]}
        if isinstance(node, ast.Attribute) and node.attr == "_namespace" and id(node) in self.owner:
            return self.namespace_of(self.owner[id(node)])
        raise AssertionError(f"counter argument the scan cannot resolve: {ast.unparse(node)}")

    def _init(self, name: str) -> ast.FunctionDef | None:
        cls = self.classes.get(name)
        while cls is not None:
            for f in cls.body:
                if isinstance(f, ast.FunctionDef) and f.name == "__init__":
                    return f
            cls = next((self.classes[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in self.classes),
                       None)
        return None

    def namespace_of(self, name: str) -> set[str]:
        """The namespaces instances of ``name`` or its subclasses are made with in this module."""
        out: set[str] = set()
        family = {name} | {c for c, d in self.classes.items() if any(getattr(b, "id", None) == name for b in d.bases)}
        for cls in family:
            init = self._init(cls)
            params = [a.arg for a in init.args.args[1:]]
            defaults = dict(zip(params[len(params) - len(init.args.defaults):], init.args.defaults, strict=True))
            defaults |= {a.arg: d for a, d in zip(init.args.kwonlyargs, init.args.kw_defaults, strict=True) if d}
            if "namespace" in defaults:
                out |= self.values(defaults["namespace"])
            for call in ast.walk(self.tree):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == cls:
                    given = {k.arg: k.value for k in call.keywords} | dict(zip(params, call.args, strict=False))
                    if "namespace" in given:
                        out |= self.values(given["namespace"])
        assert out, f"no namespace found for {name}"
        return out


def code_counters() -> set[Counter]:
    found = set()
    for package in CODE:
        for path in sorted((REPO / package).rglob("*.py")):
            if "Metrics.counter" not in path.read_text(encoding="utf-8"):
                continue
            mod = _Module(path)
            for call in ast.walk(mod.tree):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "counter"
                        and isinstance(call.func.value, ast.Name) and call.func.value.id == "Metrics"):
                    found |= {Counter(ns, n) for ns in mod.values(call.args[0]) for n in mod.values(call.args[1])}
    return found


def test_the_scan_finds_the_counters_the_code_defines():
    counters = code_counters()
    assert Counter("parse", "dead_letters") in counters and Counter("dedup", "cross_source") in counters
    assert Counter("leadflow.scoring", "scored_by_fallback") in counters  # a namespace passed as a default
    assert Counter("parse", "no_such_counter") not in counters
    assert len(counters) > 25


def test_every_counter_an_alert_names_exists_in_the_code():
    counters = code_counters()
    for alert in ALERTS:
        missing = set(alert.counters) - counters
        assert not missing, f"{alert.key} names counters the code does not define: {missing}"


def test_each_promql_selector_reads_exactly_the_counters_the_alert_names():
    """The namespace is not a Cloud Monitoring label: a metric_name selects every counter of that name, so an alert
    must list (and mean) all of them, and must read no name it does not list."""
    counters = code_counters()
    for alert in ALERTS:
        if alert.promql is None:
            assert alert.metric_filter and not alert.counters, alert.key
            continue
        selected = set(re.findall(r'metric_name="([a-z_]+)"', alert.promql))
        assert selected == {c.name for c in alert.counters}, alert.key
        assert {c for c in counters if c.name in selected} == set(alert.counters), alert.key
        assert alert.promql.count("(") == alert.promql.count(")") and monitoring.JOB in alert.promql, alert.key


def test_system_metric_alerts_watch_the_job_and_the_input_subscription():
    filters = {a.key: a.metric_filter for a in ALERTS if a.metric_filter}
    assert set(filters) == {"data_freshness", "system_lag", "input_backlog_age"}
    assert 'resource.labels.job_name = "__JOB_NAME__"' in filters["data_freshness"]
    from schemas.resources import INPUT_SUBSCRIPTION, SUBSCRIPTIONS

    assert INPUT_SUBSCRIPTION in SUBSCRIPTIONS
    assert f'resource.labels.subscription_id = "{INPUT_SUBSCRIPTION}"' in filters["input_backlog_age"]


def test_terraform_makes_a_policy_per_generated_alert_and_the_dashboard():
    generated = json.loads(terraform_gen.GENERATED_PATH.read_text())
    assert generated["alerts"] == monitoring.alerts() and generated["monitoring_dashboard"] == monitoring.dashboard()
    with (terraform_gen.TERRAFORM_DIR / "monitoring.tf").open() as f:
        doc = hcl2.load(f)
    resources = {(t, n): body for block in doc["resource"] for t, named in block.items() for n, body in named.items()}
    policy = resources[('"google_monitoring_alert_policy"', '"leadflow"')]
    assert policy["for_each"] == "${local.generated.alerts}"
    assert "google_monitoring_dashboard" in str(resources)
    titles = [t["widget"]["title"] for t in generated["monitoring_dashboard"]["mosaicLayout"]["tiles"]]
    assert len(titles) == len(ALERTS) + 1


def test_the_runbook_says_what_to_do_for_each_alert():
    runbook = (REPO / "docs" / "runbook.md").read_text()
    for alert in ALERTS:
        m = re.search(rf"^### alert: {alert.key}\n(.*?)(?=^##)", runbook, re.M | re.S)
        assert m, f"docs/runbook.md has no '### alert: {alert.key}' entry"
        assert len(m.group(1).strip()) > 200, alert.key
