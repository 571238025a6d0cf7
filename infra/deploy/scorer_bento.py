"""Build the scorer's Bento, refusing a model trained on another feature version than the code computes.

    python -m infra.deploy.scorer_bento check   # bentofile.yaml and the store's latest model match FEATURE_VERSION
    python -m infra.deploy.scorer_bento build   # check, then `bentoml build -f bentofile.yaml .`; prints the Bento tag

The model store is ``$BENTOML_HOME`` (or ``--bentoml_home``). Why the check: the pipeline computes features with
``scoring.features`` (FEATURE_VERSION); a model trained on another version would score garbage without any error.
``bentofile.yaml`` labels the Bento with the feature version and sets ``LEADFLOW_FEATURE_VERSION``; the model
carries the version it was trained on in its metadata (``scoring.train``). All three must agree.
Then ``bentoml containerize lead_scorer:<version>`` makes the image (Docker needed; docs/runbook.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENTOFILE = REPO / "bentofile.yaml"


class BentoCheckError(RuntimeError):
    pass


def load_bentofile(path: Path = BENTOFILE) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def problems(bentofile: dict[str, Any], model_metadata: dict[str, Any] | None, feature_version: str) -> list[str]:
    """What disagrees with ``feature_version``: the bentofile's label and env, and the model's metadata."""
    out = []
    label = str((bentofile.get("labels") or {}).get("feature_version"))
    if label != feature_version:
        out.append(f"bentofile.yaml label feature_version={label!r}, the code computes {feature_version!r}")
    envs = {e["name"]: str(e.get("value")) for e in bentofile.get("envs") or []}
    if envs.get("LEADFLOW_FEATURE_VERSION") != feature_version:
        out.append(f"bentofile.yaml LEADFLOW_FEATURE_VERSION={envs.get('LEADFLOW_FEATURE_VERSION')!r}, "
                   f"the code computes {feature_version!r}")
    if model_metadata is not None:
        trained = str(model_metadata.get("feature_version"))
        if trained != feature_version:
            out.append(f"the model was trained on feature version {trained!r}, the code computes "
                       f"{feature_version!r}: retrain (leadflow train) before building")
    return out


def model_metadata(tag: str, bentoml_home: str | None) -> tuple[str, dict[str, Any]]:
    """(concrete tag, metadata) of ``tag`` in the store; BentoCheckError when there is none."""
    import bentoml

    from scoring import model_store

    with model_store.store_home(bentoml_home):
        try:
            model = bentoml.models.get(tag)
        except bentoml.exceptions.NotFound:
            raise BentoCheckError(f"no model {tag} in the store {bentoml_home or '$BENTOML_HOME'}; "
                                  "train one with leadflow train") from None
        return str(model.tag), dict(model.info.metadata)


def check(bentoml_home: str | None) -> str:
    """Raise BentoCheckError listing every disagreement; return the model tag the Bento will carry."""
    from scoring.features import FEATURE_VERSION

    bentofile = load_bentofile()
    (tag,) = bentofile["models"]
    tag = tag if isinstance(tag, str) else tag["tag"]
    concrete, metadata = model_metadata(tag, bentoml_home)
    found = problems(bentofile, metadata, FEATURE_VERSION)
    if found:
        raise BentoCheckError("; ".join(found))
    return concrete


def build(bentoml_home: str | None) -> str:
    """``bentoml build`` of bentofile.yaml from the repository root; returns the Bento tag."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    if bentoml_home:
        env["BENTOML_HOME"] = os.path.abspath(bentoml_home)
    bentoml = Path(sys.executable).with_name("bentoml")
    cmd = [str(bentoml) if bentoml.exists() else "bentoml", "build", "-f", str(BENTOFILE), "-o", "tag", str(REPO)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    tags = [line.split("__tag__:", 1)[1].strip() for line in proc.stdout.splitlines() if "__tag__:" in line]
    if proc.returncode != 0 or not tags:
        raise BentoCheckError(f"bentoml build failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return tags[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.deploy.scorer_bento", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("check", "build"))
    ap.add_argument("--bentoml_home", default=os.environ.get("BENTOML_HOME"),
                    help="BentoML home holding the model (default $BENTOML_HOME)")
    args = ap.parse_args(argv)
    try:
        model = check(args.bentoml_home)
        print(f"ok: {model} and bentofile.yaml match the code's feature version")
        if args.command == "build":
            print(f"built Bento {build(args.bentoml_home)} carrying {model}")
    except BentoCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
