"""The gateway's OpenAPI document, as committed at docs/gateway-openapi.json.

    python -m gateway.openapi            # rewrite docs/gateway-openapi.json
    python -m gateway.openapi --check    # exit 1 when the committed document differs from the served one
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.app import create_app
from gateway.config import GatewayConfig

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "gateway-openapi.json"


class _NoPublisher:
    async def publish(self, topic, data, attributes):  # the document never publishes
        raise RuntimeError("not publishing")

    def close(self) -> None:
        pass


def document() -> str:
    """The document as served, in the committed layout (sorted keys, two-space indent, final newline)."""
    app = create_app(GatewayConfig(), publisher=_NoPublisher())
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.openapi")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = document()
    if args.check:
        current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if current != text:
            print(f"{DOCUMENT} is stale: run python -m gateway.openapi", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
