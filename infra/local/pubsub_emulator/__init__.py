"""In-memory gRPC Pub/Sub emulator speaking the real ``google.pubsub.v1`` Publisher and Subscriber services.

The official gcloud emulator (``gcloud beta emulators pubsub start --host-port=127.0.0.1:8085``) cannot be
installed everywhere, so Leadflow carries this drop-in replacement. The official ``google-cloud-pubsub`` client and
Beam's ``ReadFromPubSub`` / ``WriteToPubSub`` run unchanged against it.

Start it::

    python -m infra.local.pubsub_emulator --host 127.0.0.1 --port 8085      # logs "pubsub emulator ready on HOST:PORT"
    export PUBSUB_EMULATOR_HOST=127.0.0.1:8085                         # then use the clients as usual

or in-process::

    from infra.local.pubsub_emulator import serve
    emulator = serve(port=0)          # a free port; emulator.address == "127.0.0.1:NNNNN"
    ...
    emulator.stop()

``--min-ack-deadline N`` (default 10, like the real service) lowers the smallest ack deadline a subscription or
stream may have, so tests can watch a deadline lapse in 1 s. SIGTERM/SIGINT stop the server cleanly.
``python -m infra.local.pubsub_emulator.loadtest`` measures publish and pull throughput with the official client.

Implemented:

* Publisher: CreateTopic, GetTopic, UpdateTopic (labels, retention, storage policy, kms key, schema settings: all
  stored only), ListTopics (page_size/page_token), ListTopicSubscriptions, ListTopicSnapshots (always empty),
  DeleteTopic (its subscriptions keep their messages and get topic ``_deleted-topic_``), Publish (increasing string
  message ids, publish_time, attributes, ordering_key; INVALID_ARGUMENT for a message with neither data nor
  attributes, NOT_FOUND for an unknown topic).
* Subscriber: CreateSubscription (ack_deadline_seconds default 10, raised to the minimum, over 600 refused;
  enable_message_ordering; dead_letter_policy with max_delivery_attempts 5..100 (else OUT_OF_RANGE), default 5;
  retry_policy; filter; push_config), ModifyPushConfig, GetSubscription, UpdateSubscription (mutable
  fields via update_mask), ListSubscriptions, DeleteSubscription, Pull (waits at most 0.5 s for a first message
  unless return_immediately), StreamingPull (acks/modacks on the stream or by unary RPC, stream ack deadline, flow
  control by max_outstanding_messages/bytes, half-close and cancel end the stream), Acknowledge,
  ModifyAckDeadline (0 = nack: redelivered at once).
* Semantics: a subscription only gets messages published after it exists; fan-out to every subscription; ack
  deadlines lapse and the message is redelivered (background sweeper every 0.1 s); with message ordering, the
  waiting messages of an ordering key are pulled together in publish order once none of the key is outstanding
  (push: one at a time), and a nack takes the key's later messages back too; the retry policy's exponential
  backoff delays redeliveries; filters (``filters.py``, the documented syntax) select what a subscription gets;
  push subscriptions (``push.py``) POST the documented envelope or the unwrapped payload; unknown ack ids are
  INVALID_ARGUMENT; Publish takes at most 1,000 messages and 10 MB, attribute keys 256 bytes, values 1,024;
  dead-letter policy: after max_delivery_attempts failed deliveries (nack or lapsed deadline) the
  message is republished to the dead-letter topic with its attributes plus the real service's
  ``CloudPubSubDeadLetterSource*`` attributes, and removed from the subscription; ``delivery_attempt`` is set only
  on subscriptions with a dead-letter policy. Resource names are validated like the real service
  (``projects/{p}/topics/{t}``, ids of 3-255 chars starting with a letter, ``[A-Za-z0-9-_.~+%]``, not ``goog*``)
  and errors come back as NOT_FOUND / ALREADY_EXISTS / INVALID_ARGUMENT / UNIMPLEMENTED.

Not implemented: exactly-once delivery (accepted, not enforced; streams report it disabled), BigQuery / Cloud
Storage subscriptions (UNIMPLEMENTED), snapshots and Seek, schemas and the SchemaService (settings stored, messages
not validated), DetachSubscription, message retention/expiration (messages are kept until acked; acked messages
are not retained), subscription expiration policies, push flow control (a fixed 32 pushes in flight per
subscription), signed OIDC tokens (they are unsigned), the REST transport, IAM, and persistence (everything lives
in memory).
"""

from infra.local.pubsub_emulator.server import PubSubEmulator, PubSubState, serve, wait_ready

__all__ = ["PubSubEmulator", "PubSubState", "serve", "wait_ready"]
