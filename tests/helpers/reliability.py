"""The reliability scenarios' helpers: a TCP proxy that can cut BigQuery off, the run's ledger, and waiting."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.local import stack as local_stack
from infra.local.processes import free_port


class TcpProxy:
    """A TCP forwarder 127.0.0.1:port -> target. ``cut()`` closes the listener and resets every open connection;
    ``restore()`` listens on the same port again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                c.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns -= {src, dst}


@dataclass
class Run:
    """The stack, the running pipeline and the ledger of what was published (the "expected" side)."""

    cfg: local_stack.StackConfig
    pipeline: subprocess.Popen
    log_path: Path
    bq_proxy: TcpProxy
    units: int = 0  # published units so far (messages, plus extra CSV rows)
    persons: set[str] = field(default_factory=set)  # phones of everybody with a good unit
    batches: dict[str, list[str]] = field(default_factory=dict)  # batch name -> Pub/Sub message ids
    command: list[str] = field(default_factory=list)  # how the pipeline was started (to start it again)
    env: dict[str, str] = field(default_factory=dict)

    def restart(self) -> None:
        """Start the pipeline again (after it was killed), writing on to the same log."""
        with self.log_path.open("ab") as log:
            self.pipeline = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env)

    @property
    def dataset(self) -> str:
        return f"{self.cfg.project}.{self.cfg.dataset}"

    def client(self):
        from schemas.bigquery import client_for

        return client_for(self.cfg.project, self.cfg.bigquery_host)  # direct, never through the proxy


def wait_until(check, timeout: float, what: str, pipeline: subprocess.Popen | None = None, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if pipeline is not None and pipeline.poll() is not None:
            raise AssertionError(f"the pipeline exited with code {pipeline.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
