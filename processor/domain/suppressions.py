"""Parsing of suppression imports: opt-out CSV exports of other email systems, row by row.

Pure: CSV lines in; for each data row, one `ContactUpdate` or one line-numbered error out.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

from pydantic import TypeAdapter

from schemas.audience import ContactUpdate
from schemas.base import Identifier

if TYPE_CHECKING:
    from _csv import Reader
    from collections.abc import Iterable, Iterator, Sequence

EMAIL_COLUMNS = ("email", "email_address", "e_mail")
"""Accepted names of the required email column, as normalized by `normalize_header`."""
CONTACT_ID_COLUMNS = ("contact_id",)
STATUS_COLUMNS = ("status", "reason")
TIME_COLUMNS = ("unsubscribed_at", "timestamp", "unsub_time", "clean_time", "created")

_OPT_OUT_STATUSES = {
    "unsubscribed": "unsubscribed",
    "unsubscribe": "unsubscribed",
    "unsub": "unsubscribed",
    "opted_out": "unsubscribed",
    "opt_out": "unsubscribed",
    "bounced": "bounced",
    "bounce": "bounced",
    "hard_bounce": "bounced",
    "hard_bounced": "bounced",
    "complained": "complained",
    "complaint": "complained",
    "spam": "complained",
    "spam_report": "complained",
    "cleaned": "cleaned",
}
"""Status values that name an opt-out, to the status recorded in the update's `source`."""
_NOT_OPT_OUT_STATUSES = frozenset({"subscribed", "active", "pending", "opted_in", "transactional"})
"""Status values of contacts who did not opt out: such a row is an error, never an opt-out."""

_SOURCE_PREFIX = "import:"
_MAX_SOURCE = 200 - len(_SOURCE_PREFIX) - 1 - max(map(len, _OPT_OUT_STATUSES.values()))
_MAX_CONTACT_ID = 320
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")
"""Stricter than `Recipient.address`: no display names, brackets or `mailto:`; a dotted domain."""
_EPOCH_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_SEPARATORS = re.compile(r"[\s\-]+")
_TENANT_ID = TypeAdapter(Identifier)


class SuppressionFileError(ValueError):
    """The file as a whole cannot be imported: no header row, or no single email column."""


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """A good row: the opt-out it records."""

    line: int
    update: ContactUpdate
    status: str | None
    """The row's opt-out status (unsubscribed, bounced, complained, cleaned), if it named one."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A bad row, skipped: `message` reads e.g. "line 7: email 'foo' is not an email address"."""

    line: int
    column: str | None
    """The offending column as the file's header spells it, if one column is at fault."""
    message: str


RowResult: TypeAlias = ParsedRow | RowError


@dataclass(frozen=True, slots=True)
class _Columns:
    names: Sequence[str]
    email: int
    contact_id: int | None
    status: int | None
    time: int | None


@dataclass(frozen=True, slots=True)
class _Import:
    columns: _Columns
    tenant_id: str
    source: str
    now: datetime


def normalize_header(name: str) -> str:
    """A header cell as matched against the column names: "Email Address" -> "email_address"."""
    return _SEPARATORS.sub("_", name.replace("\ufeff", "").strip().lower())


def parse_suppression_rows(
    lines: Iterable[str], *, tenant_id: str, source: str, now: datetime
) -> Iterator[RowResult]:
    """Parse an opt-out CSV file: the header at once, then one result per data row, lazily.

    Columns are matched case-insensitively (spaces and hyphens read as underscores):
    `email` (or `Email Address`, `email_address`, `E-mail`) is required; `contact_id`,
    `status` (else `reason`), and a time (the first of `unsubscribed_at`, `timestamp`,
    `UNSUB_TIME`, `CLEAN_TIME`, `created`) are optional. Every good row becomes an update with
    `unsubscribed=True` (a bounced or complained status is still an opt-out; it is kept in
    `source` as `import:<source>:<status>`). The contact id is the row's `contact_id`, or else
    the lower-cased email. Times are ISO 8601 (UTC if no offset) or epoch seconds; a row
    without one gets `now`. Blank rows are skipped; a bad row yields a `RowError` with its
    1-based line number and parsing goes on. Line numbers count physical lines, so `lines`
    should keep quoted newlines (open files with `newline=""`).

    Raises:
        SuppressionFileError: At once, if the file has no header or no single email column.
        ValueError: At once, if `tenant_id`, `source` or `now` is invalid.
    """
    _TENANT_ID.validate_python(tenant_id)
    if not source or len(source) > _MAX_SOURCE:
        raise ValueError(f"source must be 1..{_MAX_SOURCE} characters, got {len(source)}")
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    reader = csv.reader(lines, strict=True)
    columns = _read_header(reader)
    context = _Import(columns, tenant_id, source, now.astimezone(UTC))
    return _parse_rows(reader, context)


def _read_header(reader: Reader) -> _Columns:
    for cells in reader:
        if any(cell.strip() for cell in cells):
            return _find_columns(cells)
    raise SuppressionFileError("the file is empty: expected a header row with an email column")


def _find_columns(names: list[str]) -> _Columns:
    normalized = [normalize_header(name) for name in names]

    def first(aliases: tuple[str, ...]) -> int | None:
        return next((normalized.index(alias) for alias in aliases if alias in normalized), None)

    emails = [index for index, name in enumerate(normalized) if name in EMAIL_COLUMNS]
    if not emails:
        raise SuppressionFileError(
            f"no email column: expected a header named 'email', 'Email Address' or "
            f"'email_address'; found {', '.join(map(repr, names))}"
        )
    if len(emails) > 1:
        raise SuppressionFileError(
            f"several email columns: {', '.join(repr(names[index]) for index in emails)}"
        )
    return _Columns(
        names=names,
        email=emails[0],
        contact_id=first(CONTACT_ID_COLUMNS),
        status=first(STATUS_COLUMNS),
        time=first(TIME_COLUMNS),
    )


def _parse_rows(reader: Reader, context: _Import) -> Iterator[RowResult]:
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield RowError(last_line + 1, None, f"line {last_line + 1}: not valid CSV ({error})")
            last_line = reader.line_num
            continue
        first_line, last_line = last_line + 1, reader.line_num
        if any(cell.strip() for cell in cells):
            result = _parse_row(cells, first_line, context)
            if isinstance(result, RowError) and last_line > first_line:
                result = RowError(
                    result.line,
                    result.column,
                    f"{result.message} (the row spans lines {first_line}-{last_line}: "
                    "is a quote unbalanced?)",
                )
            yield result


def _parse_row(cells: list[str], line: int, context: _Import) -> RowResult:
    columns = context.columns

    def cell(index: int | None) -> str:
        return cells[index].strip() if index is not None and index < len(cells) else ""

    def error(index: int | None, problem: str) -> RowError:
        name = None if index is None else columns.names[index].replace("\ufeff", "").strip()
        return RowError(line, name, f"line {line}: {name} {problem}")

    email = cell(columns.email)
    if not email:
        return error(columns.email, "is empty")
    if len(email.lower()) > _MAX_CONTACT_ID or not _EMAIL.fullmatch(email):
        return error(columns.email, f"{_show(email)} is not an email address")
    contact_id = cell(columns.contact_id) or email.lower()
    if len(contact_id) > _MAX_CONTACT_ID:
        return error(columns.contact_id, f"is longer than {_MAX_CONTACT_ID} characters")
    raw_status = cell(columns.status)
    if normalize_header(raw_status) in _NOT_OPT_OUT_STATUSES:
        return error(columns.status, f"{_show(raw_status)} is not an opt-out status")
    status = _OPT_OUT_STATUSES.get(normalize_header(raw_status))
    raw_time = cell(columns.time)
    occurred_at = _parse_time(raw_time) if raw_time else context.now
    if occurred_at is None:
        problem = f"{_show(raw_time)} is not a timestamp (ISO 8601 or epoch seconds)"
        return error(columns.time, problem)
    source = f"{_SOURCE_PREFIX}{context.source}" + (f":{status}" if status else "")
    update = ContactUpdate(
        tenant_id=context.tenant_id,
        contact_id=contact_id,
        unsubscribed=True,
        occurred_at=occurred_at,
        source=source,
    )
    return ParsedRow(line, update, status)


def _parse_time(value: str) -> datetime | None:
    try:
        if _EPOCH_SECONDS.fullmatch(value):
            return datetime.fromtimestamp(float(value), UTC)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment.astimezone(UTC)


def _show(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")
