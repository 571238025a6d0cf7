"""Time per e-mail of each hostile HTML shape beside an ordinary e-mail of the same size (issue 16's goal: no shape
more than 10x an ordinary message of its size). Run by ``make bench``; ``python -m pipelines.dev.parse_bench``."""

from __future__ import annotations

import json
import sys
import time

from pipelines.synthetic import hostile
from transforms.parsers import inbound_email
from transforms.parsers.base import ParseConfig, ParseError
from transforms.sources import SourceRegistry

SIZES_KB = (16, 256, 960)  # 960 KB: the largest e-mail under the 1 MB payload limit with its headers


def time_parse(text: str, config: ParseConfig, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            inbound_email.parse(text, {"provider": "inbound_email"}, config)
        except ParseError:
            pass
        best = min(best, time.perf_counter() - started)
    return best


def measure(sizes_kb=SIZES_KB, repeat: int = 3) -> dict:
    """{shape: {kb: {"ms": best of ``repeat``, "vs_ordinary": ratio}}}."""
    config = ParseConfig(registry=SourceRegistry.from_csv(None))
    out: dict = {shape: {} for shape in hostile.SHAPES}
    for kb in sizes_kb:
        times = {shape: time_parse(hostile.email_of(hostile.html_of(shape, kb * 1024)), config, repeat)
                 for shape in hostile.SHAPES}
        for shape, seconds in times.items():
            out[shape][kb] = {"ms": round(seconds * 1000, 2),
                              "vs_ordinary": round(seconds / times[hostile.ORDINARY], 2)}
    return out


def format_table(result: dict) -> str:
    sizes = sorted({kb for per_size in result.values() for kb in per_size})
    lines = [f"{'e-mail body':<26}" + "".join(f"{f'{kb} KB ms':>12}{'vs ord.':>9}" for kb in sizes)]
    for shape, per_size in result.items():
        lines.append(f"{shape:<26}" + "".join(f"{per_size[kb]['ms']:>12.2f}{per_size[kb]['vs_ordinary']:>9.2f}"
                                              for kb in sizes))
    return "\n".join(lines)


def main() -> int:
    result = measure()
    print(format_table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
