"""Execute a notebook headless with parameters, on this virtualenv's Python (what the tests do).

    python notebooks/run_notebook.py notebooks/lead_funnel.ipynb -p START_DATE='"2026-11-16"' \\
        --out out/notebooks/lead_funnel.ipynb

Each ``-p NAME=VALUE`` overrides one assignment of the notebook's ``parameters`` cell (the cell tagged
``parameters``); VALUE is a Python literal (``5``, ``None``, ``"text"``) and is taken as a string when it is not
one. An unknown NAME is an error. The overrides go into a new cell right after the parameters cell (tagged
``injected-parameters``), so the executed copy shows what was run. The kernel is this interpreter
(``sys.executable``), through a kernelspec written to a temporary directory: no Jupyter installation, user
kernelspec or ``ipykernel install`` is needed. The working directory is the repository root, so relative paths
in parameters are relative to it. The executed copy (with outputs) is written to ``--out``; keep it out of git
(``out/`` is ignored).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat

REPO = Path(__file__).resolve().parents[1]
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]+)?=(?!=)", re.MULTILINE)


class NotebookError(RuntimeError):
    """The notebook has no parameters cell, was given an unknown parameter, or a cell failed."""


def parameter_names(nb) -> list[str]:
    """Names assigned at the top level of the notebook's parameters cell."""
    return _ASSIGNMENT.findall(_parameters_cell(nb)[1].source)


def _parameters_cell(nb) -> tuple[int, Any]:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return i, cell
    raise NotebookError("the notebook has no code cell tagged 'parameters'")


def inject_parameters(nb, parameters: dict[str, Any]) -> None:
    """Insert a cell assigning ``parameters`` right after the parameters cell (in place)."""
    index, _ = _parameters_cell(nb)
    known = parameter_names(nb)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise NotebookError(f"unknown parameter(s) {unknown}; the notebook's parameters are {known}")
    lines = ["# Parameters injected by notebooks/run_notebook.py"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    nb.cells.insert(index + 1, cell)


def _kernelspec(directory: Path) -> str:
    name = "leadflow-python"
    spec = directory / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Leadflow (this virtualenv)",
        "language": "python",
    }))
    return name


def execute(
    path: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    cwd: str | Path = REPO,
    timeout: int = 600,
):
    """Run the notebook at ``path`` with ``parameters``; returns the executed notebook (also written to ``out``).

    A failing cell raises :class:`NotebookError` with the cell's error; the partly executed notebook is still
    written to ``out`` so the failure can be read in context.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(path), as_version=4)
    inject_parameters(nb, dict(parameters or {}))
    with tempfile.TemporaryDirectory(prefix="leadflow-kernel-") as tmp:
        kernel = _kernelspec(Path(tmp))
        ksm = KernelSpecManager(kernel_dirs=[str(Path(tmp) / "kernels")], ensure_native_kernel=False)
        km = KernelManager(kernel_name=kernel, kernel_spec_manager=ksm, transport="ipc", ip=str(Path(tmp) / "kernel"))
        client = NotebookClient(
            nb, km=km, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}},
        )
        try:
            client.execute()
        except CellExecutionError as e:
            raise NotebookError(f"{Path(path).name}: a cell failed:\n{e}") from e
        finally:
            if out is not None:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, str(out))
    return nb


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", help="executed copy (default out/notebooks/<name>)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    parameters = {}
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected NAME=VALUE, got {item!r}")
        parameters[name.strip()] = _literal(value)
    out = args.out or str(REPO / "out" / "notebooks" / Path(args.notebook).name)
    try:
        execute(args.notebook, parameters, out=out, timeout=args.timeout)
    except NotebookError as e:
        print(f"error: {e}\n(partly executed copy: {out})", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
