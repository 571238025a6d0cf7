"""infra.local.direct: the DirectRunner's per-bundle DoFn inspection memoized per class, each DoFn serialized once.

Both must give exactly what Beam gives without them, for every DoFn of the pipeline's graph and for the cases the
memo must not serve (a DoFn that binds its own methods, a DoFn that cannot be pickled)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec

from infra.local import direct
from infra.local.stack import StackConfig
from pipelines import lead_pipeline
from pipelines.options import LeadflowOptions


@pytest.fixture
def speedups():
    direct.speed_up_direct_runner()
    yield
    direct.restore()
    direct.speed_up_direct_runner()  # as tests/conftest.py installed them for the rest of the session


def graph_dofns(args: list[str]) -> list[tuple[str, beam.DoFn]]:
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(args)
    p = beam.Pipeline(options=options)
    lead_pipeline.build(p, options.view_as(LeadflowOptions))
    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                found.append((node.full_label, node.transform.fn))

    p.visit(Visitor())
    return found


class Counter(beam.DoFn):
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
    FLUSH = TimerSpec("flush", beam.TimeDomain.REAL_TIME)

    def process(self, kv, count=beam.DoFn.StateParam(COUNT), flush=beam.DoFn.TimerParam(FLUSH)):
        yield kv

    @userstate.on_timer(FLUSH)
    def on_flush(self, count=beam.DoFn.StateParam(COUNT)):
        return []


class Holder:
    def stateful_process(self, kv, count=beam.DoFn.StateParam(Counter.COUNT)):
        yield kv


class Delegating(beam.DoFn):
    def __init__(self):
        self.process = Holder().stateful_process  # an instance attribute holding a bound method


class Unpicklable:
    def __reduce__(self):
        raise TypeError("Unpicklable refuses to be pickled")


class Duplicated(beam.DoFn):
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, kv, a=beam.DoFn.StateParam(COUNT), b=beam.DoFn.StateParam(COUNT)):
        yield kv


def test_every_dofn_of_the_streaming_graph_gets_the_specs_beam_computes(speedups):
    dofns = graph_dofns(StackConfig().pipeline_args())
    assert len(dofns) > 40
    stateful = set()
    for label, fn in dofns:
        expected = direct._ORIGINAL(fn)
        for _ in range(2):  # computed, then from the memo
            assert direct.cached_get_dofn_specs(fn) == expected, label
        copy = transform_evaluator.pickler.roundtrip(fn)  # what the runner processes a bundle with
        assert userstate.get_dofn_specs(copy) == expected, label
        assert transform_evaluator.get_dofn_specs(copy) == expected, label
        if any(expected):
            stateful.add(label)
    assert {"Leads/Dedup/DecidePerPerson/ParDo(DedupDoFn)", "Leads/Route/Dispatch/ParDo(DispatchDoFn)",
            "Leads/RegisterSources/RegisterOnce"} <= stateful, stateful


def test_a_dofn_binding_its_own_methods_is_never_served_from_the_memo(speedups):
    plain = beam.Map(len).dofn  # process: a plain function in the instance, which Beam does not inspect
    bound = Delegating()
    assert direct.specs_cache_key(bound) is None
    assert direct.specs_cache_key(plain)[0] is type(plain) and "process" in direct.specs_cache_key(plain)[1]
    assert userstate.get_dofn_specs(plain) == (set(), set())
    assert userstate.get_dofn_specs(bound) == ({Counter.COUNT}, set())
    assert userstate.is_stateful_dofn(bound) and not userstate.is_stateful_dofn(plain)
    assert userstate.get_dofn_specs(Counter()) == ({Counter.COUNT}, {Counter.FLUSH})
    returned = userstate.get_dofn_specs(Counter())[0]
    returned.clear()  # a caller changing its set must not change the memo
    assert userstate.get_dofn_specs(Counter()) == ({Counter.COUNT}, {Counter.FLUSH})


def test_errors_are_raised_every_time_not_memoized(speedups):
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate"):
            userstate.get_dofn_specs(Duplicated())


def test_each_dofn_is_serialized_once_and_every_bundle_gets_its_own_copy(speedups):
    once = transform_evaluator.pickler
    fn = Counter()
    before = once.dumps_calls
    copies = [once.roundtrip(fn) for _ in range(3)]
    assert once.dumps_calls == before + 1
    assert len({id(c) for c in copies}) == 3 and fn not in copies
    assert all(type(c) is Counter for c in copies)
    for _ in range(2):  # cannot be pickled: fails at every bundle, as without the memo
        with pytest.raises(Exception, match="refuses to be pickled"):
            once.roundtrip(beam.Map(lambda x, bad=Unpicklable(): x).dofn)


def test_the_memo_is_the_runner_s_view_only_while_installed():
    direct.restore()
    try:
        assert userstate.get_dofn_specs is direct._ORIGINAL
        assert transform_evaluator.pickler is direct.pickler
    finally:
        direct.speed_up_direct_runner()
    assert userstate.get_dofn_specs is direct.cached_get_dofn_specs
    assert transform_evaluator.get_dofn_specs is direct.cached_get_dofn_specs
    assert isinstance(transform_evaluator.pickler, direct._PicklerSerializingOnce)


def test_a_read_asks_for_waiting_messages_only_and_an_idle_pipeline_pauses(monkeypatch):
    """The runner's pull (max 10, the server may hold it) becomes: up to 100, return at once; pause only when idle."""
    from types import SimpleNamespace

    calls, pauses = [], []

    class Client:
        waiting = 0

        def pull(self, **kwargs):
            calls.append(kwargs)
            return SimpleNamespace(received_messages=[object()] * self.waiting)

    monkeypatch.setattr(direct.time, "sleep", pauses.append)
    clock = iter([100.0, 100.01, 100.02, 100.5, 100.6])
    monkeypatch.setattr(direct.time, "monotonic", lambda: next(clock))
    client = Client()
    reads = direct._PullingMore(client)
    pull = {"subscription": "projects/p/subscriptions/s", "max_messages": 10, "timeout": 30}  # as the runner asks

    client.waiting = 3
    assert len(reads.pull(**pull).received_messages) == 3
    client.waiting = 0
    reads.pull(**pull)  # 10 ms after a read with data: the wave goes on, no pause
    reads.pull(**pull)
    assert pauses == []
    reads.pull(**pull)  # nothing read for 0.5 s: idle
    reads.pull(**pull)
    assert pauses == [direct.EMPTY_READ_PAUSE_SECONDS] * 2
    assert all(c["max_messages"] == direct.PULL_MAX_MESSAGES and c["return_immediately"] is True for c in calls)
    assert all(c["subscription"] == pull["subscription"] and c["timeout"] == 30 for c in calls)
