"""Let the official Pub/Sub clients receive 10 MB messages from an emulator, as they do from the real service.

Pub/Sub accepts messages up to 10 MB, and ``google-cloud-pubsub`` opens its production channel with
``grpc.max_receive_message_length = -1``. When ``PUBSUB_EMULATOR_HOST`` is set, however, the generated client opens
``grpc.insecure_channel(target=PUBSUB_EMULATOR_HOST)`` with gRPC's defaults, so any pull answer above 4 MiB fails
with ``RESOURCE_EXHAUSTED: Received message larger than max (9900091 vs. 4194304)`` (googleapis/google-cloud-python
#10056, open). Beam's DirectRunner reads Pub/Sub with that client, so one large message ends a local streaming
pipeline that would run on in Dataflow.

:func:`lift_emulator_message_limit` gives the emulator channels the same message limits as the production
transport. It changes only the ``grpc`` name seen by the Publisher and Subscriber client modules (every other gRPC
user in the process keeps its own defaults), applies only while ``PUBSUB_EMULATOR_HOST`` is set, and is idempotent.
"""

from __future__ import annotations

import os
import types
from typing import Any

import grpc

# The production transport's options (google/pubsub_v1/services/*/transports/grpc.py).
UNLIMITED = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))


class _GrpcForEmulator(types.ModuleType):
    """``grpc`` with ``insecure_channel`` opening channels without the 4 MiB receive limit."""

    def __init__(self) -> None:
        super().__init__("grpc")

    def __getattr__(self, name: str) -> Any:
        return getattr(grpc, name)

    @staticmethod
    def insecure_channel(target: str, options: Any = None, compression: Any = None) -> grpc.Channel:
        merged = dict(UNLIMITED)
        merged.update(dict(options or ()))
        return grpc.insecure_channel(target, options=list(merged.items()), compression=compression)


def lift_emulator_message_limit() -> bool:
    """Patch the Publisher/Subscriber client modules when PUBSUB_EMULATOR_HOST is set; True when patched."""
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        return False
    from google.pubsub_v1.services.publisher import client as publisher_client
    from google.pubsub_v1.services.subscriber import client as subscriber_client

    for module in (publisher_client, subscriber_client):
        if not isinstance(module.grpc, _GrpcForEmulator):
            module.grpc = _GrpcForEmulator()
    return True
