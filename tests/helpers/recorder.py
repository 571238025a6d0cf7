"""Collect pipeline output in this process (the DirectRunner runs DoFns in-process).

Beam's ``assert_that`` misses output that stateful DoFns emit from timers in streaming on the
DirectRunner (apache/beam#18987, BEAM-5295); Beam's own state-and-timer tests record output in a
module-level list instead, and so do these.
"""

import threading
from collections import defaultdict

_LOCK = threading.Lock()
_RECORDS: dict[str, list] = defaultdict(list)


class Record:
    """A picklable callable appending each element to the named in-process list."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, element):
        with _LOCK:
            _RECORDS[self.name].append(element)
        return element


def take(name: str) -> list:
    with _LOCK:
        return _RECORDS.pop(name, [])
