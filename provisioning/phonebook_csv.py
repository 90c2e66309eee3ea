"""The web phonebook's CSV import format (pure: text in, rows and per-row errors out).

Rows are `name,number[,company[,note]]`; each row is checked by
`provisioning.fields.check_phonebook_entry`. Japanese Excel writes CP932, everything else
UTF-8 (with or without a BOM): both are accepted. The import itself (all-or-nothing, the
1,000-entry limit) is `provisioning.services.phonebook`.
"""

from __future__ import annotations

import csv
import io

from .errors import InvalidInput
from .fields import PhonebookRow, check_phonebook_entry

__all__ = ["decode_csv", "parse_phonebook_csv"]

_HEADER_NAMES = {"name", "名前", "氏名"}


def decode_csv(data: bytes | str) -> str:
    """UTF-8 (with or without BOM), else CP932 (what Japanese Excel writes)."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp932")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                "phonebook-import-invalid",
                "the CSV is neither UTF-8 nor Shift_JIS (CP932)",
                {"errors": [{"row": 0, "reason": "undecodable file"}]},
            ) from exc


def parse_phonebook_csv(data: bytes | str) -> tuple[list[PhonebookRow], list[dict[str, object]]]:
    """Rows `name,number[,company[,note]]` -> (entries, errors). Errors are
    `{"row": line number (1-based), "reason": …}`; blank lines are skipped; a first row whose
    first cell is a header name ("name", "名前", "氏名") is skipped."""
    entries: list[PhonebookRow] = []
    errors: list[dict[str, object]] = []
    reader = csv.reader(io.StringIO(decode_csv(data)))
    first = True
    try:
        for cells in reader:
            line = reader.line_num
            if first and cells and cells[0].strip().lower() in _HEADER_NAMES:
                first = False
                continue
            first = False
            if not any(c.strip() for c in cells):
                continue
            if len(cells) < 2 or len(cells) > 4:
                errors.append(
                    {"row": line, "reason": "expected 2 to 4 columns: name, number, company, note"}
                )
                continue
            try:
                entries.append(check_phonebook_entry(*cells))
            except InvalidInput as exc:
                errors.append({"row": line, "reason": exc.message})
    except csv.Error as exc:
        errors.append({"row": reader.line_num, "reason": f"malformed CSV: {exc}"})
    return entries, errors
