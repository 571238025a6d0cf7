"""Hostile e-mail bodies: the HTML shapes that made the stdlib tokenizer quadratic, at any size, beside an
ordinary body of the same size (issue 16; the tests assert their outcomes, ``make bench`` times them)."""

from __future__ import annotations

ORDINARY = "ordinary"
# shape -> (prefix, unit repeated to fill the size)
SHAPES: dict[str, tuple[str, str]] = {
    "open_tags": ("", "<a"),
    "end_tag_openers": ("", "</"),
    "processing_instructions": ("", "<?"),
    "unclosed_svg": ("<svg>", "</p></div>x"),
    "stray_end_tags": ("", "</p></div>x"),
    ORDINARY: ("", "<p>Name: John Smith<br>Phone: 555-1234</p>"),
}
CONTACT = "<p>Name: Jane Doe</p><p>Phone: +1 212 555 0001</p>"


def html_of(shape: str, size: int) -> str:
    """About ``size`` characters of ``shape``, ending with a contact block a parser should still reach."""
    prefix, unit = SHAPES[shape]
    return prefix + unit * max(0, (size - len(prefix) - len(CONTACT)) // len(unit)) + CONTACT


def email_of(html: str) -> str:
    return ("From: Leads <leads@example.org>\r\nTo: agent@example.com\r\nSubject: New lead\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n" + html)
