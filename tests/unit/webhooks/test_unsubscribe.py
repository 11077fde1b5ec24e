"""One-click unsubscribe helpers: the RFC 8058 body, stable event ids, redacted access logs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processor.domain.signed_tokens import UnsubscribeToken
from processor.webhooks.unsubscribe import (
    is_one_click,
    redact_path,
    unsubscribe_event_id,
    unsubscribe_messages,
)

TOKEN = UnsubscribeToken("acme", "spring", "u1", "u1@example.com", 2_000_000_000)
MULTIPART = (
    b'--x\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--x--\r\n'
)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", True),
        (MULTIPART, "multipart/form-data", True),
        (b"List-Unsubscribe=one-click", "application/x-www-form-urlencoded", False),
        (b"", "application/x-www-form-urlencoded", False),
        (
            b"List-Unsubscribe=One-Click&List-Unsubscribe=x",
            "application/x-www-form-urlencoded",
            False,
        ),
        (b"\xff", "application/x-www-form-urlencoded", False),
    ],
)
def test_only_the_one_click_body_is_accepted(
    body: bytes, content_type: str, *, expected: bool
) -> None:
    """`List-Unsubscribe=One-Click`, urlencoded or multipart, exactly."""
    assert is_one_click(body, content_type) is expected


def test_a_repeat_gets_the_same_event_id_and_the_same_contact_update() -> None:
    """Same tenant, campaign and contact: the same event id, whatever the expiry or time."""
    later = UnsubscribeToken("acme", "spring", "u1", "u1@example.com", 2_100_000_000)
    assert unsubscribe_event_id(TOKEN) == unsubscribe_event_id(later)
    assert unsubscribe_event_id(TOKEN) != unsubscribe_event_id(
        UnsubscribeToken("acme", "autumn", "u1", "u1@example.com", 2_000_000_000)
    )
    event, update = unsubscribe_messages(TOKEN, datetime(2026, 1, 1, tzinfo=UTC))
    assert (event.role, event.key) == ("delivery-events", "acme:spring")
    assert (update.role, update.key) == ("contact-updates", "acme:u1")
    assert '"unsubscribed":true' in update.value


def test_tokens_never_reach_the_access_log() -> None:
    """The token (contact and address inside) is replaced in logged paths."""
    assert redact_path("/unsubscribe/abc.def") == "/unsubscribe/…"
    assert redact_path("/webhooks/postmark") == "/webhooks/postmark"
