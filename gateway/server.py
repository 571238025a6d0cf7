"""``leadflow gateway``: the gateway on uvicorn, with the SMTP receiver beside it.

    leadflow gateway --host 0.0.0.0 --port 8080 --smtp-port 2525
    leadflow gateway --no-smtp                       # HTTP only (Cloud Run; the port defaults to $PORT, else 8080)

Settings come from the environment and ``LEADFLOW_GATEWAY_CONFIG`` (gateway.config.ENV, docs/gateway.md).
uvicorn's access log is off: it prints query strings, and a provider's shared secret may travel in one; the
gateway logs each request itself by id, endpoint and outcome.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os

DEFAULT_PORT = 8080


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.config import load_config
    from gateway.smtp import DEFAULT_PORT as SMTP_PORT
    from gateway.smtp import start_smtp

    ap = argparse.ArgumentParser(prog="leadflow gateway", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    # Cloud Run tells the container its port in $PORT
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT))
    ap.add_argument("--smtp-host", default="127.0.0.1")
    ap.add_argument("--smtp-port", type=int, default=SMTP_PORT)
    ap.add_argument("--no-smtp", action="store_true", help="do not start the SMTP receiver")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Graph read, URL included: not needed
    app = create_app(load_config())
    gc.freeze()  # the startup heap (FastAPI, gRPC, the clients) is never garbage: keep the collector off it
    smtp = None if args.no_smtp else start_smtp(app.state.door, args.smtp_host, args.smtp_port)
    try:
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    finally:
        if smtp is not None:
            smtp.stop()
    return 0
