"""The production job graph, built and inspected locally without submitting it.

    python -m infra.deploy.dataflow.graph              # print the stateful steps and the sinks of the production graph
    python -m infra.deploy.dataflow.graph --check      # exit 1 when stateful_steps.txt differs from the graph
    python -m infra.deploy.dataflow.graph --regen      # rewrite infra/deploy/dataflow/stateful_steps.txt from the graph

Dataflow submission cannot be exercised offline (even ``--dry_run`` with ``--dataflow_job_file`` tries Cloud
Storage), so ``build_production_pipeline`` stops after ``pipelines.lead_pipeline.build``: the caller inspects
``pipeline.to_runner_api()``. ``--dry_run=True`` is passed only so Beam's option validation skips its Cloud Storage
soft-delete check (a network call); nothing is run.

Why stateful step names are pinned: ``--update`` replaces a running streaming job and carries each step's state
(dedup state, timers) over to the step of the *same name* in the new graph. A renamed stateful step (a new label, a
wrapped composite, a renamed DoFn class when its label is Beam's default ``ParDo(ClassName)``) makes Dataflow reject
the update, or, with a ``--transform_name_mapping`` that forgets it, start that step with empty state. So the names
are listed in ``stateful_steps.txt`` and ``tests/pipeline/test_production_graph.py`` fails when they change. When a
change is intended: regenerate the file (``--regen``) and update the running job with the old -> new names in
``--transform_name_mapping`` (docs/runbook.md, "Update a running job").
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.resources import Resources

STATEFUL_STEPS_PATH = Path(__file__).resolve().parent / "stateful_steps.txt"
PROJECT = "leadflow-prod"
REGION = "us-central1"
RESOURCES = Resources(PROJECT)  # the same topic and subscription names as Terraform
DATASET = RESOURCES.bq_dataset
PRODUCTION_ARGS = (
    "--runner=DataflowRunner",
    f"--project={PROJECT}",
    f"--region={REGION}",
    f"--temp_location=gs://{PROJECT}-dataflow/tmp",
    "--streaming",
    *RESOURCES.pipeline_args(),
    "--bq_backend=beam",
    "--scorer=bentoml",
    "--scorer_url=https://scorer.example",
    f"--identity_store={RESOURCES.identity_store()}",
)
# Beam only skips its Cloud Storage soft-delete probe of temp_location in dry-run mode; the pipeline is never run.
OFFLINE_ARGS = ("--dry_run=True",)

WRITE_TO_BIGQUERY_URN = "beam:transform:write_to_big_query:v0"  # Beam's WriteToBigQuery; payload: its config
# Labels Beam derives from code locations or object ids: they change when a line moves, so never on a stateful step.
_UNSTABLE_LABEL = re.compile(r"<lambda|<function|<locals>| at 0x[0-9a-f]+|\.py:\d+|\bline \d+")

_HEADER = """\
# Stateful steps of the production Leadflow graph (ParDos with state or timers), one full step name a line.
#
# Dataflow's --update carries a step's state (dedup state, timers, assignments) to the step of the SAME NAME in
# the replacement job. Renaming one of these steps (its label, an enclosing composite's label, or the DoFn class
# when the label is Beam's default "ParDo(ClassName)") breaks --update or silently drops that step's state.
# tests/pipeline/test_production_graph.py fails when this list and the graph disagree.
#
# Changing a name on purpose: regenerate with  python -m infra.deploy.dataflow.graph --regen  and update running jobs
# with --transform_name_mapping='{"<old name>": "<new name>"}' (docs/runbook.md, "Update a running job").
"""


@dataclass(frozen=True)
class Step:
    """A transform of the runner-API graph."""

    name: str
    urn: str
    fn_class: str | None = None  # fully qualified class of a ParDo's DoFn (wrappers unwrapped)
    transform_class: str | None = None  # for pickled Python transforms (ReadFromPubSub, WriteToPubSub)
    state: tuple[str, ...] = ()
    timers: tuple[str, ...] = ()
    detail: Any = field(default=None, compare=False, repr=False)  # the unpickled transform / WriteToBigQuery config

    @property
    def stateful(self) -> bool:
        return bool(self.state or self.timers)


def production_args(extra: Iterable[str] = ()) -> list[str]:
    return [*PRODUCTION_ARGS, *OFFLINE_ARGS, *extra]


def production_options(extra: Iterable[str] = ()):
    """PipelineOptions as the Flex Template launcher would pass them, validated and with Dataflow defaults."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.dataflow import apply_dataflow_defaults
    from pipelines.options import LeadflowOptions

    options = PipelineOptions(production_args(extra))
    options.view_as(LeadflowOptions).validate_leadflow()
    apply_dataflow_defaults(options)
    return options


def build_production_pipeline(extra: Iterable[str] = ()):
    """The production pipeline, built (``lead_pipeline.build``) but never run. Returns (pipeline, options)."""
    import apache_beam as beam

    from pipelines import lead_pipeline
    from pipelines.options import LeadflowOptions

    options = production_options(extra)
    pipeline = beam.Pipeline(options=options)
    lead_pipeline.build(pipeline, options.view_as(LeadflowOptions))
    return pipeline, options


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _unwrap_fn(fn: object) -> object:
    """Beam wraps DoFns (exception handling, ...); the class that matters is the innermost ``fn``."""
    seen = 0
    while seen < 5 and type(fn).__name__.startswith("_") and hasattr(fn, "fn") and fn.fn is not fn:
        fn = fn.fn
        seen += 1
    return fn


def steps(proto) -> Iterator[Step]:
    """Every transform of a ``beam_runner_api_pb2.Pipeline``: ParDos with their DoFn class and state/timer names,
    pickled Python transforms (Beam's ReadFromPubSub / WriteToPubSub) with their class."""
    from apache_beam.internal import pickler
    from apache_beam.portability import common_urns, python_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    for t in proto.components.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
            fn_class = None
            if payload.do_fn.urn == python_urns.PICKLED_DOFN_INFO:
                fn_class = _qualname(_unwrap_fn(pickler.loads(payload.do_fn.payload)[0]))
            yield Step(t.unique_name, t.spec.urn, fn_class=fn_class, state=tuple(sorted(payload.state_specs)),
                       timers=tuple(sorted(payload.timer_family_specs)))
        elif t.spec.urn == python_urns.PICKLED_TRANSFORM:
            transform = pickler.loads(t.spec.payload)
            yield Step(t.unique_name, t.spec.urn, transform_class=_qualname(transform), detail=transform)
        elif t.spec.urn == WRITE_TO_BIGQUERY_URN:
            yield Step(t.unique_name, t.spec.urn, detail=pickler.loads(t.spec.payload))
        else:
            yield Step(t.unique_name, t.spec.urn)


def stateful_steps(proto) -> list[Step]:
    return sorted((s for s in steps(proto) if s.stateful), key=lambda s: s.name)


def unstable_names(names: Iterable[str]) -> list[str]:
    """Step names carrying a label Beam derived from a code location (lambda, line number, object id)."""
    return [n for n in names if _UNSTABLE_LABEL.search(n)]


def read_pinned(path: Path = STATEFUL_STEPS_PATH) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def render_pinned(names: Iterable[str]) -> str:
    return _HEADER + "".join(f"{n}\n" for n in sorted(names))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.deploy.dataflow.graph", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--regen", action="store_true", help=f"rewrite {STATEFUL_STEPS_PATH.name} from the graph")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when {STATEFUL_STEPS_PATH.name} is stale")
    args = ap.parse_args(argv)
    pipeline, _ = build_production_pipeline()
    proto = pipeline.to_runner_api()
    stateful = stateful_steps(proto)
    names = [s.name for s in stateful]
    bad = unstable_names(names)
    if bad:
        print("stateful steps with labels derived from code locations (give them explicit labels):\n  "
              + "\n  ".join(bad), file=sys.stderr)
        return 1
    if args.regen:
        STATEFUL_STEPS_PATH.write_text(render_pinned(names))
        print(f"wrote {STATEFUL_STEPS_PATH} ({len(names)} stateful steps)")
        return 0
    if args.check:
        pinned = read_pinned()
        if sorted(pinned) != sorted(names):
            print(f"{STATEFUL_STEPS_PATH} is stale:\n  pinned only: {sorted(set(pinned) - set(names))}\n"
                  f"  graph only:  {sorted(set(names) - set(pinned))}", file=sys.stderr)
            return 1
        print(f"{STATEFUL_STEPS_PATH} matches the graph ({len(names)} stateful steps)")
        return 0
    for s in stateful:
        print(f"{s.name}\n    {s.fn_class}  state={list(s.state)} timers={list(s.timers)}")
    for s in steps(proto):
        if s.urn == WRITE_TO_BIGQUERY_URN:
            print(f"sink: {s.name}  WriteToBigQuery {s.detail['table']} ({s.detail['method']})")
        elif s.transform_class and ".pubsub." in s.transform_class:
            print(f"pubsub: {s.name}  {s.transform_class.rsplit('.', 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
