"""Generate realistic lead messages, with the ground truth a test or benchmark checks against.

The mix: every provider (Meta, Google Ads, Knowlarity, Twilio SMS and voice, provider e-mails,
API, CSV uploads), people who come back through the same source (duplicates) or another one
(cross-source), exact redeliveries (replays), deliveries out of event-time order, and bad inputs
of every kind the pipeline must dead-letter. Everything is deterministic given the seed.

    python -m pipelines.synthetic.generate --messages 100000 --out messages.jsonl

writes the messages and ``<out>.manifest.json``: how many messages and units, how many distinct
people, and how many dead letters of each ``stage/error_type`` the pipeline must produce.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.synthetic.emails import render_email
from pipelines.synthetic.leads import Person, make_external_id, random_person, render

PROVIDER_WEIGHTS = {
    "meta_lead_ads": 24, "google_ads_lead_form": 14, "knowlarity_call": 10, "twilio_sms": 9,
    "twilio_voice": 5, "inbound_email": 16, "api": 16, "csv_upload": 6,
}
PHONE_ONLY = {"knowlarity_call", "twilio_sms", "twilio_voice"}  # calls and texts carry no e-mail
EMAIL_SOURCES = ("zillow", "realtor_com", "homes_com", "unknown")
DEFAULT_START = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)

# Bad inputs: (kind, expected stage/error_type). Each builder below returns one message dict.
BAD_KINDS = {
    "invalid_json": "parse/invalid_json",
    "missing_contact": "normalize/missing_contact",
    "invalid_phone": "normalize/invalid_phone",
    "unknown_provider": "parse/unknown_provider",
    "empty_payload": "decode/empty_payload",
    "invalid_utf8": "decode/invalid_utf8",
    "deep_json": "parse/json_too_deep",
    "api_validation": "parse/validation_error",
    "unidentified": "parse/unidentified_payload",
    "oversize": "decode/payload_too_large",
    "not_a_message_line": "read/invalid_input_line",
}


@dataclass
class Manifest:
    """Ground truth for a generated file."""

    messages: int = 0  # input lines
    units: int = 0  # lines + extra CSV rows: each ends as one lead event or one dead letter
    links: dict[str, str] = field(default_factory=dict)  # union-find over phones and e-mails of good units
    dead_letters: Counter = field(default_factory=Counter)  # "stage/error_type" -> count
    providers: Counter = field(default_factory=Counter)  # provider of good units
    replays: int = 0  # exact redeliveries generated

    def add_person(self, *identifiers: str) -> None:
        """A good unit's phone and e-mail: one person, and every person sharing either is the same one (two
        generated people can draw the same e-mail; the pipeline rightly sees one person then)."""
        roots = [self._root(i) for i in identifiers if i]
        for r in roots[1:]:
            self.links[r] = roots[0]

    def _root(self, key: str) -> str:
        self.links.setdefault(key, key)
        while self.links[key] != key:
            self.links[key] = self.links[self.links[key]]
            key = self.links[key]
        return key

    @property
    def persons(self) -> set[str]:
        """One identifier per person (the root of their phones and e-mails)."""
        return {self._root(k) for k in list(self.links)}

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "units": self.units, "persons": len(self.persons),
            "lead_events": self.units - sum(self.dead_letters.values()),
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "dead_letters_total": sum(self.dead_letters.values()), "providers": dict(sorted(self.providers.items())),
            "replays_generated": self.replays,
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _bad_message(kind: str, rng: random.Random, person: Person) -> dict[str, Any]:
    """A message the pipeline must dead-letter (never carrying a real person's PII in errors)."""
    if kind == "invalid_json":
        return {"attributes": {"provider": "api"}, "data": '{"external_id": "x-1", "phone": '}
    if kind == "missing_contact":
        return {"attributes": {"provider": "meta_lead_ads"}, "data": json.dumps({
            "id": str(rng.getrandbits(50)), "created_time": "2026-11-16T09:00:00+0000",
            "field_data": [{"name": "full_name", "values": [person.full_name]}]})}
    if kind == "invalid_phone":
        return {"attributes": {"provider": "knowlarity_call"}, "data": json.dumps({
            "uuid": f"{rng.getrandbits(128):032x}", "customer_number": "12345", "start_time": "2026-11-16 14:00:00",
            "call_duration": 12})}
    if kind == "unknown_provider":
        return {"attributes": {"provider": "carrier_pigeon"}, "data": json.dumps({"phone": person.phone})}
    if kind == "empty_payload":
        return {"attributes": {"provider": "twilio_sms"}, "data": ""}
    if kind == "invalid_utf8":
        return {"attributes": {"provider": "api"},
                "data_base64": base64.b64encode(b'{"external_id": "\xff\xfe\xfd"}').decode()}
    if kind == "deep_json":
        return {"attributes": {"provider": "api"}, "data": "[" * 5000 + "]" * 5000}
    if kind == "api_validation":
        return {"attributes": {"provider": "api"}, "data": json.dumps({
            "external_id": f"api-{rng.getrandbits(32)}", "phone": person.phone, "country": "USA1", "fone": "x"})}
    if kind == "unidentified":
        return {"attributes": {}, "data": "hello, please call me back about the house"}
    if kind == "oversize":
        return {"attributes": {"provider": "api"}, "data": '{"external_id": "big", "message": "'
                + "x" * 1_050_000 + '"}'}
    raise ValueError(kind)


PUBLISHABLE_BAD_KINDS = tuple(k for k in BAD_KINDS if k not in ("not_a_message_line", "oversize"))


def publishable(line: str | bytes) -> tuple[bytes, dict[str, str]]:
    """An input-file message line as a provider publishes it: (data bytes, attributes)."""
    obj = json.loads(line)
    data = base64.b64decode(obj["data_base64"]) if "data_base64" in obj else obj.get("data", "").encode()
    return data, dict(obj.get("attributes") or {})


def generated_messages(n: int, seed: int, bad_share: float = 0.0,
                       bad_kinds: tuple[str, ...] = PUBLISHABLE_BAD_KINDS) -> tuple[list[tuple[bytes, dict]], Manifest]:
    """``n`` generated messages ready to publish (bad kinds that only make sense in a file left out), with
    their ground truth."""
    manifest = Manifest()
    lines = generate(n, seed=seed, bad_share=bad_share, bad_kinds=bad_kinds, manifest=manifest)
    return [publishable(line) for line in lines], manifest


def generate(
    n_messages: int,
    *,
    seed: int = 7,
    start: datetime = DEFAULT_START,
    seconds_between: float = 2.0,
    returning_share: float = 0.3,
    replay_share: float = 0.02,
    bad_share: float = 0.03,
    out_of_order_share: float = 0.05,
    bad_kinds: tuple[str, ...] = tuple(BAD_KINDS),
    manifest: Manifest | None = None,
) -> Iterator[str]:
    """Yield ``n_messages`` input lines (JSON text, one per line, without newline)."""
    rng = random.Random(seed)
    manifest = manifest if manifest is not None else Manifest()
    people: list[tuple[Person, list[str]]] = []  # person, providers/sources used
    sent: list[str] = []
    providers, weights = zip(*PROVIDER_WEIGHTS.items(), strict=True)
    bad_cycle = 0
    for i in range(n_messages):
        publish = start + timedelta(seconds=i * seconds_between + rng.random())
        manifest.messages += 1
        if sent and rng.random() < replay_share:
            line = rng.choice(sent)  # an exact redelivery: same message id, same payload
            manifest.replays += 1
            _count_units(json.loads(line), manifest, replay=True)
            yield line
            continue
        message_id = f"{rng.getrandbits(60):d}"
        if rng.random() < bad_share:
            kind = bad_kinds[bad_cycle % len(bad_kinds)]
            bad_cycle += 1
            manifest.units += 1
            manifest.dead_letters[BAD_KINDS[kind]] += 1
            if kind == "not_a_message_line":
                yield "this line is not a message {"
                continue
            msg = _bad_message(kind, rng, random_person(rng))
            yield json.dumps({"message_id": message_id, "publish_time": _iso(publish), **msg})
            continue
        provider = rng.choices(providers, weights)[0]
        delay = timedelta(minutes=rng.uniform(3, 30)) if rng.random() < out_of_order_share else timedelta(
            seconds=rng.uniform(0, 20))
        event_time = publish - delay
        if provider == "csv_upload":
            persons = [_pick_person(rng, people, provider) for _ in range(rng.randint(1, 4))]
            text, attrs = render(provider, persons[0], persons=persons, external_id=make_external_id(provider, rng),
                                 event_time=event_time, rng=rng)
        else:
            person = _pick_person(rng, people, provider)
            persons = [person]
            if provider == "inbound_email":
                text, attrs = render_email(person, source=rng.choice(EMAIL_SOURCES),
                                           external_id=f"{rng.getrandbits(64):x}@mail.leads.example.com",
                                           event_time=event_time, rng=rng)
            else:
                text, attrs = render(provider, person, external_id=make_external_id(provider, rng),
                                     event_time=event_time, rng=rng)
        line = json.dumps({"message_id": message_id, "publish_time": _iso(publish), "attributes": attrs,
                           "data": text}, ensure_ascii=False)
        sent.append(line)
        _count_units({"attributes": attrs, "persons": persons}, manifest)
        yield line


def _pick_person(rng: random.Random, people: list[tuple[Person, list[str]]], provider: str) -> Person:
    if people and rng.random() < 0.3:
        person, used = rng.choice(people)
        used.append(provider)
        return person
    person = random_person(rng)
    people.append((person, [provider]))
    return person


def _count_units(msg: dict[str, Any], manifest: Manifest, replay: bool = False) -> None:
    if replay:
        # A replayed line repeats its units (CSV rows included): count rows again from the payload.
        data = msg.get("data", "")
        provider = msg.get("attributes", {}).get("provider")
        rows = max(1, len([r for r in data.splitlines()[1:] if r.strip()])) if provider == "csv_upload" else 1
        manifest.units += rows
        manifest.providers[provider] += rows
        return
    for person in msg["persons"]:
        manifest.units += 1
        carried = () if msg["attributes"]["provider"] in PHONE_ONLY else ("email:" + person.email.lower(),)
        manifest.add_person("phone:" + person.phone, *carried)
        manifest.providers[msg["attributes"]["provider"]] += 1


def write(path: str | Path, n_messages: int, **kwargs: Any) -> dict[str, Any]:
    """Write ``n_messages`` lines to ``path`` and the manifest beside it; return the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = Manifest()
    with path.open("w", encoding="utf-8") as f:
        for line in generate(n_messages, manifest=manifest, **kwargs):
            f.write(line + "\n")
    summary = manifest.as_json()
    Path(str(path) + ".manifest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bad_share", type=float, default=0.03)
    ap.add_argument("--seconds_between", type=float, default=2.0, help="mean publish-time gap between messages")
    ap.add_argument("--no_oversize", action="store_true", help="leave out the 1 MB oversize payloads")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in BAD_KINDS if not (args.no_oversize and k == "oversize"))
    summary = write(args.out, args.messages, seed=args.seed, bad_share=args.bad_share, bad_kinds=kinds,
                    seconds_between=args.seconds_between)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
