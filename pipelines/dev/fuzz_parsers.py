"""Coverage-guided fuzzing of every parser through ``parse_payload``, looking for crashes and for slow inputs.

    python -m pipelines.dev.fuzz_parsers --seconds 60 [--max_len 65536] [--out .fuzz]

The first byte of an input chooses the provider attribute (one of the registry's parsers, or none: the payload's shape
decides), the rest is the payload. Only ``ParseError`` may escape; anything else is a crash (libFuzzer stops and
writes the input). The slowest inputs per byte (best of four runs, timed with the instrumentation on) are kept in
``--out`` (``slow-<us per KB>-<provider>``), so a shape that is slow for its size can be grown into a benchmark case
(``pipelines.synthetic.hostile.PARSER_SHAPES``, timed by ``pipelines.dev.parse_bench``). The corpus starts from the
bench shapes at 2 KB.

Uses atheris (libFuzzer for Python, coverage of the parser modules); not part of ``make test``.
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["transforms.parsers", "transforms.messages"]):
    from transforms.parsers.base import ParseConfig, ParseError
    from transforms.parsers.registry import PARSERS, parse_payload

from pipelines.synthetic import hostile
from transforms.sources import SourceRegistry

PROVIDERS = [None, *sorted(PARSERS)]
SEED_BYTES = 2048
KEEP_SLOWEST = 20
_config = ParseConfig(registry=SourceRegistry.from_csv(None))
_slowest: list[tuple[float, int, str, bytes]] = []  # min-heap of (us per KB, tie-breaker, provider, payload)
_runs = [0]
_state: dict = {"deadline": float("inf"), "out": Path(".fuzz"), "reported": False}


def _parse_seconds(text: str, attributes: dict) -> float:
    started = time.perf_counter()
    try:
        parse_payload(text, attributes, _config)
    except ParseError:
        pass
    return time.perf_counter() - started


def one_input(data: bytes) -> None:
    if not data:
        return
    provider = PROVIDERS[data[0] % len(PROVIDERS)]
    text = data[1:].decode("utf-8", "replace")
    attributes = {"provider": provider} if provider else {}
    elapsed = _parse_seconds(text, attributes)
    _runs[0] += 1
    if not _state["reported"] and time.monotonic() > _state["deadline"]:
        _state["reported"] = True  # libFuzzer ends the process with _exit: report from inside, just before
        report(_state["out"])
    if len(data) < 256:  # tiny inputs are all fixed cost
        return
    kb = len(data) / 1024
    if len(_slowest) == KEEP_SLOWEST and elapsed * 1e6 / kb <= _slowest[0][0]:
        return
    # a candidate: timed again (a single run under instrumentation is often a GC pause or a context switch)
    elapsed = min(elapsed, *(_parse_seconds(text, attributes) for _ in range(3)))
    item = (elapsed * 1e6 / kb, _runs[0], provider or "detected", data)
    if len(_slowest) < KEEP_SLOWEST:
        heapq.heappush(_slowest, item)
    elif item[0] > _slowest[0][0]:
        heapq.heapreplace(_slowest, item)


def seed_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for provider, shapes in hostile.PARSER_SHAPES.items():
        index = PROVIDERS.index(provider)
        for shape, build in shapes.items():
            payload = build(SEED_BYTES).encode("utf-8", "replace")
            (directory / f"{provider}-{shape}").write_bytes(bytes([index]) + payload)


def report(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n{_runs[0]} inputs; slowest per KB (inputs of 256 bytes or more):", file=sys.stderr)
    for per_kb, _, provider, data in sorted(_slowest, reverse=True):
        name = f"slow-{int(per_kb)}-{provider}"
        (out / name).write_bytes(data)
        print(f"  {per_kb:10.1f} us/KB  {len(data):7d} bytes  {provider:<22} {out / name}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--max_len", type=int, default=65_536, help="largest input in bytes (default 64 KiB)")
    parser.add_argument("--out", default=".fuzz", help="where the corpus and the slowest inputs go (default .fuzz)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    corpus = out / "corpus"
    seed_corpus(corpus)
    _state.update(deadline=time.monotonic() + max(1, args.seconds - 2), out=out)
    libfuzzer = [sys.argv[0], f"-max_total_time={args.seconds}", f"-max_len={args.max_len}",
                 "-timeout=10", "-rss_limit_mb=4096", f"-artifact_prefix={out}{os.sep}", str(corpus)]
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()  # libFuzzer exits the process when the time is up
    return 0


if __name__ == "__main__":
    sys.exit(main())
