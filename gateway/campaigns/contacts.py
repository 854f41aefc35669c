"""A campaign's contact list: the CSV an operator uploads, as rows and then as contacts.

The CSV is parsed strictly, with errors naming the line, because operators fix these files by
hand.  A `timezone` column (IANA name, e.g. `Europe/Berlin`) gives each contact the zone its
calling hours are judged in; a blank cell takes the campaign's default.  Every other column is a
call variable (it fills `{name}` in the agent's greeting and goes to the prompt).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.campaigns.policy import PolicyError, parse_zone

MAX_ROWS = 10_000
_NUMBER_COLUMNS = ("to", "number")


def parse_campaign_csv(text: str) -> list[dict[str, str]]:
    """Rows of a campaign CSV as dicts with key "to" plus the other columns (the call's variables).

    The header needs a `to` (or `number`) column, matched case-insensitively; blank lines are
    skipped.  Errors name the row, because operators fix these files by hand.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise ValueError("campaign CSV is empty: expected a header line with a 'to' column")
    names = [h.strip() for h in header]
    number_index = _number_column(names)
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"campaign CSV header has duplicate columns: {names}")
    rows: list[dict[str, str]] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        line = reader.line_num
        if len(rows) >= MAX_ROWS:
            raise ValueError(f"campaign CSV has more than {MAX_ROWS} rows")
        rows.append(_row(names, number_index, values, line))
    if not rows:
        raise ValueError("campaign CSV has a header but no rows")
    return rows


def _number_column(names: list[str]) -> int:
    lowered = [n.lower() for n in names]
    for wanted in _NUMBER_COLUMNS:
        if wanted in lowered:
            return lowered.index(wanted)
    raise ValueError(f"campaign CSV needs a 'to' (or 'number') column; the header has {names}")


def _row(names: list[str], number_index: int, values: list[str], line: int) -> dict[str, str]:
    if len(values) > len(names):
        raise ValueError(f"campaign CSV line {line} has {len(values)} fields but the header has {len(names)}")
    values = [v.strip() for v in values] + [""] * (len(names) - len(values))
    if not values[number_index]:
        raise ValueError(f"campaign CSV line {line} has an empty '{names[number_index]}'")
    row = {"to": values[number_index]}
    row.update((name, value) for i, (name, value) in enumerate(zip(names, values, strict=True)) if i != number_index)
    return row


TIMEZONE_COLUMN = "timezone"


@dataclass(frozen=True, slots=True)
class Contact:
    """One row to dial: its place in the list (1-based), the number, its zone and its call variables."""

    row: int
    to: str
    zone: ZoneInfo
    variables: Mapping[str, str]


def contacts_from_rows(rows: list[dict[str, str]], default_zone: ZoneInfo) -> list[Contact]:
    """Contacts from parsed rows; a bad `timezone` cell is an error naming its row."""
    contacts = []
    for index, row in enumerate(rows, start=1):
        zone_key = next((k for k in row if k.lower() == TIMEZONE_COLUMN), None)
        variables = {k: v for k, v in row.items() if k not in ("to", zone_key)}
        zone = default_zone
        if zone_key is not None and row[zone_key]:
            try:
                zone = parse_zone(row[zone_key], zone_key)
            except PolicyError as exc:
                raise ValueError(f"campaign CSV row {index} ({row['to']}): {exc}") from None
        contacts.append(Contact(index, row["to"], zone, variables))
    return contacts
