"""Local runs only: the DirectRunner speed-ups and the emulator-channel message limit, behind one ``apply()``.

Called by the local entry points (``leadflow run``, the demo, the soak, the benches, the tests' session fixture),
never by the job itself, so the Flex Template launcher and Dataflow workers never load these patches.

``infra.local.direct`` replaces Beam-private names (``userstate.get_dofn_specs``, the DirectRunner's pickler and its
Pub/Sub read), bound when that module is imported. They were verified against the Beam versions in
``VERIFIED_BEAM_VERSIONS`` (tests/pipeline/test_direct_speedups.py compares every DoFn's answer with Beam's own);
on any other version :func:`apply` refuses with a clear message, imports nothing of Beam's internals, and the
pipeline runs unpatched (slower, but exactly Beam's behaviour).
"""

from __future__ import annotations

import logging

_log = logging.getLogger(__name__)

VERIFIED_BEAM_VERSIONS = frozenset({"2.77.0"})


def apply(beam_version: str | None = None) -> bool:
    """Install the speed-ups (idempotent); False, with a warning, on a Beam version they were not verified on."""
    if beam_version is None:
        import apache_beam

        beam_version = apache_beam.__version__
    if beam_version not in VERIFIED_BEAM_VERSIONS:
        _log.warning(
            "local speed-ups not applied: they patch DirectRunner internals verified on Beam %s, and this is Beam %s; "
            "the pipeline runs unpatched (slower local streaming, 4 MiB emulator messages). Verify them with "
            "tests/pipeline/test_direct_speedups.py and add the version to infra.local.speedups.VERIFIED_BEAM_VERSIONS",
            ", ".join(sorted(VERIFIED_BEAM_VERSIONS)), beam_version)
        return False
    from infra.local.direct import speed_up_direct_runner
    from infra.local.pubsub_emulator.client import lift_emulator_message_limit

    lift_emulator_message_limit()  # 10 MB messages from the local emulator, as from Pub/Sub
    speed_up_direct_runner()  # per-bundle DoFn inspection and pickling, 10-message reads
    return True


def is_dataflow(argv: list[str]) -> bool:
    """Whether a pipeline command line targets Dataflow (the speed-ups are for the DirectRunner only)."""
    runner = ""
    for i, arg in enumerate(argv):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and i + 1 < len(argv):
            runner = argv[i + 1]
    return "dataflow" in runner.lower()
