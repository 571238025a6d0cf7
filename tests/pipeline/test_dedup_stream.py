"""The stateful dedup DoFn under TestStream: out-of-order arrivals, late data, expiry; and its
agreement with the bounded (GroupByKey) execution on the same complete input."""

import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.helpers.leads import T0, lead
from tests.helpers.recorder import Record, take
from transforms.dedup import DedupConfig, DeduplicatePersons

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


def run_stream(stream, matcher, hold=60, ttl_days=90):
    """Run DeduplicatePersons over a TestStream and check its events."""
    p = TestPipeline(options=streaming_options())
    out = p | stream | DeduplicatePersons(DedupConfig(hold_seconds=hold, ttl_days=ttl_days))
    name = f"dedup-{uuid.uuid4()}"
    out.events | "Triples" >> beam.Map(lambda e: (e.message_id, e.outcome, e.lead_id)) | beam.Map(Record(name))
    result = p.run()
    result.wait_until_finish()
    matcher(take(name))


def test_out_of_order_within_the_hold_earliest_event_time_is_primary():
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([stamped(lead("sms", source="twilio_sms", event_s=100, publish_s=100))])
        .advance_watermark_to(BASE + 120)  # 20 s before the hold of 'sms' ends
        .add_elements([stamped(lead("form", source="google_ads_lead_form", event_s=5, publish_s=130))])
        .advance_watermark_to_infinity()
    )
    run_stream(stream, same_lead_groups([("form", "new"), ("sms", "cross_source")], [{"form", "sms"}]))


def test_late_data_never_creates_a_second_lead():
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([stamped(lead("first", source="meta_lead_ads", event_s=50, publish_s=50))])
        .advance_watermark_to(BASE + 1000)  # 'first' is decided as new
        # Late: behind the watermark, with an earlier provider event time, from another source.
        .add_elements([TimestampedValue(lead("late", source="knowlarity_call", event_s=10, publish_s=20), BASE + 20)])
        .advance_watermark_to(BASE + 2000)
        .add_elements([stamped(lead("first", source="meta_lead_ads", event_s=50, publish_s=1990))])  # redelivery
        .advance_watermark_to_infinity()
    )
    run_stream(stream, same_lead_groups([("first", "new"), ("first", "replay"), ("late", "cross_source")],
                                        [{"first", "late"}]))


def test_expiry_timer_clears_the_state():
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([stamped(lead("a", event_s=0))])
        .advance_watermark_to(BASE + DAY // 2)
        .add_elements([stamped(lead("b", source="api", event_s=DAY // 2))])
        .advance_watermark_to(BASE + 3 * DAY)  # past b + ttl (1 day): the expiry timer clears the state
        # Late, only 0.1 day after b: the decision's own TTL check would call it a duplicate of b;
        # it is new only because the timer really dropped the state.
        .add_elements([TimestampedValue(lead("d", source="api", event_s=0.6 * DAY), BASE + 0.6 * DAY)])
        .advance_watermark_to(BASE + 3 * DAY + 1)
        .add_elements([stamped(lead("c", source="api", event_s=3 * DAY + 10))])
        .advance_watermark_to_infinity()
    )
    run_stream(stream, same_lead_groups([("a", "new"), ("b", "cross_source"), ("d", "new"), ("c", "new")],
                                        [{"a", "b"}, {"d"}, {"c"}]), ttl_days=1)


def test_streaming_and_bounded_executions_agree():
    leads = [
        lead(f"m{i}", key=f"phone:+1415555{i % 7:04d}", source=["meta_lead_ads", "api", "twilio_sms"][i % 3],
             event_s=(i * 37) % 500, publish_s=i * 3, external_id=f"x{i % 11}")
        for i in range(60)
    ] + [lead("m5", key="phone:+14155550005", source="api", event_s=185, publish_s=15, external_id="x5")]
    with TestPipeline(options=PipelineOptions([])) as p:
        out = p | beam.Create([stamped(ld) for ld in leads]) | DeduplicatePersons(DedupConfig(hold_seconds=10_000))
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
    run_stream(stream.advance_watermark_to_infinity(), lambda got: assert_matches(got, bounded), hold=10_000)


def assert_matches(actual, expected):
    assert sorted(actual) == sorted(expected)
