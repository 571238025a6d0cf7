"""Time per message of every parser's worst shapes beside an ordinary payload of the same parser and size, at 16 KB,
256 KB and 960 KB (issue 16's goal: no shape more than 10x an ordinary message of its size, and time linear in the
size). ``vs ord.`` compares with the same parser's ordinary payload, ``vs mail`` with an ordinary e-mail of the
same size (the issue's reference). Run by ``make bench``; ``python -m pipelines.dev.parse_bench [--quick]
[--parser NAME]``.

The shapes are ``pipelines.synthetic.hostile.PARSER_SHAPES`` (the e-mail parser's include the HTML bodies that made
the stdlib tokenizer quadratic); each is parsed through ``parse_payload`` with its provider attribute, as the Parse
stage does. ``growth`` is the 256 KB -> 960 KB time ratio divided by the size ratio (3.75): about 1 for linear time;
above ``SUPERLINEAR`` the shape is flagged (when its largest payload takes ``NOISE_MS`` or more). Shapes refused
by a limit (docs/input-limits.md) stop early and may grow less than linearly. The outcome column is what the
960 KB payload ends as.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pipelines.synthetic import hostile
from transforms.parsers.base import ParseConfig, ParseError
from transforms.parsers.registry import INBOUND_EMAIL, PARSERS, parse_payload
from transforms.sources import SourceRegistry

SIZES_KB = (16, 256, 960)  # 960 KB: the largest e-mail under the 1 MB payload limit with its headers
SUPERLINEAR = 1.5  # growth above this (time ratio 1.5x the size ratio) is flagged ...
NOISE_MS = 20.0  # ... when the largest payload takes at least this long (below it timer, cache and GC noise rule)
GOAL_VS_ORDINARY = 10.0


def parse_once(provider: str, text: str, config: ParseConfig) -> str:
    """The outcome of one parse: ``lead`` (or ``N leads``) or the error type."""
    try:
        _, leads = parse_payload(text, {"provider": provider}, config)
    except ParseError as e:
        return e.error_type
    return "lead" if len(leads) == 1 else f"{len(leads)} leads"


def time_parse(provider: str, text: str, config: ParseConfig, repeat: int) -> tuple[float, str]:
    """(best of ``repeat`` seconds, outcome)."""
    best, outcome = float("inf"), ""
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = parse_once(provider, text, config)
        best = min(best, time.perf_counter() - started)
    return best, outcome


def measure(sizes_kb=SIZES_KB, repeat: int = 3, parsers=None) -> dict:
    """{"<parser> <shape>": {"parser", "shape", "sizes": {kb: {"ms", "vs_ordinary"}}, "growth", "superlinear",
    "outcome"}} for every parser of the registry (or those named in ``parsers``)."""
    config = ParseConfig(registry=SourceRegistry.from_csv(None))
    missing = sorted(set(PARSERS) - set(hostile.PARSER_SHAPES))
    if missing:
        raise SystemExit(f"no bench shapes for parser(s) {missing}: add them to pipelines.synthetic.hostile")
    out: dict = {}
    for provider in parsers or PARSERS:
        shapes = hostile.PARSER_SHAPES[provider]
        for kb in sizes_kb:
            times = {shape: time_parse(provider, build(kb * 1024), config, repeat) for shape, build in shapes.items()}
            ordinary = times[hostile.ORDINARY][0]
            for shape, (seconds, outcome) in times.items():
                case = out.setdefault(f"{provider} {shape}", {"parser": provider, "shape": shape, "sizes": {}})
                case["sizes"][kb] = {"ms": round(seconds * 1000, 2), "vs_ordinary": round(seconds / ordinary, 2)}
                case["outcome"] = outcome
    email = hostile.PARSER_SHAPES[INBOUND_EMAIL][hostile.ORDINARY]
    for kb in sizes_kb:  # the reference: an ordinary e-mail of the same size
        known = out.get(f"{INBOUND_EMAIL} {hostile.ORDINARY}", {}).get("sizes", {}).get(kb)
        email_ms = known["ms"] if known else time_parse(INBOUND_EMAIL, email(kb * 1024), config, repeat)[0] * 1000
        for case in out.values():
            if kb in case["sizes"]:
                case["sizes"][kb]["vs_email"] = round(case["sizes"][kb]["ms"] / max(email_ms, 1e-3), 2)
    for case in out.values():
        sizes = sorted(case["sizes"])
        if len(sizes) >= 2:
            small, large = case["sizes"][sizes[-2]]["ms"], case["sizes"][sizes[-1]]["ms"]
            growth = (large / max(small, 1e-3)) / (sizes[-1] / sizes[-2])
            case["growth"] = round(growth, 2)
            case["superlinear"] = growth > SUPERLINEAR and large >= NOISE_MS
    return out


def _cases(result: dict) -> dict:
    """The result in this module's form; an older results file ({shape: {kb: ...}}, e-mail only) is read as such."""
    return {name: case if "sizes" in case else {"parser": "inbound_email", "shape": name, "sizes": case,
                                                "outcome": "?"}
            for name, case in result.items()}


def format_table(result: dict) -> str:
    result = _cases(result)
    sizes = sorted({kb for case in result.values() for kb in case["sizes"]}, key=int)  # JSON keys are text
    lines = [f"{'parser':<22}{'shape':<30}" + "".join(f"{f'{kb} KB ms':>11}{'vs ord.':>8}{'vs mail':>8}"
                                                    for kb in sizes)
             + f"{'growth':>8}  outcome at {sizes[-1]} KB"]
    for case in result.values():
        flags = []
        if case.get("superlinear"):
            flags.append("SUPERLINEAR")
        if any(case["sizes"][kb]["vs_ordinary"] > GOAL_VS_ORDINARY for kb in sizes if kb in case["sizes"]):
            flags.append(f">{GOAL_VS_ORDINARY:g}x ordinary")
        if any(case["sizes"][kb].get("vs_email", 0) > GOAL_VS_ORDINARY for kb in sizes if kb in case["sizes"]):
            flags.append(f">{GOAL_VS_ORDINARY:g}x an ordinary e-mail")
        lines.append(f"{case['parser']:<22}{case['shape']:<30}"
                     + "".join(f"{case['sizes'][kb]['ms']:>11.2f}{case['sizes'][kb]['vs_ordinary']:>8.2f}"
                               f"{case['sizes'][kb].get('vs_email', float('nan')):>8.2f}"
                               if kb in case["sizes"] else f"{'':>27}" for kb in sizes)
                     + f"{case.get('growth', float('nan')):>8.2f}  {case['outcome']}"
                     + (f"  [{', '.join(flags)}]" if flags else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per payload instead of the best of three")
    parser.add_argument("--parser", action="append", choices=sorted(PARSERS), help="only this parser (repeatable)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(repeat=1 if args.quick else 3, parsers=args.parser)
    print(format_table(result))
    if args.json:
        print(json.dumps(result))
    flagged = [name for name, case in result.items() if case.get("superlinear")]
    print(f"superlinear (growth > {SUPERLINEAR}): {', '.join(flagged) if flagged else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
