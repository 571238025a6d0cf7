"""The dedup stage under TestStream: decided on arrival (no hold), corrections of the primary by late
arrivals, late data, merges; and its agreement with the bounded execution on the same complete input."""

import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.helpers.leads import T0, lead
from tests.helpers.recorder import Record, take
from transforms.dedup import DeduplicatePersons
from transforms.identity import IdentityConfig

BASE = T0.timestamp()
DAY = 86400


def stamped(ld):
    return TimestampedValue(ld, ld.publish_time.timestamp())


def streaming_options():
    opts = PipelineOptions([])
    opts.view_as(StandardOptions).streaming = True
    return opts


def same_lead_groups(expected_outcomes, groups):
    """Matcher: outcomes as expected, and message ids grouped by lead id as ``groups`` says."""

    def check(actual):
        assert sorted((m, o) for m, o, _ in actual) == sorted(expected_outcomes)
        by_lead = {}
        for m, _, lead_id in actual:
            by_lead.setdefault(lead_id, set()).add(m)
        assert sorted(map(sorted, by_lead.values())) == sorted(map(sorted, groups))

    return check


def run_stream(stream, matcher, ttl_days=90, versions=None):
    """Run DeduplicatePersons over a TestStream and check its events (and, optionally, its versions)."""
    p = TestPipeline(options=streaming_options())
    out = p | stream | DeduplicatePersons(IdentityConfig(ttl_days=ttl_days))
    name = f"dedup-{uuid.uuid4()}"
    out.events | "Triples" >> beam.Map(lambda e: (e.message_id, e.outcome, e.lead_id)) | beam.Map(Record(name))
    out.versions | "Versions" >> beam.Map(lambda v: (v.change, v.primary_source)) | beam.Map(Record(name + "v"))
    result = p.run()
    result.wait_until_finish()
    matcher(take(name))
    if versions is not None:
        versions(take(name + "v"))


def test_a_new_person_is_decided_at_once_and_corrected_by_an_earlier_event_arriving_later():
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([stamped(lead("sms", source="twilio_sms", event_s=100, publish_s=100))])
        .advance_watermark_to(BASE + 120)
        .add_elements([stamped(lead("form", source="google_ads_lead_form", event_s=5, publish_s=130))])
        .advance_watermark_to_infinity()
    )

    def corrected(versions):
        assert sorted(versions) == [("created", "twilio_sms"), ("new_source", None),
                                    ("primary_corrected", "google_ads_lead_form")]

    run_stream(stream, same_lead_groups([("sms", "new"), ("form", "cross_source")], [{"form", "sms"}]),
               versions=corrected)


def test_late_data_never_creates_a_second_lead():
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([stamped(lead("first", source="meta_lead_ads", event_s=50, publish_s=50))])
        .advance_watermark_to(BASE + 1000)
        # Late: behind the watermark, with an earlier provider event time, from another source.
        .add_elements([TimestampedValue(lead("late", source="knowlarity_call", event_s=10, publish_s=20), BASE + 20)])
        .advance_watermark_to(BASE + 2000)
        .add_elements([stamped(lead("first", source="meta_lead_ads", event_s=50, publish_s=1990))])  # redelivery
        .advance_watermark_to_infinity()
    )
    run_stream(stream, same_lead_groups([("first", "new"), ("first", "replay"), ("late", "cross_source")],
                                        [{"first", "late"}]))


def test_an_event_linking_two_persons_merges_them_on_arrival():
    P, E = "+14155550101", "ann@example.org"
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([stamped(lead("call", phone=P, source="knowlarity_call", event_s=0))])
        .advance_watermark_to(BASE + 10)
        .add_elements([stamped(lead("web", email=E, source="api", event_s=10))])
        .advance_watermark_to(BASE + 20)
        .add_elements([stamped(lead("form", phone=P, email=E, source="meta_lead_ads", event_s=20))])
        .advance_watermark_to_infinity()
    )

    def merged(actual):
        assert sorted((m, o) for m, o, _ in actual) == [("call", "new"), ("form", "cross_source"), ("web", "new")]
        lead_of = {m: lead_id for m, _, lead_id in actual}
        assert lead_of["form"] == lead_of["call"] != lead_of["web"]  # the older lead survives

    run_stream(stream, merged, versions=lambda vs: {"merged", "merged_into"} <= {c for c, _ in vs})


def test_streaming_and_bounded_executions_agree():
    leads = [
        lead(f"m{i}", key=f"phone:+1415555{i % 7:04d}", source=["meta_lead_ads", "api", "twilio_sms"][i % 3],
             event_s=(i * 37) % 500, publish_s=i * 3, external_id=f"x{i % 11}")
        for i in range(60)
    ] + [lead("m5", key="phone:+14155550005", source="api", event_s=185, publish_s=15, external_id="x5")]
    with TestPipeline(options=PipelineOptions([])) as p:
        out = p | beam.Create([stamped(ld) for ld in leads]) | DeduplicatePersons()
        out.events | beam.Map(lambda e: (e.message_id, e.outcome, e.lead_id)) | beam.Map(Record("bounded"))
    bounded = take("bounded")
    assert len(bounded) == len(leads)
    assert {o for _, o, _ in bounded} == {"new", "duplicate_same_source", "cross_source", "replay"}

    watermark = BASE - 1
    stream = TestStream().advance_watermark_to(watermark)
    for ld in sorted(leads, key=lambda x: x.publish_time):
        stream = stream.add_elements([stamped(ld)])
        if ld.publish_time.timestamp() > watermark:
            watermark = ld.publish_time.timestamp()
            stream = stream.advance_watermark_to(watermark)
    run_stream(stream.advance_watermark_to_infinity(), lambda got: assert_same_persons(got, bounded))


def assert_same_persons(actual, expected):
    """The same events, grouped into the same persons (lead ids and outcomes depend on arrival order)."""
    def groups(rows):
        by_lead = {}
        for m, _, lead_id in rows:
            by_lead.setdefault(lead_id, set()).add(m)
        return sorted(map(sorted, by_lead.values()))

    assert sorted(m for m, _, _ in actual) == sorted(m for m, _, _ in expected)
    assert groups(actual) == groups(expected)


def test_a_streaming_job_ends_an_erased_persons_redelivery_as_a_dead_letter_and_a_new_inquiry_as_a_lead():
    from datetime import timedelta

    from pipelines.ops import forget
    from transforms.identity import ERASED_TYPE, ERASURES_KEY, Resolver, identifier_hash, micros
    from transforms.identity_store import MemoryStore

    name = f"memory:erasure-{uuid.uuid4().hex}"
    store = MemoryStore.named(name.removeprefix("memory:"))
    first = Resolver(store, IdentityConfig()).decide(lead("a1", phone="+14155550101", event_s=10))
    erased_at = T0 + timedelta(seconds=1000)
    person = forget.Person(lead_ids={first.event.lead_id}, phones={"+14155550101"}, units={"a1"})
    store.put({**forget.tombstones(person, store, Resolver(store).key, erased_at),
               ERASURES_KEY: {"n": 1, "at": micros(erased_at)}})
    store.delete([f"p:{first.event.lead_id}", f"i:{identifier_hash('phone', '+14155550101', Resolver(store).key)}"])

    stream = (TestStream().advance_watermark_to(BASE)
              .add_elements([stamped(lead("a1", phone="+14155550101", event_s=10, publish_s=1500)),
                             stamped(lead("a-new", phone="+14155550101", event_s=2000))])
              .advance_watermark_to_infinity())
    p = TestPipeline(options=streaming_options())
    out = p | stream | DeduplicatePersons(IdentityConfig(store=name))
    rec = f"erased-{uuid.uuid4()}"
    out.events | "Events" >> beam.Map(lambda e: ("event", e.message_id, e.outcome, e.lead_id)) | beam.Map(Record(rec))
    out.dead_letters | "Dead" >> beam.Map(lambda d: ("dead", d.message_id, d.error_type, d.payload)) | beam.Map(
        Record(rec))
    p.run().wait_until_finish()
    got = sorted(take(rec))
    assert got[0] == ("dead", "a1", ERASED_TYPE, None)
    assert got[1][:3] == ("event", "a-new", "new") and got[1][3] != first.event.lead_id
    assert len(got) == 2
