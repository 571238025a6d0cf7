"""The gateway under load on loopback, measured with ``wrk`` (Debian's ``wrk`` package), beside the Pub/Sub
emulator's own publish rate in the same run.

    python -m infra.local.gateway_loadtest                          # 10 s per endpoint at 12 connections
    python -m infra.local.gateway_loadtest --seconds 5 --connections 8
    python -m infra.local.gateway_loadtest --shared_state          # with a real redis-server as the shared state

It starts the project's Pub/Sub emulator and the gateway (``python -m gateway``, one uvicorn worker) as processes
on free ports, with secrets generated for the run, then drives ``/webhooks/twilio/sms`` (one signed SMS, the same
each time) and ``/v1/leads`` (one lead each, a new ``external_id`` per request) with wrk, checks every answer was
2xx, and ends with ``infra.local.pubsub_emulator.loadtest`` against the same emulator. Prints a table and one JSON
line. Everything shares this machine's cores: the figures are a floor for a gateway on its own machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from infra.local.processes import free_port, stop_process
from infra.local.pubsub_emulator import loadtest as emulator_loadtest
from infra.local.pubsub_emulator import wait_ready

REPO = Path(__file__).resolve().parents[2]
PROJECT = "gateway-load"
SMS = REPO / "tests" / "data" / "fixtures" / "gateway" / "twilio_sms.form"
_LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _lua_sms(body: str, signature: str) -> str:
    return (f'wrk.method = "POST"\nwrk.body = "{body}"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
            f'wrk.headers["X-Twilio-Signature"] = "{signature}"\n')


def _lua_leads(api_key: str, run: str) -> str:
    # a thread number per wrk thread (setup runs in the main state, init in each thread's), a counter per thread
    return f'''tid = 0
function setup(thread) tid = tid + 1; thread:set("tid", tid) end
function init(args) prefix = "{run}-" .. tid .. "-"; counter = 0 end
request = function()
  counter = counter + 1
  local body = '{{"external_id":"' .. prefix .. counter .. '","phone":"+14155550123","full_name":"Load Test"}}'
  return wrk.format("POST", "/v1/leads", {{["Content-Type"] = "application/json", ["X-API-Key"] = "{api_key}"}}, body)
end
'''


def parse_wrk(text: str) -> dict:
    """requests/s, p50/p90/p99 in ms and the non-2xx count from ``wrk --latency`` output."""
    out: dict = {"non_2xx": 0}
    for pct, value, unit in _LATENCY.findall(text):
        out[f"p{pct}_ms"] = round(float(value) * _UNIT_MS[unit], 2)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["requests_per_s"] = round(float(rate.group(1))) if rate else 0
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if bad:
        out["non_2xx"] = int(bad.group(1))
    errors = re.search(r"Socket errors:.*", text)
    if errors:
        out["socket_errors"] = errors.group(0)
    return out


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.local.gateway_loadtest", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared_state", action="store_true",
                    help="run a redis-server and give the gateway LEADFLOW_GATEWAY_STATE_URL (gateway.shared_state)")
    args = ap.parse_args(argv)
    if args.shared_state and shutil.which("redis-server") is None:
        print("redis-server is not installed: apt-get install redis-server", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    from google.cloud import pubsub_v1
    from twilio.request_validator import RequestValidator

    from gateway.local import local_settings
    from schemas.resources import Resources

    work = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    address, port = f"127.0.0.1:{free_port()}", free_port()
    base = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen([sys.executable, "-m", "infra.local.pubsub_emulator", "--host", "127.0.0.1",
                                 "--port", address.split(":")[1], "--log-level", "WARNING"], cwd=REPO)
    gateway = redis = None
    try:
        wait_ready(address, timeout=30)
        os.environ["PUBSUB_EMULATOR_HOST"] = address
        admin = pubsub_v1.PublisherClient()
        for key in ("input", "dead_letters"):
            admin.create_topic(request={"name": Resources(PROJECT).topic(key)})
        config_path, client = local_settings(work, PROJECT, base)
        config = json.loads(config_path.read_text())
        config["api_clients"][0]["rate_limit"] = "1000000000/hour"  # measure the door, not the limit
        if args.shared_state:
            redis_port = free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
            config["state_url"] = f"redis://127.0.0.1:{redis_port}/0"
        config_path.write_text(json.dumps(config))
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--port", str(port), "--no-smtp"], cwd=REPO,
                                   env={**os.environ, "LEADFLOW_GATEWAY_CONFIG": str(config_path)},
                                   stdout=(work / "gateway.log").open("wb"), stderr=subprocess.STDOUT)
        _wait_http(base + "/healthz")
        body = SMS.read_text().strip()
        url = base + "/webhooks/twilio/sms"
        signature = RequestValidator(client["twilio_auth_token"]).compute_signature(
            url, dict(urllib.parse.parse_qsl(body, keep_blank_values=True)))
        scripts = {"/webhooks/twilio/sms": _lua_sms(body, signature),
                   "/v1/leads": _lua_leads(client["api_key"], f"run{int(time.time())}")}
        results = {}
        for path, lua in scripts.items():
            script = work / (path.strip("/").replace("/", "_") + ".lua")
            script.write_text(lua)
            text = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
                                   "-s", str(script), "--latency", base + path],
                                  capture_output=True, text=True, check=True).stdout
            results[path] = parse_wrk(text)
        results["pubsub_emulator"] = emulator_loadtest.run(address, 20_000, 300, 1000)
        admin.stop()
    finally:
        if gateway is not None:
            stop_process(gateway, timeout=10)
        if redis is not None:
            stop_process(redis, timeout=10)
        stop_process(emulator, timeout=10)
    print(f"{'endpoint':<24} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for path in scripts:
        r = results[path]
        print(f"{path:<24} {r['requests_per_s']:>8} {r.get('p50_ms', 0):>8} {r.get('p90_ms', 0):>8} "
              f"{r.get('p99_ms', 0):>8} {r['non_2xx']:>8}")
    print(f"pubsub emulator publish (batched): {results['pubsub_emulator']['publish_msgs_per_s']} msgs/s")
    print(json.dumps({"connections": args.connections, "seconds": args.seconds, "shared_state": args.shared_state,
                      **results}))
    return 0 if all(results[p]["non_2xx"] == 0 for p in scripts) else 1


if __name__ == "__main__":
    sys.exit(main())
