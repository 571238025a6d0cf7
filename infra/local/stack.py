"""The local GCP stack: ``leadflow local up | down | status``.

``up`` starts the project's Pub/Sub emulator, the BigQuery emulator and the BentoML scorer (with a
model trained on generated history when the store has none) as background processes,
creates the topics, subscriptions, dataset and tables the pipeline uses, and prints the
environment to export. It is idempotent: services already running are reused; a state file whose
processes died (a crashed run) is reported and cleaned; emulator processes of ours that no state
file knows about are reported (``down`` stops them). ``down`` stops everything it started.
``leadflow local up`` also starts the ingestion gateway (HTTP on 8080, SMTP on 2525; ``--no_gateway`` leaves it out)
once the topics exist, with secrets generated for the stack home (``gateway.local``); ``status`` shows it. A
``StackConfig`` made in code (tests, the demo, the benches) starts it only with ``gateway=True``. The same holds for the
lead-operations dashboard (``leadflow dashboard`` on 8050 over the stack's dataset, once the views exist;
``--no_dashboard``; ``dashboard=True`` in code).

``--pubsub=builtin|gcloud|auto`` chooses the Pub/Sub emulator: the project's (``builtin``, the default: it has the
push filters, retry backoff and dead-lettering the CRM push subscriptions rely on, and streams about 10x faster),
Google's official one (``gcloud``, ``infra.local.gcloud_pubsub``), or ``auto`` (gcloud's when installed, else the
project's). ``status`` names the one running. ``up`` also creates one push subscription per CRM endpoint of
``schemas/crm_endpoints.toml`` that has a ``local_url`` (the command line does; a ``StackConfig`` made in code
creates only the endpoints it is given).

State lives in ``$LEADFLOW_HOME`` (default ``.local/`` in the current directory): ``stack.json``
and one log file per service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.local import gcloud_pubsub
from schemas.crm_endpoints import CrmEndpoint
from schemas.resources import DATASET, LOCAL_PROJECT, SUBSCRIPTIONS, TOPICS, Resources

PROJECT = LOCAL_PROJECT
SERVICE_MODULES = {"pubsub": "infra.local.pubsub_emulator", "bigquery": "infra.local.bigquery_emulator",
                   "scorer": "bentoml", "meta_graph": "infra.local.graph_stand_in", "gateway": "gateway",
                   "dashboard": "dashboard"}
GCLOUD_PUBSUB_JAR = b"cloud-pubsub-emulator"  # in the official emulator's java command line
DEFAULT_PUBSUB = "builtin"  # what `leadflow local up` runs without --pubsub (see the module docstring)
SCORER_SERVICE = "scoring.service:LeadScorer"
SCORER_TRAINING_ROWS = 5000  # generated history for the local model when the store has none


class StackError(RuntimeError):
    """Something the user must fix (a port taken by another program, a service that died)."""


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    pubsub_port: int = 8085
    bigquery_port: int = 9050
    bigquery_grpc_port: int = 9060
    scorer_port: int = 3000
    scorer: bool = True
    gateway: bool = False  # the ingestion gateway with its SMTP receiver (the command line's default: on)
    gateway_port: int = 8080
    smtp_port: int = 2525
    meta_graph_port: int = 8090  # the Graph API stand-in the local gateway reads Meta leads from (with the gateway)
    dashboard: bool = False  # the lead-operations dashboard (the command line's default: on)
    dashboard_port: int = 8050
    project: str = PROJECT
    dataset: str = DATASET
    pubsub: str = "builtin"  # builtin | gcloud | auto (infra.local.gcloud_pubsub)
    crm_endpoints: tuple[CrmEndpoint, ...] = ()  # push subscriptions to create (to each one's local_url)
    home: Path = field(default_factory=lambda: Path(os.environ.get("LEADFLOW_HOME", ".local")))
    retention: dict[str, float | None] = field(default_factory=dict)  # over schemas.records.RETENTION_DAYS

    @property
    def pubsub_host(self) -> str:
        return f"{self.host}:{self.pubsub_port}"

    @property
    def bigquery_host(self) -> str:
        return f"{self.host}:{self.bigquery_port}"

    @property
    def scorer_url(self) -> str:
        return f"http://{self.host}:{self.scorer_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def meta_graph_url(self) -> str:
        from infra.local.graph_stand_in import GRAPH_VERSION

        return f"http://{self.host}:{self.meta_graph_port}/{GRAPH_VERSION}"

    @property
    def meta_graph_dir(self) -> Path:
        """The lead objects the local Graph API stand-in serves, one ``<lead id>.json`` each."""
        return self.home / "meta-graph"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def identity_store(self) -> Path:
        """The local streaming pipeline's identity state: kept across pipeline restarts, cleared with BigQuery's."""
        return self.home / "identity.sqlite"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def resources(self) -> Resources:
        return Resources(self.project, self.dataset)

    def topic(self, key: str) -> str:
        return self.resources.topic(key)

    def subscription(self, name: str) -> str:
        return self.resources.subscription(name)

    def env(self) -> dict[str, str]:
        env = {
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "PUBSUB_PROJECT_ID": self.project,
            "BIGQUERY_EMULATOR_HOST": self.bigquery_host,
            "LEADFLOW_PROJECT": self.project,
            "LEADFLOW_BQ_DATASET": f"{self.project}:{self.dataset}",
        }
        if self.scorer:
            env.update(LEADFLOW_SCORER_URL=self.scorer_url, BENTOML_HOME=str(self.bentoml_home.resolve()))
        return env

    def pipeline_args(self) -> list[str]:
        return [
            "--streaming",
            *self.resources.pipeline_args(),
            "--bq_backend=client",
            f"--identity_store=sqlite:{self.identity_store.resolve()}",
            *(["--scorer=bentoml", f"--scorer_url={self.scorer_url}"] if self.scorer else []),
        ]


@dataclass
class Service:
    name: str
    pid: int
    port: int
    log: str
    started_at: float
    kind: str = ""  # pubsub only: builtin | gcloud


# --- processes -------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something listens on host:port. A connect to a free port in the ephemeral range can succeed
    by connecting to itself (TCP simultaneous open, when the kernel picks that very port as the source):
    that is not a listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if s.connect_ex((host, port)) != 0:
            return False
        return s.getsockname() != s.getpeername()


def listener(port: int) -> str:
    """Who listens on ``port`` (pid and program), for error messages; 'unknown' when the system won't say."""
    import psutil

    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN:
                if c.pid is None:
                    return "pid unknown"
                try:
                    return f"pid {c.pid}: {' '.join(psutil.Process(c.pid).cmdline()[:4])}"
                except psutil.Error:
                    return f"pid {c.pid}"
        return "no listening socket found; a connection to it succeeded"
    except psutil.Error:
        return "unknown"


STACK_MARKER = "LEADFLOW_STACK_HOME"  # set in the environment of every process a stack starts


def our_emulator_processes(cfg: StackConfig) -> dict[int, str]:
    """pid -> service for every running emulator process started by this stack (its home), via /proc."""
    marker = f"{STACK_MARKER}={cfg.home.resolve()}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        for service, module in SERVICE_MODULES.items():
            if b"-m" in cmd and module.encode() in cmd and pid_alive(int(entry.name)):
                found[int(entry.name)] = service
        if any(GCLOUD_PUBSUB_JAR in part for part in cmd) and pid_alive(int(entry.name)):
            found[int(entry.name)] = "pubsub"
    return found


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process, its process group and every descendant (bentoml workers start their own
    sessions); SIGKILL whatever is left after ``timeout``."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)  # each service leads its own session
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)


# --- state -----------------------------------------------------------------------------------------


def state_path(cfg: StackConfig) -> Path:
    return cfg.home / "stack.json"


def load_state(cfg: StackConfig) -> dict[str, Service]:
    path = state_path(cfg)
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {name: Service(**svc) for name, svc in raw.get("services", {}).items()}
    except (ValueError, TypeError) as e:
        raise StackError(f"{path} is unreadable ({e}); remove it after stopping any emulators") from None


def save_state(cfg: StackConfig, services: dict[str, Service]) -> None:
    cfg.home.mkdir(parents=True, exist_ok=True)
    data = {"config": {"host": cfg.host, "project": cfg.project, "dataset": cfg.dataset},
            "services": {n: asdict(s) for n, s in services.items()}}
    tmp = state_path(cfg).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(state_path(cfg))


# --- readiness and resources -----------------------------------------------------------------------


def wait_for(check, what: str, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}; last log lines:\n{_tail(log)}")
        try:
            if check():
                return
        except Exception as e:  # not ready yet
            last_error = e
        time.sleep(0.25)
    raise StackError(f"{what} not ready after {timeout:.0f} s ({last_error}); last log lines:\n{_tail(log)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pubsub_ready(cfg: StackConfig) -> bool:
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = cfg.pubsub_host
    publisher = pubsub_v1.PublisherClient()
    list(publisher.list_topics(request={"project": f"projects/{cfg.project}"}, timeout=2))
    return True


def scorer_ready(cfg: StackConfig) -> bool:
    import urllib.request

    with urllib.request.urlopen(cfg.scorer_url + "/readyz", timeout=2) as resp:
        return resp.status == 200


def ensure_scorer_model(cfg: StackConfig, out=print) -> str:
    """The scorer's model in the stack's BentoML store; trained on generated history when there is none."""
    from scoring import model_store

    home = str(cfg.bentoml_home.resolve())
    try:
        return model_store.model_tag(model_store.LATEST, bentoml_home=home)
    except Exception:  # no model yet: train one, so the stack scores out of the box
        pass
    from pipelines.synthetic import history
    from scoring import train

    started = time.monotonic()
    result = train.train(history.generate_history(SCORER_TRAINING_ROWS, seed=1))
    tag = train.save(result, cfg.home / "model", bentoml_home=home)
    out(f"  scorer model: trained {tag} on {SCORER_TRAINING_ROWS} generated history rows in "
        f"{time.monotonic() - started:.0f} s (valid AUC {result.metrics['valid_auc']:.3f}); "
        "retrain with 'leadflow train'")
    return str(tag)


def bigquery_ready(cfg: StackConfig) -> bool:
    from schemas.bigquery import client_for

    list(client_for(cfg.project, cfg.bigquery_host).list_datasets(timeout=2))
    return True


def ensure_pubsub_resources(cfg: StackConfig) -> dict[str, str]:
    """Topics and subscriptions, created when missing. Returns name -> 'created' | 'exists'."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = cfg.pubsub_host
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    report = {}
    for key in TOPICS:
        try:
            publisher.create_topic(request={"name": cfg.topic(key)})
            report[cfg.topic(key)] = "created"
        except AlreadyExists:
            report[cfg.topic(key)] = "exists"
    for name, key in SUBSCRIPTIONS.items():
        try:
            subscriber.create_subscription(request={
                "name": cfg.subscription(name), "topic": cfg.topic(key), "ack_deadline_seconds": 60,
                "enable_message_ordering": key == "deliveries"})
            report[cfg.subscription(name)] = "created"
        except AlreadyExists:
            report[cfg.subscription(name)] = "exists"
    for endpoint in cfg.crm_endpoints:
        if not endpoint.local_url:
            continue
        request = endpoint.push_subscription(cfg.resources, local=True)
        try:
            subscriber.create_subscription(request=request)
            report[request["name"]] = "created"
        except AlreadyExists:
            report[request["name"]] = "exists"
    subscriber.close()
    return report


# --- commands --------------------------------------------------------------------------------------


def _start(cfg: StackConfig, name: str, args: list[str],
           extra_env: dict[str, str] | None = None, cmd: list[str] | None = None) -> tuple[Service, subprocess.Popen]:
    cfg.home.mkdir(parents=True, exist_ok=True)
    log = cfg.home / f"{name}.log"
    with log.open("ab") as out:
        env = {**os.environ, STACK_MARKER: str(cfg.home.resolve()), "BENTOML_DO_NOT_TRACK": "true",
               "BENTOML_HOME": str(cfg.bentoml_home.resolve()), **(extra_env or {})}
        proc = subprocess.Popen(cmd or [sys.executable, "-m", SERVICE_MODULES[name], *args], stdout=out, env=env,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    port = {"pubsub": cfg.pubsub_port, "bigquery": cfg.bigquery_port, "scorer": cfg.scorer_port,
            "meta_graph": cfg.meta_graph_port, "gateway": cfg.gateway_port, "dashboard": cfg.dashboard_port}[name]
    return Service(name, proc.pid, port, str(log), time.time()), proc


def gateway_ready(cfg: StackConfig) -> bool:
    import urllib.request

    with urllib.request.urlopen(cfg.gateway_url + "/healthz", timeout=2) as resp:
        return resp.status == 200


def start_gateway(cfg: StackConfig, services: dict[str, Service], out=print) -> None:
    """The gateway after the topics exist (it publishes to them), with secrets generated for this stack home, and
    beside it the Graph API stand-in it reads Meta leads from (the real Graph API needs a Meta app)."""
    from gateway.local import local_settings

    if "gateway" in services:
        out(f"gateway: already running (pid {services['gateway'].pid}) on {cfg.gateway_url}")
        return
    for port, flag in ((cfg.gateway_port, "gateway_port"), (cfg.smtp_port, "smtp_port"),
                       (cfg.meta_graph_port, "meta_graph_port")):
        if port_open(cfg.host, port) and not (flag == "meta_graph_port" and "meta_graph" in services):
            raise StackError(f"port {port} is in use by another program ({listener(port)}); stop it or "
                             f"choose another port (leadflow local up --{flag} N), or leave it out (--no_gateway)")
    config_path, _ = local_settings(cfg.home, cfg.project, cfg.gateway_url, f"{cfg.project}:{cfg.dataset}",
                                    meta_graph_url=cfg.meta_graph_url)
    if "meta_graph" not in services:
        cfg.meta_graph_dir.mkdir(parents=True, exist_ok=True)
        svc, proc = _start(cfg, "meta_graph", ["--host", cfg.host, "--port", str(cfg.meta_graph_port), "--directory",
                                               str(cfg.meta_graph_dir.resolve()), "--token_file",
                                               str((cfg.home / "gateway-client.json").resolve())])
        services["meta_graph"] = svc
        save_state(cfg, services)
        _wait_started(cfg, services, "meta_graph", proc, lambda: port_open(cfg.host, cfg.meta_graph_port))
        out(f"meta_graph: Graph API stand-in started (pid {svc.pid}) on {cfg.meta_graph_url}, serving the lead "
            f"objects in {cfg.meta_graph_dir}")
    started = time.monotonic()
    svc, proc = _start(cfg, "gateway", ["--host", cfg.host, "--port", str(cfg.gateway_port), "--smtp-host",
                                        cfg.host, "--smtp-port", str(cfg.smtp_port)],
                       {**cfg.env(), "LEADFLOW_GATEWAY_CONFIG": str(config_path.resolve())})
    services["gateway"] = svc
    save_state(cfg, services)
    _wait_started(cfg, services, "gateway", proc, lambda: gateway_ready(cfg))
    out(f"gateway: started (pid {svc.pid}) on {cfg.gateway_url}, SMTP {cfg.host}:{cfg.smtp_port} in "
        f"{time.monotonic() - started:.1f} s; secrets for senders in {cfg.home / 'gateway-client.json'}; "
        f"log {svc.log}")


def _wait_started(cfg: StackConfig, services: dict[str, Service], name: str, proc, ready) -> None:
    """Wait for a service to answer; one that does not is stopped and forgotten, never left half-started."""
    try:
        wait_for(ready, name, proc, Path(services[name].log), timeout=60)
    except StackError:
        stop_pid(services[name].pid)
        del services[name]
        save_state(cfg, services)
        raise
def start_dashboard(cfg: StackConfig, services: dict[str, Service], out=print) -> None:
    """The dashboard after the views exist, reading the stack's dataset through the BigQuery emulator."""
    if "dashboard" in services:
        out(f"dashboard: already running (pid {services['dashboard'].pid}) on {cfg.dashboard_url}")
        return
    if port_open(cfg.host, cfg.dashboard_port):
        raise StackError(f"port {cfg.dashboard_port} is in use by another program ({listener(cfg.dashboard_port)}); "
                         "choose another port (leadflow local up --dashboard_port N), or leave it out (--no_dashboard)")
    started = time.monotonic()
    svc, proc = _start(cfg, "dashboard", ["--host", cfg.host, "--port", str(cfg.dashboard_port),
                                          "--bq_dataset", f"{cfg.project}:{cfg.dataset}"], cfg.env())
    services["dashboard"] = svc
    save_state(cfg, services)
    _wait_started(cfg, services, "dashboard", proc, lambda: port_open(cfg.host, cfg.dashboard_port))
    out(f"dashboard: started (pid {svc.pid}) on {cfg.dashboard_url} in {time.monotonic() - started:.1f} s; "
        f"log {svc.log}")


def up(cfg: StackConfig, out=print) -> dict[str, Service]:
    services = load_state(cfg)
    stale = set()
    for name, svc in list(services.items()):
        if not pid_alive(svc.pid):
            out(f"stale: {name} (pid {svc.pid}) from an earlier run is gone; starting it again")
            del services[name]
            stale.add(name)
    known = {s.pid for s in services.values()}
    strays = {pid: svc for pid, svc in our_emulator_processes(cfg).items() if pid not in known}
    for pid, svc in strays.items():
        out(f"warning: a {svc} emulator (pid {pid}) not started by this stack is running; "
            "'leadflow local down' stops it")
    try:
        pubsub_kind = gcloud_pubsub.resolve(cfg.pubsub)
    except ValueError as e:
        raise StackError(str(e)) from None
    running_kind = (services["pubsub"].kind or "builtin") if "pubsub" in services else pubsub_kind
    if running_kind != pubsub_kind:
        out(f"warning: the {running_kind} Pub/Sub emulator is running; --pubsub={cfg.pubsub} takes effect after "
            "'leadflow local down'")
    plans = {
        "pubsub": (cfg.pubsub_port, ["--host", cfg.host, "--port", str(cfg.pubsub_port)], pubsub_ready),
        "bigquery": (cfg.bigquery_port, ["--host", cfg.host, "--port", str(cfg.bigquery_port),
                                         "--grpc_port", str(cfg.bigquery_grpc_port)], bigquery_ready),
    }
    if cfg.scorer:
        plans["scorer"] = (cfg.scorer_port, ["serve", SCORER_SERVICE, "--host", cfg.host, "--port",
                                             str(cfg.scorer_port)], scorer_ready)
    for name, (port, args, ready) in plans.items():
        if name in services:
            kind = f", {services[name].kind} emulator" if services[name].kind else ""
            out(f"{name}: already running (pid {services[name].pid}{kind}) on {cfg.host}:{port}")
            continue
        if port_open(cfg.host, port):
            if name in stale:  # our crashed service's port: give the kernel a moment to release it
                deadline = time.monotonic() + 10
                while port_open(cfg.host, port) and time.monotonic() < deadline:
                    time.sleep(0.2)
            if port_open(cfg.host, port):
                raise StackError(f"port {port} is in use by another program ({listener(port)}); stop it or "
                                 f"choose another port (leadflow local up --{name}_port N)")
        if name == "scorer":
            tag = ensure_scorer_model(cfg, out)
            out(f"  scorer model: {tag}")
        if name == "bigquery" and cfg.identity_store.exists():
            # the emulator starts empty: persons the old identity state knows would never get a leads row again
            for suffix in ("", "-wal", "-shm"):
                Path(str(cfg.identity_store) + suffix).unlink(missing_ok=True)
            out("  identity state cleared (the BigQuery emulator starts empty)")
        started = time.monotonic()
        cmd = gcloud_pubsub.command(cfg.host, port) if name == "pubsub" and pubsub_kind == "gcloud" else None
        svc, proc = _start(cfg, name, args, cmd=cmd)
        if name == "pubsub":
            svc.kind = pubsub_kind
        services[name] = svc
        save_state(cfg, services)
        try:
            wait_for(lambda ready=ready: ready(cfg), f"{name} emulator", proc, Path(svc.log), timeout=90)
        except StackError:
            stop_pid(svc.pid)  # never leave a half-started service behind
            del services[name]
            save_state(cfg, services)
            raise
        kind = f", {svc.kind} emulator" if svc.kind else ""
        out(f"{name}: started (pid {svc.pid}{kind}) on {cfg.host}:{port} in {time.monotonic() - started:.1f} s; "
            f"log {svc.log}")
    for resource, how in ensure_pubsub_resources(cfg).items():
        out(f"  {how:>7}  {resource}")
    if cfg.gateway:
        start_gateway(cfg, services, out)
    from schemas.bigquery import client_for, ensure_dataset_and_tables

    client = client_for(cfg.project, cfg.bigquery_host)
    tables = ensure_dataset_and_tables(cfg.project, cfg.dataset, client=client, retention=cfg.retention)
    out(f"  bigquery {cfg.project}.{cfg.dataset}: " + ", ".join(str(t) for t in tables))
    if cfg.dashboard:
        start_dashboard(cfg, services, out)
    return services


def down(cfg: StackConfig, out=print) -> None:
    services = load_state(cfg)
    for name, svc in services.items():
        if pid_alive(svc.pid):
            stop_pid(svc.pid)
            out(f"{name}: stopped (pid {svc.pid})")
        else:
            out(f"{name}: was not running (stale pid {svc.pid})")
    for pid, svc in our_emulator_processes(cfg).items():
        if pid not in {s.pid for s in services.values()}:
            stop_pid(pid)
            out(f"{svc}: stopped stray emulator (pid {pid})")
    if state_path(cfg).exists():
        state_path(cfg).unlink()
    if not services:
        out("nothing was running")


def status(cfg: StackConfig, out=print) -> bool:
    services = load_state(cfg)
    healthy = bool(services)
    for name in SERVICE_MODULES:
        svc = services.get(name)
        optional_off = ((name == "scorer" and not cfg.scorer) or (name in ("gateway", "meta_graph") and not cfg.gateway)
                        or (name == "dashboard" and not cfg.dashboard))
        if svc is None and optional_off:
            continue
        if svc is None:
            out(f"{name}: not started")
            healthy = False
        elif not pid_alive(svc.pid):
            out(f"{name}: STALE (pid {svc.pid} is gone; run 'leadflow local up' or 'down')")
            healthy = False
        else:
            answering = port_open(cfg.host, svc.port, timeout=2.0)
            healthy &= answering
            kind = f", {svc.kind} emulator" if svc.kind else ""
            out(f"{name}: running (pid {svc.pid}{kind}) on {cfg.host}:{svc.port}"
                f"{'' if answering else ' but NOT answering'}; up {time.time() - svc.started_at:.0f} s")
    strays = {p: s for p, s in our_emulator_processes(cfg).items() if p not in {v.pid for v in services.values()}}
    for pid, svc in strays.items():
        out(f"stray {svc} emulator (pid {pid}) not in the state file")
    return healthy


def print_env(cfg: StackConfig, out=print) -> None:
    out("\nexport these to use the stack:")
    for k, v in cfg.env().items():
        out(f"  export {k}={v}")
    if cfg.gateway:
        out(f"\nthe gateway: {cfg.gateway_url} (SMTP {cfg.host}:{cfg.smtp_port}); the secrets and API key to send "
            f"with are in {cfg.home / 'gateway-client.json'}")
    if cfg.dashboard:
        out(f"\nthe lead-operations dashboard: {cfg.dashboard_url}")
    out("\nrun the streaming pipeline against it:")
    out("  leadflow run " + " ".join(cfg.pipeline_args()))


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="leadflow local", description="the local Pub/Sub + BigQuery stack")
    ap.add_argument("command", choices=("up", "down", "status", "env"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--pubsub_port", type=int, default=8085)
    ap.add_argument("--bigquery_port", type=int, default=9050)
    ap.add_argument("--bigquery_grpc_port", type=int, default=9060)
    ap.add_argument("--scorer_port", type=int, default=3000)
    ap.add_argument("--no_scorer", action="store_true", help="do not start the BentoML scorer")
    ap.add_argument("--no_gateway", dest="gateway", action="store_false",
                    help="do not start the ingestion gateway and its SMTP receiver (started by default)")
    ap.add_argument("--gateway", action="store_true", default=True, help=argparse.SUPPRESS)  # the default
    ap.add_argument("--gateway_port", type=int, default=8080)
    ap.add_argument("--smtp_port", type=int, default=2525)
    ap.add_argument("--meta_graph_port", type=int, default=8090, help="the Graph API stand-in (with the gateway)")
    ap.add_argument("--no_dashboard", dest="dashboard", action="store_false",
                    help="do not start the lead-operations dashboard (started by default)")
    ap.add_argument("--dashboard_port", type=int, default=8050)
    ap.add_argument("--project", default=PROJECT)
    ap.add_argument("--pubsub", choices=gcloud_pubsub.CHOICES, default=DEFAULT_PUBSUB,
                    help=f"the Pub/Sub emulator: the project's (builtin), Google's (gcloud) or gcloud's when "
                         f"installed (auto); default {DEFAULT_PUBSUB}")
    ap.add_argument("--no_crm_endpoints", action="store_true",
                    help="do not create the push subscriptions of schemas/crm_endpoints.toml")
    ap.add_argument("--dataset", default=DATASET)
    ap.add_argument("--retention", action="append", metavar="POLICY=DAYS",
                    help="days the tables of a retention policy keep their partitions, or 'none' (repeatable; "
                         "defaults: schemas/records.py RETENTION_DAYS, docs/runbook.md 'Retention')")
    args = ap.parse_args(argv)
    from schemas.bigquery import parse_retention

    try:
        retention = parse_retention(args.retention)
    except ValueError as e:
        ap.error(str(e))
    cfg = StackConfig(host=args.host, pubsub_port=args.pubsub_port, bigquery_port=args.bigquery_port,
                      bigquery_grpc_port=args.bigquery_grpc_port, scorer_port=args.scorer_port,
                      scorer=not args.no_scorer, project=args.project, dataset=args.dataset, gateway=args.gateway,
                      gateway_port=args.gateway_port, smtp_port=args.smtp_port, meta_graph_port=args.meta_graph_port,
                      dashboard=args.dashboard, dashboard_port=args.dashboard_port, retention=retention,
                      pubsub=args.pubsub)
    if args.command == "up" and not args.no_crm_endpoints:
        from schemas import crm_endpoints

        cfg.crm_endpoints = tuple(crm_endpoints.load())
    try:
        if args.command == "up":
            up(cfg)
            print_env(cfg)
        elif args.command == "down":
            down(cfg)
        elif args.command == "env":
            print_env(cfg)
        else:
            return 0 if status(cfg) else 1
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
