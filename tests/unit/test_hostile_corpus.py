"""Hostile input (issue 16): every file of the hostile corpus (tests/data/fixtures/hostile, its README lists each case
and its outcome) ends through ``parse_payload`` as one lead or one dead letter with its specific error type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from transforms.parsers.base import ParseConfig, ParseError
from transforms.parsers.registry import parse_payload
from transforms.sources import SourceRegistry

CORPUS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "hostile"
CONFIG = ParseConfig(registry=SourceRegistry.from_csv(None))
_ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| (?:`(?P<provider>[^`]+)`|\(none\)) \| `(?P<outcome>[^`]+)` \| .+ \|$")


def cases() -> list[tuple[str, str | None, str]]:
    rows = [_ROW.match(line) for line in (CORPUS / "README.md").read_text("utf-8").splitlines()]
    return [(m["file"], m["provider"], m["outcome"]) for m in rows if m]


CASES = cases()


def test_the_readme_lists_every_file_once():
    files = [name for name, _, _ in CASES]
    assert len(files) == len(set(files)) > 30
    assert sorted(files) == sorted(p.name for p in CORPUS.iterdir() if p.name != "README.md")


@pytest.mark.parametrize(("name", "provider", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_file_ends_in_one_lead_or_its_dead_letter(name, provider, expected):
    with open(CORPUS / name, encoding="utf-8", newline="") as f:
        text = f.read()
    assert len(text.encode("utf-8")) <= 64 * 1024  # the corpus stays small; large shapes are built, not stored
    try:
        _, leads = parse_payload(text, {"provider": provider} if provider else {}, CONFIG)
    except ParseError as e:
        outcome = e.error_type
    else:
        assert len(leads) == 1
        outcome = "lead"
    assert outcome == expected != "internal_error"
