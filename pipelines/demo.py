"""``make demo``: run the lead pipeline on the bundled sample and print what happened.

The sample (pipelines/samples/messages.jsonl) covers every provider, people who come back through
the same or another source, exact redeliveries, and every kind of bad input. Its manifest holds
the ground truth, which the demo checks the output against.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from pipelines import lead_pipeline
from pipelines.summary import format_summary, summarize


def sample_path() -> Path:
    return Path(str(resources.files("pipelines.samples").joinpath("messages.jsonl")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input_file", default=str(sample_path()))
    ap.add_argument("--output_dir", default="out/demo")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transforms").setLevel(logging.INFO)

    input_file, out = Path(args.input_file), Path(args.output_dir)
    manifest_path = Path(str(input_file) + ".manifest.json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    n_lines = sum(1 for line in input_file.open("rb") if line.strip())
    print(f"[1/3] input: {input_file} ({n_lines} messages, {input_file.stat().st_size / 1e6:.1f} MB)", flush=True)
    if out.exists():
        shutil.rmtree(out)
    print(f"[2/3] running the lead pipeline on the DirectRunner -> {out}/<table>.jsonl ...", flush=True)
    started = time.perf_counter()
    lead_pipeline.run([f"--input_file={input_file}", f"--output_dir={out}"])
    elapsed = time.perf_counter() - started
    print(f"      done in {elapsed:.1f} s ({n_lines / elapsed:.0f} messages/s)\n", flush=True)
    print("[3/3] summary", flush=True)
    summary = summarize(str(input_file), str(out))
    print(format_summary(summary))
    ok = summary["accounting"]["ok"]
    if manifest:
        expected = {"leads": manifest["persons"], "lead_events": manifest["lead_events"],
                    "dead_letters": manifest["dead_letters_total"]}
        got = {"leads": summary["tables"]["leads"], "lead_events": summary["lead_events"],
               "dead_letters": summary["dead_letters"]}
        match = expected == got and manifest["dead_letters"] == dict(sorted(summary["dead_letter_reasons"].items()))
        print(f"ground truth ({manifest_path.name}): {'matches' if match else 'DIFFERS'} {expected}")
        ok = ok and match
    print(f"\noutput files: {', '.join(sorted(p.name for p in out.glob('*.jsonl')))} in {out}/")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
