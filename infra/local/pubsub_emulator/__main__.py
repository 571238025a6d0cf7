"""``python -m infra.local.pubsub_emulator --host 127.0.0.1 --port 8085``: run the in-memory Pub/Sub emulator."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from infra.local.pubsub_emulator.server import DEFAULT_ACK_DEADLINE, serve

log = logging.getLogger("infra.local.pubsub_emulator")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.pubsub_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8085, help="port to bind; 0 picks a free one (default 8085)")
    parser.add_argument(
        "--min-ack-deadline",
        "--min_ack_deadline",
        dest="min_ack_deadline",
        type=int,
        default=DEFAULT_ACK_DEADLINE,
        help="smallest ack deadline in seconds (default 10 like the real service; tests use 1)",
    )
    parser.add_argument("--max-workers", type=int, default=64, help="gRPC worker threads (one per open stream)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        emulator = serve(args.host, args.port, min_ack_deadline=args.min_ack_deadline, max_workers=args.max_workers)
    except (OSError, RuntimeError, ValueError) as exc:
        log.error("pubsub emulator failed to start on %s:%s: %s", args.host, args.port, exc)
        return 1
    log.info("pubsub emulator ready on %s", emulator.address)
    while not stop.wait(0.5):
        pass
    log.info("pubsub emulator stopping")
    emulator.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
