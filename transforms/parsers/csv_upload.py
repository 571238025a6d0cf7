"""Parser for spreadsheet uploads (provider ``csv_upload``): one lead per data row.

The first non-blank row is the header. Cells are separated by commas, or by tabs or semicolons when the
header line holds more of those (Meta's lead download is tab-separated; Excel in many European locales
saves with semicolons). Header names are matched ignoring case, spaces,
underscores, hyphens, dots and slashes against the aliases in ``ALIASES`` (``E-mail Address`` ->
``email``); unrecognised columns go to ``extra`` under their header text. The header must name
a phone or an e-mail column.

Rows: fully blank rows are skipped; ``unit_index`` is the CSV record's position after the
header (1-based, blank records counted), so a row keeps its index whatever blank rows follow it,
and indexes may have gaps where blank rows were. Cells beyond the header's width are ignored and
missing cells are empty; either mismatch sets ``extra["cell_count_mismatch"] = "true"``. A row's
unreadable ``created`` time does not fail the upload: that row gets ``event_time=None`` and
``extra["invalid_created_at"] = "true"`` (only ISO 8601 / Unix times are read; naive times use
``ParseConfig.naive_timezone``).

Limits (``ParseConfig.limits``): more than ``max_csv_rows`` data rows is ``csv_too_many_rows``, a record of more
than ``max_csv_columns`` cells ``csv_too_many_columns``; either dead-letters the whole upload.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from datetime import datetime

from transforms.parsers.base import ParseConfig, ParseError, RawLead, clean, limit_exceeded, parse_timestamp

PROVIDER = "csv_upload"

# RawLead field (or "external_id" / "created") -> header aliases, already in canonical form.
ALIASES: dict[str, tuple[str, ...]] = {
    "full_name": ("name", "fullname", "leadname", "contactname", "customername"),
    "first_name": ("firstname", "givenname", "fname"),
    "last_name": ("lastname", "surname", "familyname", "lname"),
    "phone": (
        "phone",
        "mobile",
        "phonenumber",
        "telephone",
        "tel",
        "cell",
        "cellphone",
        "mobilenumber",
        "mobilephone",
        "phoneno",
        "contactnumber",
        "mobilephonenumber",  # HubSpot's "Mobile phone number"
        "whatsappnumber",
    ),
    "email": ("email", "emailaddress", "mail", "emailid"),
    "country": ("country", "countrycode", "countryregion"),  # HubSpot's "Country/Region"
    "postal_code": ("zip", "zipcode", "postalcode", "postcode", "pincode"),
    "city": ("city", "town"),
    "state": ("state", "region", "province", "stateregion"),  # HubSpot's "State/Region"
    "message": ("message", "messages", "notes", "note", "comments", "comment", "inquiry", "enquiry"),
    "property_address": ("address", "propertyaddress", "streetaddress"),
    "external_id": ("id", "leadid", "externalid", "recordid"),  # Meta's export "id", HubSpot's "Record ID"
    "created": ("created", "createdat", "date", "createddate", "createdtime", "timestamp", "submittedat",
                "createdate", "createdon"),  # Meta's "created_time", HubSpot's "Create Date"
    # a Meta Leads export names the ad, ad set, campaign and form of each lead
    "campaign_id": ("campaignid",),
    "form_id": ("formid",),
    "ad_id": ("adid",),
}
HEADER_TO_FIELD: dict[str, str] = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
CONTACT_HEADERS = frozenset(ALIASES["phone"] + ALIASES["email"])
_IGNORED = re.compile(r"[\s_.\-/]+")


def canonical_header(name: str) -> str:
    """A header cell reduced for matching: lower case, no spaces/underscores/hyphens/dots/BOM."""
    return _IGNORED.sub("", name.replace("\ufeff", "").lower())


DELIMITERS = (",", "\t", ";")


def delimiter_of(text: str) -> str:
    """The cell separator: of comma, tab and semicolon, the one the first non-blank line holds most of (comma on a
    tie: a header of one column has none)."""
    line = next((line for line in text[:65_536].splitlines() if line.strip()), "")
    return max(DELIMITERS, key=line.count)


def _rows(text: str, max_columns: int) -> Iterator[tuple[int, list[str]]]:
    """(record number, cells) for every CSV record; csv errors become ParseError('invalid_csv'), a record of
    more than ``max_columns`` cells ParseError('csv_too_many_columns')."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter_of(text))
    number = 0
    try:
        for cells in reader:
            number += 1
            if len(cells) > max_columns:
                raise limit_exceeded("max_csv_columns", f"CSV record {number} has more than {max_columns} cells")
            yield number, cells
    except csv.Error as e:
        # The csv message names the problem (e.g. field larger than field limit), never a cell value.
        raise ParseError("invalid_csv", f"unreadable CSV near line {reader.line_num}: {e}") from None


def _is_blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


def _columns(header: list[str]) -> list[tuple[str, str | None]]:
    """(header text, mapped field or None) per header cell."""
    return [(cell.strip(), HEADER_TO_FIELD.get(canonical_header(cell))) for cell in header]


def _created(value: str | None, config: ParseConfig) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value, naive_timezone=config.naive_timezone, field_name="created")
    except (ParseError, OverflowError):
        return None


def csv_text(*records: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue()


def _row_lead(
    columns: list[tuple[str, str | None]], cells: list[str], unit_index: int, config: ParseConfig
) -> RawLead:
    fields: dict[str, str] = {}
    extra: dict[str, str] = {}
    for (header, target), cell in zip(columns, cells, strict=False):  # ragged rows are allowed
        value = clean(cell)
        if value is None:
            continue
        if target is not None:
            fields.setdefault(target, value)
        elif header:
            extra.setdefault(header, value)
    if len(cells) != len(columns):
        extra["cell_count_mismatch"] = "true"
    created = fields.pop("created", None)
    event_time = _created(created, config)
    if created is not None and event_time is None:
        extra["invalid_created_at"] = "true"
    return RawLead(provider=PROVIDER, event_time=event_time, unit_index=unit_index, extra=extra,
                   unit_payload=csv_text([header for header, _ in columns], cells), **fields)


def parse(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """A CSV upload -> one RawLead per non-blank data row."""
    columns: list[tuple[str, str | None]] | None = None
    header_number = 0
    leads: list[RawLead] = []
    max_rows = config.limits.max_csv_rows
    for number, cells in _rows(text, config.limits.max_csv_columns):
        if _is_blank(cells):
            continue
        if columns is None:
            columns, header_number = _columns(cells), number
            if not any(target in ("phone", "email") for _, target in columns):
                raise ParseError("invalid_csv", "the header row names no phone or e-mail column")
            continue
        if len(leads) >= max_rows:
            raise limit_exceeded("max_csv_rows", f"more than {max_rows} data rows")
        leads.append(_row_lead(columns, cells, number - header_number, config))
    if columns is None or not leads:
        raise ParseError("empty_csv", "the upload has no data rows")
    return leads
