"""Spreadsheet uploads: CSV as it is, XLSX converted to the CSV the pipeline's ``csv_upload`` parser reads, UTF-16
text (Meta's lead download is UTF-16 TSV with a byte-order mark) re-encoded as UTF-8.

One upload is one message (the parser makes one unit per row). An XLSX workbook is read with openpyxl in read-only
mode, first worksheet only (exports put the leads there); cells become text the way a spreadsheet shows them
(integers without ``.0``, dates as ISO 8601), so a phone number stored as a number keeps its digits.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime, time

from transforms.parsers.csv_upload import CONTACT_HEADERS, canonical_header, csv_text, delimiter_of

XLSX_MAGIC = b"PK\x03\x04"  # an XLSX file is a ZIP archive
XLSX_TYPES = frozenset({"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_XLSX_CELLS = 5_000_000  # guards the conversion against a workbook that claims a huge sheet


class UploadRejected(ValueError):
    """An upload that is not a readable CSV or XLSX file (``error_type`` is stable, the message PII-free)."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def is_xlsx(data: bytes, filename: str | None, content_type: str | None) -> bool:
    name = (filename or "").lower()
    return data.startswith(XLSX_MAGIC) or name.endswith((".xlsx", ".xlsm")) or (content_type or "") in XLSX_TYPES


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def xlsx_to_csv(data: bytes) -> str:
    """The first worksheet of an XLSX workbook as CSV text (trailing empty cells of each row dropped)."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise UploadRejected("invalid_xlsx", f"not a readable XLSX workbook ({type(e).__name__})") from None
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise UploadRejected("invalid_xlsx", "the workbook has no worksheet")
        rows: list[list[str]] = []
        cells = 0
        for values in sheet.iter_rows(values_only=True):
            row = [_cell_text(v) for v in values]
            while row and row[-1] == "":
                row.pop()
            cells += len(row)
            if cells > MAX_XLSX_CELLS:
                raise UploadRejected("too_many_cells", f"the worksheet has more than {MAX_XLSX_CELLS} cells")
            rows.append(row)
    finally:
        workbook.close()
    return csv_text(*rows)


def _check_header(text: str) -> None:
    """The pipeline's rule for the header row (the first non-blank one names a phone or an e-mail column), checked
    here too: an API client hears of a wrong file at once instead of finding a dead letter later."""
    for line in io.StringIO(text[:65_536]):
        if line.strip():
            try:
                cells = next(csv.reader([line], delimiter=delimiter_of(line)), [])
            except csv.Error:
                break
            if any(canonical_header(cell) in CONTACT_HEADERS for cell in cells):
                return
            break
    raise UploadRejected("no_contact_column", "the header row names no phone or e-mail column")


def upload_csv(data: bytes, filename: str | None, content_type: str | None) -> tuple[bytes, str]:
    """(the CSV bytes to publish, ``csv`` or ``xlsx``). A CSV travels byte for byte."""
    if not data.strip():
        raise UploadRejected("empty_upload", "the upload is empty")
    if is_xlsx(data, filename, content_type):
        text = xlsx_to_csv(data)
        _check_header(text)
        return text.encode("utf-8"), "xlsx"
    if data.startswith(UTF16_BOMS):  # the BOM says which byte order; the pipeline reads UTF-8
        return _text(data, "utf-16", "invalid_utf16", "the upload starts with a UTF-16 byte-order mark but is not "
                     "UTF-16 text").encode("utf-8"), "utf16"
    _text(data, "utf-8-sig", "not_utf8", "a CSV upload must be UTF-8 or UTF-16 text (or upload the XLSX file)")
    return data, "csv"


def _text(data: bytes, encoding: str, error_type: str, message: str) -> str:
    """The upload decoded, its header row checked; UploadRejected when it is not text in ``encoding``."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise UploadRejected(error_type, message) from None
    _check_header(text)
    return text
