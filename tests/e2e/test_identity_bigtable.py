"""The identity store on Bigtable, against Google's Bigtable emulator when this machine has it (skipped otherwise):
the same decisions as in memory, and a new job on the same table knows everyone."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from infra.local.processes import free_port, stop_process
from tests.helpers.leads import lead
from transforms.identity import CROSS_SOURCE, IdentityConfig, Resolver, decide_in_order
from transforms.identity_store import MemoryStore, open_store

pytestmark = pytest.mark.e2e
SDK_EMULATOR = "/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator"  # google-cloud-cli-bigtable-emulator
EMULATOR = next((p for p in (shutil.which("cbtemulator"), SDK_EMULATOR) if p and Path(p).exists()), None)


@pytest.fixture(scope="module")
def bigtable():
    if EMULATOR is None:
        pytest.skip("the Bigtable emulator (google-cloud-cli-bigtable-emulator) is not installed")
    port = free_port()
    proc = subprocess.Popen([EMULATOR, "-host", "127.0.0.1", "-port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    saved = os.environ.get("BIGTABLE_EMULATOR_HOST")
    os.environ["BIGTABLE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    try:
        yield "bigtable:projects/leadflow-local/instances/identity/tables/identity"
    finally:
        if saved is None:
            os.environ.pop("BIGTABLE_EMULATOR_HOST", None)
        else:
            os.environ["BIGTABLE_EMULATOR_HOST"] = saved
        stop_process(proc)


def events():
    return [lead("m1", phone="+14155550101", source="call", event_s=0),
            lead("m2", email="ann@example.org", source="web", event_s=10),
            lead("m3", phone="+14155550101", email="ann@example.org", source="meta", event_s=20),
            lead("m4", phone="+14155550102", email="ann@example.org", source="api", event_s=5, publish_s=30)]


def test_bigtable_store_decides_like_memory_and_survives_a_new_job(bigtable):
    on_bigtable = decide_in_order(Resolver(open_store(bigtable, create=True), IdentityConfig(), key=b"t"), events())
    in_memory = decide_in_order(Resolver(MemoryStore(), IdentityConfig(), key=b"t"), events())

    def shape(ds):
        return [(d.outcome, d.event.lead_id, [m.merged_lead_id for m in d.merges], [v.change for v in d.versions])
                for d in ds]
    assert shape(on_bigtable) == shape(in_memory)
    later = Resolver(open_store(bigtable), IdentityConfig(), key=b"t").decide(
        lead("m5", email="ann@example.org", source="sms", event_s=40))
    assert (later.outcome, later.event.lead_id) == (CROSS_SOURCE, on_bigtable[0].event.lead_id)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "bigtable"])
def test_every_store_deletes_rows_by_key(kind, bigtable, tmp_path):
    """What ``leadflow forget`` needs of a store: the rows named go, the others stay."""
    spec = {"memory": "memory", "sqlite": f"sqlite:{tmp_path / 'i.sqlite'}",
            "bigtable": bigtable.replace("tables/identity", "tables/deletes")}[kind]
    store = open_store(spec, create=True)
    try:
        store.put({"p:a": {"x": 1}, "p:b": {"x": 2}, "i:c": {"x": 3}})
        store.delete(["p:a", "i:c", "p:missing"])
        assert store.get(["p:a", "p:b", "i:c"]) == {"p:b": {"x": 2}}
    finally:
        store.close()
