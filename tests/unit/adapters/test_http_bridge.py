"""The webhook bridge's signature header and the MTA's Authorization header (pure parts)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.adapters.http_bridge import authorization_header, signature_header


def test_signature_header_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """`t=<unix>,v1=<hex>` with the HMAC-SHA256 of `<t>.<body>` (a known vector)."""
    body = b'{"command":"pause"}'
    expected = hmac.new(b"s3cret", b'1767225600.{"command":"pause"}', hashlib.sha256).hexdigest()
    assert signature_header(body, [b"s3cret"], 1767225600) == f"t=1767225600,v1={expected}"


@given(body=st.binary(max_size=200), old=st.binary(min_size=1, max_size=40))
def test_during_a_rotation_both_secrets_verify(body: bytes, old: bytes) -> None:
    """Signed with the new and the previous secret, a receiver holding either one verifies."""
    header = signature_header(body, [b"new-secret", old], 1700000000)
    fields = header.split(",")
    assert fields[0] == "t=1700000000"
    signatures = {f.removeprefix("v1=") for f in fields[1:]}
    for secret in (b"new-secret", old):
        mac = hmac.new(secret, b"1700000000." + body, hashlib.sha256).hexdigest()
        assert mac in signatures


@pytest.mark.parametrize(
    ("token", "username", "password", "expected"),
    [
        (None, None, None, {}),
        ("tok", None, None, {"Authorization": "Bearer tok"}),
        (
            None,
            "kumo",
            "pw",
            {"Authorization": "Basic " + base64.b64encode(b"kumo:pw").decode()},
        ),
    ],
)
def test_authorization_header(
    token: str | None, username: str | None, password: str | None, expected: dict[str, str]
) -> None:
    """A bearer token, basic credentials, or nothing (kumod trusting the bridge's host)."""
    assert authorization_header(token=token, username=username, password=password) == expected
