"""Dataflow settings the pipeline sets for itself, so a production launch needs no hand-tuned flags.

``apply_dataflow_defaults(options)`` is called by ``pipelines.lead_pipeline.run`` before the graph is built. It
does nothing unless the runner is ``DataflowRunner``; then it fills in, only where the user (command line,
Flex Template parameter or code) left the option unset:

=========================== ============================================================================
``streaming``               on when the job reads Pub/Sub (``--input_subscription``); a ``--input_file``
                            job (a backfill from Cloud Storage) stays a batch job
``enable_streaming_engine`` on for streaming jobs (state and shuffle live in the service, workers stay
                            small, autoscaling reacts faster)
``autoscaling_algorithm``   ``THROUGHPUT_BASED``
``max_num_workers``         ``DEFAULT_MAX_WORKERS`` (an upper bound on cost; raise it with the flag)
``setup_file``              the repository's ``setup.py``, so workers install the ``leadflow`` packages
                            (``pipelines``, ``transforms``, ``scoring``, ``schemas``); not set when a custom
                            ``--sdk_container_image`` is given: that image carries the packages already
``save_main_session``       off: every DoFn and function lives in an importable module, and pickling the
                            launcher's ``__main__`` would only ship its globals to the workers
=========================== ============================================================================

"Set explicitly" means the option has a value other than Beam's "unset" default: ``--max_num_workers=50``,
``--autoscaling_algorithm=NONE``, ``--setup_file=...``, ``--save_main_session`` or ``--no_save_main_session``
(or a value assigned in code, as ``run()`` does for ``save_main_session``) are all kept.
``enable_streaming_engine`` is special: Beam's own default for it is already True (Python streaming jobs always
use Streaming Engine), so it is only ever switched on, never off.

Stateful step names must not change between versions of a running job (``--update`` matches state by step
name): see ``infra/deploy/dataflow/stateful_steps.txt`` and the runbook (docs/runbook.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from pipelines.options import LeadflowOptions

_log = logging.getLogger(__name__)

DEFAULT_MAX_WORKERS = 10
AUTOSCALING_ALGORITHM = "THROUGHPUT_BASED"
REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_FILE = REPO_ROOT / "setup.py"


def is_dataflow(options: PipelineOptions) -> bool:
    """True when the options select Dataflow (``DataflowRunner``, ``dataflow``, ``TestDataflowRunner`` or an
    instance of one)."""
    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return False
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name.lower().removesuffix("runner").endswith("dataflow")  # DataflowRunner, TestDataflowRunner


def apply_dataflow_defaults(options: PipelineOptions) -> None:
    """Fill in the Dataflow settings the user left unset (see the module docstring); no-op for other runners."""
    if not is_dataflow(options):
        return
    standard = options.view_as(StandardOptions)
    cloud = options.view_as(GoogleCloudOptions)
    workers = options.view_as(WorkerOptions)
    setup = options.view_as(SetupOptions)
    applied = []

    if not standard.streaming and options.view_as(LeadflowOptions).input_subscription:
        standard.streaming = True
        applied.append("streaming")
    if standard.streaming and not cloud.enable_streaming_engine:
        cloud.enable_streaming_engine = True
        applied.append("enable_streaming_engine")
    if workers.autoscaling_algorithm is None:
        workers.autoscaling_algorithm = AUTOSCALING_ALGORITHM
        applied.append("autoscaling_algorithm")
    if workers.max_num_workers is None:
        workers.max_num_workers = DEFAULT_MAX_WORKERS
        applied.append("max_num_workers")
    if setup.setup_file is None and workers.sdk_container_image is None:
        if not SETUP_FILE.is_file():
            raise ValueError(f"cannot find {SETUP_FILE} to ship the leadflow packages to Dataflow workers; "
                             "pass --setup_file or --sdk_container_image")
        setup.setup_file = str(SETUP_FILE)
        applied.append("setup_file")
    if setup.save_main_session is None:
        setup.save_main_session = False
        applied.append("save_main_session")
    if applied:
        _log.info("Dataflow defaults applied: %s", ", ".join(applied))
