"""Strip outputs, execution counts and run-specific metadata from notebooks before they are committed.

    python notebooks/strip_outputs.py                 # every notebooks/*.ipynb, in place
    python notebooks/strip_outputs.py a.ipynb b.ipynb
    python notebooks/strip_outputs.py --check         # exit 1 and name the notebooks that still hold outputs

Outputs can hold data (query results, rows of lead history), so committed notebooks carry none; executed
copies go to ``out/`` (see ``notebooks/run_notebook.py``). Cell tags (``parameters``) are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent
_CELL_METADATA_KEPT = ("tags",)
_NOTEBOOK_METADATA_KEPT = ("kernelspec",)


def problems(nb) -> list[str]:
    """What in ``nb`` would be stripped: outputs, execution counts, run metadata (empty when clean)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if cell.get("outputs"):
                found.append(f"cell {i}: {len(cell.outputs)} output(s)")
            if cell.get("execution_count") is not None:
                found.append(f"cell {i}: execution_count {cell.execution_count}")
        extra = sorted(set(cell.get("metadata", {})) - set(_CELL_METADATA_KEPT))
        if extra:
            found.append(f"cell {i}: metadata {extra}")
        if cell.get("attachments"):
            found.append(f"cell {i}: attachments")
    extra = sorted(set(nb.metadata) - set(_NOTEBOOK_METADATA_KEPT) - {"language_info"})
    if extra:
        found.append(f"notebook metadata {extra}")
    if set(nb.metadata.get("language_info", {})) - {"name"}:
        found.append("notebook metadata language_info beyond its name")
    return found


def strip(nb) -> bool:
    """Strip ``nb`` in place; returns whether anything changed."""
    if not problems(nb):
        return False
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata = {k: v for k, v in cell.get("metadata", {}).items() if k in _CELL_METADATA_KEPT}
        cell.pop("attachments", None)
    language = nb.metadata.get("language_info", {}).get("name", "python")
    kept = {k: v for k, v in nb.metadata.items() if k in _NOTEBOOK_METADATA_KEPT}
    nb.metadata = nbformat.from_dict({**kept, "language_info": {"name": language}})
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs stripping")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.paths] or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        found = problems(nb)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: {'; '.join(found[:5])}")
        else:
            strip(nb)
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"stripped {path}")
    if args.check and dirty:
        print(f"{dirty} notebook(s) hold outputs; run: python notebooks/strip_outputs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
