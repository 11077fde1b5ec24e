"""Unit tests of suppression-import CSV parsing: good rows, bad rows, headers and timestamps."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from processor.domain.suppressions import (
    ParsedRow,
    RowError,
    SuppressionFileError,
    normalize_header,
    parse_suppression_rows,
)

if TYPE_CHECKING:
    from processor.domain.suppressions import RowResult

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def parse(text: str, source: str = "list.csv") -> list[RowResult]:
    """Parse `text` as a whole file of tenant t1, read the way `open(..., newline="")` reads."""
    return list(
        parse_suppression_rows(
            io.StringIO(text, newline=""), tenant_id="t1", source=source, now=NOW
        )
    )


def good(results: list[RowResult]) -> list[ParsedRow]:
    """The good rows among `results`."""
    return [result for result in results if isinstance(result, ParsedRow)]


def errors(results: list[RowResult]) -> list[str]:
    """The messages of the bad rows among `results`."""
    return [result.message for result in results if isinstance(result, RowError)]


def test_good_rows_become_opt_outs() -> None:
    """Each good row becomes an unsubscribe of its contact, sourced from the import."""
    results = parse(
        "email,contact_id,status,unsubscribed_at\n"
        "Ann@Example.com,,unsubscribed,2025-01-02T03:04:05Z\n"
        "bob@example.com,crm-42,,\n"
    )
    first, second = good(results)
    assert (first.line, first.status) == (2, "unsubscribed")
    assert first.update.tenant_id == "t1"
    assert first.update.contact_id == "ann@example.com"
    assert first.update.unsubscribed is True
    assert (first.update.consent, first.update.deleted) == (None, False)
    assert first.update.occurred_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert first.update.source == "import:list.csv:unsubscribed"
    assert (second.line, second.status, second.update.contact_id) == (3, None, "crm-42")
    assert (second.update.occurred_at, second.update.source) == (NOW, "import:list.csv")


@pytest.mark.parametrize(
    "header",
    [
        "email",
        "Email",
        "EMAIL",
        " email ",
        "Email Address",
        "email_address",
        "E-mail",
        "\ufeffEmail",
    ],
)
def test_email_header_aliases(header: str) -> None:
    """The email column is found under any of its usual export names, in any case."""
    (row,) = good(parse(f"First Name,{header}\nAnn,ann@example.com\n"))
    assert row.update.contact_id == "ann@example.com"


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("Email Address", "email_address"), ("UNSUB_TIME", "unsub_time"), ("E - mail", "e_mail")],
)
def test_normalize_header(name: str, normalized: str) -> None:
    """Header cells compare lower-cased, with runs of spaces and hyphens read as underscores."""
    assert normalize_header(name) == normalized


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("name,address\nAnn,ann@example.com\n", "no email column"),
        ("email;name\nann@example.com;Ann\n", "no email column"),
        ("Email,Email Address\na@example.com,a@example.com\n", "several email columns"),
    ],
)
def test_header_problems_are_raised_up_front(text: str, message: str) -> None:
    """A file without exactly one email column is refused before any row is read."""
    with pytest.raises(SuppressionFileError, match=message):
        parse_suppression_rows(io.StringIO(text), tenant_id="t1", source="list.csv", now=NOW)


def test_missing_email_column_names_the_columns_found() -> None:
    """The header error lists what the file does have, so the operator can spot the mix-up."""
    with pytest.raises(SuppressionFileError, match=r"found 'name', 'mail'"):
        parse("name,mail\n")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("foo,,", "line 2: email 'foo' is not an email address"),
        ("ann @example.com,,", "line 2: email 'ann @example.com' is not an email address"),
        ("a@b@example.com,,", "line 2: email 'a@b@example.com' is not an email address"),
        ("<ann@example.com>,,", "line 2: email '<ann@example.com>' is not an email address"),
        ("mailto:ann@example.com,,", "line 2: email 'mailto:ann@example.com' is not an email"),
        ("ann@localhost,,", "line 2: email 'ann@localhost' is not an email address"),
        (",unsubscribed,", "line 2: email is empty"),
        ("ann@example.com,subscribed,", "line 2: status 'subscribed' is not an opt-out status"),
        ("ann@example.com,Pending,", "line 2: status 'Pending' is not an opt-out status"),
        (
            "ann@example.com,,yesterday",
            "line 2: unsubscribed_at 'yesterday' is not a timestamp (ISO 8601 or epoch seconds)",
        ),
        (
            "ann@example.com,,99999999999999999",
            "line 2: unsubscribed_at '99999999999999999' is not a timestamp",
        ),
        (f"{'x' * 309}@example.com,,", "line 2: email 'xxxxxxxx"),
    ],
)
def test_bad_rows_are_reported_with_line_and_column(row: str, message: str) -> None:
    """A bad row yields one error naming its line, the column and the offending value."""
    (result,) = parse(f"email,status,unsubscribed_at\n{row}\n")
    assert isinstance(result, RowError)
    assert result.line == 2
    assert result.message.startswith(message)


def test_long_values_are_shortened_in_messages() -> None:
    """A huge bad value is cut in the message so error reports stay readable."""
    (message,) = errors(parse(f"email\n{'x' * 500}\n"))
    assert len(message) < 120
    assert message.endswith("...' is not an email address")


def test_contact_id_too_long_is_an_error() -> None:
    """A contact id longer than a contact id may be is refused, naming the column."""
    (message,) = errors(parse(f"email,contact_id\nann@example.com,{'c' * 321}\n"))
    assert message == "line 2: contact_id is longer than 320 characters"


def test_bad_rows_never_stop_the_rest() -> None:
    """Good rows after bad ones are still parsed, and every line number is the file's own."""
    results = parse(
        "email,status\n"
        "a@example.com,\n"
        "not-an-email,\n"
        "\n"
        "b@example.com,subscribed\n"
        "c@example.com,bounced\n"
    )
    assert [(row.line, row.update.contact_id) for row in good(results)] == [
        (2, "a@example.com"),
        (6, "c@example.com"),
    ]
    assert errors(results) == [
        "line 3: email 'not-an-email' is not an email address",
        "line 5: status 'subscribed' is not an opt-out status",
    ]


def test_quoted_newlines_keep_line_numbers_right() -> None:
    """A quoted field spanning lines is one row, and the rows after it keep their line numbers."""
    results = parse('email,reason\na@example.com,"moved\naway"\nnope,\n')
    assert [row.line for row in good(results)] == [2]
    assert errors(results) == ["line 4: email 'nope' is not an email address"]


def test_multi_line_bad_row_hints_at_quotes() -> None:
    """An error in a row spanning several lines says so, as an unbalanced quote often is why."""
    (message,) = errors(parse('email,reason\nnope,"a\nb"\n'))
    assert message.endswith("(the row spans lines 2-3: is a quote unbalanced?)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('email\n"a@example.com"x\nb@example.com\n', "line 2: not valid CSV"),
        ('email\na@example.com\n"b@example.com\nc@example.com\n', "line 3: not valid CSV"),
        (f"email,reason\na@example.com,{'y' * 200_000}\nb@example.com,\n", "line 2: not valid CSV"),
    ],
)
def test_broken_csv_is_an_error_row(text: str, message: str) -> None:
    """Malformed CSV (stray or unbalanced quotes, huge fields) is reported by line, not raised."""
    results = parse(text)
    assert [m.split(" (")[0] for m in errors(results)] == [message]


def test_rows_after_a_malformed_line_are_still_read() -> None:
    """After a line the CSV reader rejects, parsing resumes at the next line."""
    results = parse('email\n"a@example.com"x\nb@example.com\n')
    assert [(row.line, row.update.contact_id) for row in good(results)] == [(3, "b@example.com")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T05:04:05+02:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02 03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02", datetime(2025, 1, 2, tzinfo=UTC)),
        ("1735787045", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("1735787045.5", datetime(2025, 1, 2, 3, 4, 5, 500_000, tzinfo=UTC)),
        ("", NOW),
    ],
)
def test_timestamps(value: str, expected: datetime) -> None:
    """Times are ISO 8601 (UTC when no offset is given) or epoch seconds; a missing one is now."""
    (row,) = good(parse(f"email,timestamp\nann@example.com,{value}\n"))
    assert row.update.occurred_at == expected


@pytest.mark.parametrize(
    ("status", "source"),
    [
        ("Unsubscribed", "import:list.csv:unsubscribed"),
        ("hard bounce", "import:list.csv:bounced"),
        ("spam", "import:list.csv:complained"),
        ("complaint", "import:list.csv:complained"),
        ("cleaned", "import:list.csv:cleaned"),
        ("5.1.1", "import:list.csv"),
        ("", "import:list.csv"),
    ],
)
def test_status_is_kept_in_the_source(status: str, source: str) -> None:
    """Every opt-out status imports as unsubscribed; a known one is recorded in the source."""
    (row,) = good(parse(f"email,status\nann@example.com,{status}\n"))
    assert (row.update.unsubscribed, row.update.source) == (True, source)


def test_mailchimp_unsubscribed_export() -> None:
    """A Mailchimp unsubscribed-members export imports with its UNSUB_TIME."""
    results = parse(
        "Email Address,First Name,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE\n"
        "Ann@Example.com,Ann,2024-11-05 10:00:00,Autumn sale\n",
        source="mailchimp.csv",
    )
    (row,) = good(results)
    assert row.update.contact_id == "ann@example.com"
    assert row.update.occurred_at == datetime(2024, 11, 5, 10, tzinfo=UTC)


def test_sendgrid_bounce_export() -> None:
    """A SendGrid bounce export imports with its epoch `created` time; SMTP codes stay out."""
    results = parse(
        'created,email,reason,status\n1735787045,bob@example.com,"550 5.1.1 no such user",5.1.1\n',
        source="sendgrid-bounces.csv",
    )
    (row,) = good(results)
    assert row.update.occurred_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (row.update.source, row.status) == ("import:sendgrid-bounces.csv", None)


def test_status_column_is_preferred_to_reason() -> None:
    """With both a reason and a status column, the status column is the one read."""
    (row,) = good(parse("reason,email,status\nsubscribed,ann@example.com,bounced\n"))
    assert row.status == "bounced"


def test_short_rows_read_missing_cells_as_empty() -> None:
    """A row with fewer cells than the header reads the missing ones as empty."""
    (row,) = good(parse("email,status,timestamp\nann@example.com\n"))
    assert (row.update.occurred_at, row.status) == (NOW, None)


def test_rows_of_empty_cells_are_skipped() -> None:
    """Rows with only empty cells, as spreadsheets append, are neither updates nor errors."""
    results = parse("email,status\n,\n , \nann@example.com,\n")
    assert [(result.line, type(result)) for result in results] == [(4, ParsedRow)]


@pytest.mark.parametrize(
    ("tenant_id", "source", "now"),
    [
        ("bad:tenant", "list.csv", NOW),
        ("", "list.csv", NOW),
        ("t1", "", NOW),
        ("t1", "x" * 200, NOW),
        ("t1", "list.csv", datetime(2025, 1, 1)),  # noqa: DTZ001  # naive on purpose, to be refused
    ],
)
def test_bad_arguments_are_refused(tenant_id: str, source: str, now: datetime) -> None:
    """An invalid tenant, an empty or overlong source, or a naive `now` is refused at once."""
    with pytest.raises(ValueError):  # noqa: PT011  # pydantic and own messages differ per case
        parse_suppression_rows(["email\n"], tenant_id=tenant_id, source=source, now=now)


def test_longest_allowed_source_fits_every_status() -> None:
    """The longest accepted source still makes a valid update source with any status."""
    source = "s" * 179
    (row,) = good(parse("email,status\nann@example.com,unsubscribed\n", source=source))
    assert len(row.update.source) <= 200


def test_windows_line_endings() -> None:
    """CRLF exports parse the same, with the same line numbers."""
    results = parse("email\r\nfoo\r\nann@example.com\r\n")
    assert errors(results) == ["line 2: email 'foo' is not an email address"]
    assert [row.line for row in good(results)] == [3]
