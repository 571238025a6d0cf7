"""Local runs on Beam's DirectRunner: two per-bundle costs removed, and bigger Pub/Sub reads.

A py-spy profile of the streaming pipeline put most of the DirectRunner's samples in
``apache_beam.transforms.userstate.get_dofn_specs`` (figures: docs/performance.md, "Profile: the streaming
DirectRunner"). The runner asks "is this DoFn stateful?" four or five times for every bundle of every ParDo (when
scheduling it, when starting the bundle, when building the DoFnRunner and its signature, when validating it), and
each answer calls ``inspect.signature`` on every method of the DoFn. The streaming read hands over at most 10
messages a bundle, so every ParDo pays this again for every few messages.

The answer depends only on the DoFn's class: state and timer specs are declared as default arguments of methods
defined on the class. :func:`speed_up_direct_runner` memoizes ``get_dofn_specs`` per class. A DoFn instance holding
its own bound methods (an attribute set to ``obj.method``) is never memoized, and instance attributes that hide
class attributes (``beam.Map`` stores a plain wrapper function as ``process``, which Beam does not inspect) are
part of the key, so every DoFn gets the answer Beam itself would give. Errors (a
DoFn with duplicate state parameters) are raised every time and never cached.

The second cost (the largest left in the profile once the first was gone): for every bundle of every ParDo the
runner checks that the DoFn survives pickling, ``pickler.roundtrip(transform.dofn)``, and processes the bundle with
the fresh copy. The copy is what makes the check worth having (no state shared across bundles by accident), but
serializing the same unchanged DoFn again for every bundle is not: Beam's own comment at the call site reads
"TODO(aaltay): Consider storing the serialized form as an optimization". :func:`speed_up_direct_runner` does that:
each DoFn is serialized once (so a DoFn that cannot be pickled still fails at its first bundle) and every bundle
still gets its own unpickled copy. The graph's DoFn objects themselves are never run, so their serialized form
cannot go stale.

Third, the streaming DirectRunner reads Pub/Sub with ``pull(max_messages=10)`` and schedules the next read only once
every other step of the graph is idle and no timer fired in that round. One read therefore feeds one "wave" through
the graph, and the wave, not the CPU, set the pace (figures: docs/performance.md, "Profile: the streaming
DirectRunner"). :func:`speed_up_direct_runner` lets each read take up to ``PULL_MAX_MESSAGES`` (100) messages that
are already waiting, and asks the server not to hold an empty read (``return_immediately``): the runner executes
every step on one thread (``NUM_WORKERS = 1``), so an empty read of the agent-event subscription held for 0.5 s by
the emulator delayed every wave of leads by as much. An idle pipeline pauses 50 ms a read instead of spinning. The
DirectRunner acknowledges what it pulled before processing it (its own comment: it does not retry work items), so
a crash of the local pipeline can lose up to one read, as before but with bigger reads. Dataflow reads Pub/Sub
natively and acknowledges after the data is checkpointed.

Only ``infra.local.speedups.apply()`` calls this, from the local entry points; the job itself never imports it.
"""

from __future__ import annotations

import functools
import threading
import time
import types
import warnings
import weakref
from typing import Any

from apache_beam.internal import pickler
from apache_beam.runners.direct import transform_evaluator
from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator
from apache_beam.transforms import userstate

_ORIGINAL = userstate.get_dofn_specs
_ORIGINAL_SUBSCRIBER_CLIENT = _PubSubReadEvaluator.__dict__["_get_subscriber_client"]  # the classmethod object
_CACHE: dict[tuple[type, tuple[str, ...]], tuple[set, set]] = {}
_LOCK = threading.Lock()


def specs_cache_key(dofn: Any) -> tuple[type, tuple[str, ...]] | None:
    """(class, names of instance attributes hiding class attributes); None when the instance binds its own methods."""
    cls = type(dofn)
    attrs = getattr(dofn, "__dict__", {})
    hidden = []
    for name, value in attrs.items():
        if isinstance(value, types.MethodType):
            return None
        if hasattr(cls, name):
            hidden.append(name)
    return cls, tuple(sorted(hidden))


@functools.wraps(_ORIGINAL)
def cached_get_dofn_specs(dofn: Any) -> tuple[set, set]:
    key = specs_cache_key(dofn)
    if key is None:
        return _ORIGINAL(dofn)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _ORIGINAL(dofn)
        with _LOCK:
            _CACHE[key] = hit
    state, timers = hit
    return set(state), set(timers)  # callers get their own sets, as from the original


class _PicklerSerializingOnce(types.ModuleType):
    """``apache_beam.internal.pickler`` whose ``roundtrip`` serializes each object once and unpickles every time."""

    def __init__(self) -> None:
        super().__init__(pickler.__name__)
        self.serialized: dict[int, tuple[weakref.ref, str]] = {}  # by identity: a DoFn's __eq__ must not matter
        self.dumps_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(pickler, name)

    def roundtrip(self, obj: Any) -> Any:
        hit = self.serialized.get(id(obj))
        if hit is None or hit[0]() is not obj:
            try:
                ref = weakref.ref(obj, lambda _, key=id(obj): self.serialized.pop(key, None))
            except TypeError:  # not weak-referenceable: no cache
                return pickler.roundtrip(obj)
            hit = (ref, pickler.dumps(obj))
            self.dumps_calls += 1
            with _LOCK:
                self.serialized[id(obj)] = hit
        return pickler.loads(hit[1])


PULL_MAX_MESSAGES = 100
# An empty read returns at once (``return_immediately``); once no read has brought anything for this long, an empty
# read pauses this long, so an idle pipeline does not spin. Without it the server holds an empty Pull (0.5 s on the
# project's emulator, up to the RPC deadline on Google's), and every wave of leads waited for the empty read of the
# agent-event subscription: the runner executes every step on one thread.
EMPTY_READ_PAUSE_SECONDS = 0.05
_last_read_with_data = [0.0]  # time.monotonic() of the last read that brought messages, any subscription

warnings.filterwarnings("ignore", message="The return_immediately flag is deprecated", category=DeprecationWarning)


class _PullingMore:
    """A SubscriberClient whose ``pull`` asks for up to PULL_MAX_MESSAGES (the DirectRunner asks for 10) that are
    already waiting, without waiting for a first one (an idle pipeline pauses EMPTY_READ_PAUSE_SECONDS a read)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def pull(self, *args: Any, max_messages: int = 0, **kwargs: Any) -> Any:
        response = self._client.pull(*args, max_messages=max(max_messages, PULL_MAX_MESSAGES),
                                     return_immediately=True, **kwargs)
        now = time.monotonic()
        if response.received_messages:
            _last_read_with_data[0] = now
        elif now - _last_read_with_data[0] > EMPTY_READ_PAUSE_SECONDS:
            time.sleep(EMPTY_READ_PAUSE_SECONDS)
        return response


def _pulling_more(cls: Any, transform: Any) -> Any:
    return _PullingMore(_ORIGINAL_SUBSCRIBER_CLIENT.__func__(cls, transform))


# userstate.is_stateful_dofn looks get_dofn_specs up in its module; transform_evaluator imported it by name.
_SPECS_USERS = (userstate, transform_evaluator)


def speed_up_direct_runner() -> None:
    """Memoize ``get_dofn_specs`` per DoFn class, serialize each DoFn once, read up to 100 messages (idempotent)."""
    for module in _SPECS_USERS:
        module.get_dofn_specs = cached_get_dofn_specs
    if not isinstance(transform_evaluator.pickler, _PicklerSerializingOnce):
        transform_evaluator.pickler = _PicklerSerializingOnce()
    _PubSubReadEvaluator._get_subscriber_client = classmethod(_pulling_more)


def restore() -> None:
    """Beam's own behaviour again (tests)."""
    for module in _SPECS_USERS:
        module.get_dofn_specs = _ORIGINAL
    transform_evaluator.pickler = pickler
    _PubSubReadEvaluator._get_subscriber_client = _ORIGINAL_SUBSCRIBER_CLIENT
    _CACHE.clear()
