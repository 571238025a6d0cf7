"""The house's floors seen from outside: the production path loads no local-stack code, the speed-ups refuse a Beam
they were not verified on, and the workers' distribution carries the job and nothing local.

Each check runs in a fresh interpreter, since this test session itself applies the local speed-ups."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# what the production path must never load: the import-linter contract's own list, read from pyproject.toml
LOCAL_ONLY = tuple(next(
    c["forbidden_modules"] for c in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"] if c["type"] == "forbidden"))


def _python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


REPORT = """
import json, sys
from apache_beam.transforms import userstate
from apache_beam.runners.direct import transform_evaluator
loaded = sorted(m for m in sys.modules if m.startswith({local!r}))
print(json.dumps({{"loaded": loaded, "specs_patched": hasattr(userstate.get_dofn_specs, "__wrapped__"),
                  "pickler": transform_evaluator.pickler.__class__.__name__, "result": result}}))
"""


def _report(prelude: str) -> dict:
    return _python(prelude + REPORT.format(local=LOCAL_ONLY))


@pytest.mark.slow
def test_flex_launcher_and_production_graph_load_no_local_stack():
    got = _report("import infra.deploy.dataflow.main\n"
                  "from infra.deploy.dataflow import graph\n"
                  "pipeline, _ = graph.build_production_pipeline()\n"
                  "pipeline.to_runner_api()\n"
                  "result = None\n")
    assert got["loaded"] == []
    assert got["specs_patched"] is False  # Beam's own
    assert got["pickler"] == "module"


def test_speedups_refuse_a_beam_they_were_not_verified_on():
    got = _report("import logging\nlogging.basicConfig(level=logging.WARNING)\n"
                  "from infra.local import speedups\n"
                  "result = speedups.apply(beam_version='2.99.0')\n")
    assert got["result"] is False
    assert "infra.local.direct" not in got["loaded"]  # its Beam-private bindings never even imported
    assert got["specs_patched"] is False


def test_speedups_apply_on_the_verified_beam():
    got = _report("from infra.local import speedups\nresult = speedups.apply()\n")
    assert got["result"] is True
    assert got["specs_patched"] is True
    assert got["pickler"] == "_PicklerSerializingOnce"


def test_speedups_stay_off_for_dataflow_command_lines():
    from infra.local.speedups import is_dataflow

    assert is_dataflow(["--runner=DataflowRunner", "--project=p"])
    assert is_dataflow(["--runner", "dataflow"])
    assert not is_dataflow(["--input_file=x.jsonl", "--runner=DirectRunner"])
    assert not is_dataflow([])


@pytest.mark.slow
def test_worker_distribution_holds_the_job_and_nothing_local(tmp_path):
    # What Beam's --setup_file does on Dataflow: an sdist of setup.py, installed on every worker.
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
                    "sdist", "--dist-dir", str(tmp_path)], cwd=REPO, check=True, capture_output=True, timeout=300)
    (archive,) = tmp_path.glob("leadflow-*.tar.gz")
    with tarfile.open(archive) as tar:
        files = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("pipelines/lead_pipeline.py", "pipelines/graph.py", "pipelines/io.py", "pipelines/ops/replay.py",
                   "transforms/parse.py", "scoring/handlers.py", "schemas/bigquery.py",
                   "transforms/reference_data/agents.csv", "schemas/views/speed_to_lead.sql"):
        assert needed in files, needed
    for local in ("infra/local/", "infra/deploy/", "pipelines/dev/", "pipelines/synthetic/"):
        assert not [f for f in files if f.startswith(local)], local
