"""Daily source counts: per source and UTC day, events / new leads / cross-source / duplicates / replays.

The seed system mutated ``total`` and ``today`` counters on each source row; here they are derived:
a one-day fixed window on the event timestamp, counted per source. In streaming the window fires
early (every ``early_firing_seconds``) with accumulated counts, on time at the end of the day, and
late for data up to ``allowed_lateness_days`` behind; each firing is a row with its ``pane_index``,
and the row with the highest pane index of a (source, day) is the current figure.
"""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from schemas.records import LeadEvent, SourceDailyCounts
from transforms.dedup import CROSS_SOURCE, DUPLICATE_SAME_SOURCE, NEW, REPLAY
from transforms.messages import utcnow

DAY_SECONDS = 86400
_FIELDS = {NEW: 1, CROSS_SOURCE: 2, DUPLICATE_SAME_SOURCE: 3, REPLAY: 4}


class CountOutcomes(beam.CombineFn):
    """[events, new, cross_source, duplicates, replays] for the events of one key."""

    def create_accumulator(self):
        return [0, 0, 0, 0, 0]

    def add_input(self, acc, outcome):
        acc[0] += 1
        acc[_FIELDS[outcome]] += 1
        return acc

    def merge_accumulators(self, accs):
        out = [0, 0, 0, 0, 0]
        for a in accs:
            for i, v in enumerate(a):
                out[i] += v
        return out

    def extract_output(self, acc):
        return list(acc)


def to_counts_row(source_id: str, counts: list[int], window_start: float, pane) -> SourceDailyCounts:
    return SourceDailyCounts(
        source_id=source_id,
        event_date=datetime.fromtimestamp(window_start, tz=UTC).date(),
        events=counts[0], new_leads=counts[1], cross_source=counts[2], duplicates=counts[3], replays=counts[4],
        is_final=pane.timing != beam.utils.windowed_value.PaneInfoTiming.EARLY,
        pane_index=pane.index, computed_at=utcnow(),
    )


class FormatCountsDoFn(beam.DoFn):
    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        source_id, counts = element
        yield to_counts_row(source_id, counts, float(win.start), pane)


class DailySourceCounts(beam.PTransform):
    """LeadEvent -> SourceDailyCounts, one-day windows on the event timestamp."""

    def __init__(self, early_firing_seconds: int = 60, allowed_lateness_days: int = 7):
        super().__init__()
        self.early_firing_seconds = early_firing_seconds
        self.allowed_lateness_days = allowed_lateness_days

    def expand(self, events):
        if events.is_bounded:
            # All data is present: one on-time pane per day (the batch runner has no processing-time clock).
            windowing = beam.WindowInto(window.FixedWindows(DAY_SECONDS))
        else:
            windowing = beam.WindowInto(
                window.FixedWindows(DAY_SECONDS),
                trigger=trigger.AfterWatermark(
                    early=trigger.AfterProcessingTime(self.early_firing_seconds),
                    late=trigger.AfterCount(1),
                ),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=Duration(seconds=self.allowed_lateness_days * DAY_SECONDS),
            )
        return (
            events
            | "KeyBySource" >> beam.Map(lambda e: (e.source_id, e.outcome)).with_input_types(LeadEvent)
            | "DailyWindows" >> windowing
            | "CountPerSource" >> beam.CombinePerKey(CountOutcomes())
            | "FormatCounts" >> beam.ParDo(FormatCountsDoFn())
        )
