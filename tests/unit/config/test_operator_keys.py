"""The operator keys file, and what a signature must be for the worker to accept it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.config.operator_keys import (
    load_operator_keys,
    needs_signature,
    parse_operator_keys,
    signed,
)
from processor.domain.operator_signature import canonical_request
from processor.errors import ConfigurationError
from schemas.resume import OperatorAction, ResumeRequest

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GLOBAL = "global-secret-0123456789-0123456789-abc"
OLD, NEW = "acme-old-secret-0123456789-0123456789", "acme-new-secret-0123456789-0123456789"
FILE = f"""
global:
  - id: ops-global
    secret: {GLOBAL}
tenants:
  acme:
    - id: acme-old
      secret: {OLD}
    - id: acme-new
      secret: env:ACME_OPERATOR_KEY
"""
LATE = timedelta(seconds=301)
"""Just outside the 300 s window the tests check with."""
KEYS = parse_operator_keys(FILE, environ={"ACME_OPERATOR_KEY": NEW})


def request(**fields: Any) -> ResumeRequest:
    """A privileged resume of acme's `welcome`, requested at NOW."""
    values: dict[str, Any] = {
        "request_id": "q1",
        "tenant_id": "acme",
        "campaign_id": "welcome",
        "requested_by": "jane",
        "privileged": True,
        "requested_at": NOW,
    }
    return ResumeRequest(**{**values, **fields})


@pytest.mark.parametrize(
    ("key_id", "secret"),
    [("ops-global", GLOBAL), ("acme-old", OLD), ("acme-new", NEW)],
)
def test_global_keys_and_both_keys_of_a_rotation_authorize(key_id: str, secret: str) -> None:
    """A global key, and each of the two keys a tenant lists while rotating, verify."""
    assert KEYS.refusal(signed(request(), key_id, secret), NOW, 300) is None


TAMPERED: list[tuple[str, dict[str, Any]]] = [
    ("tenant", {"tenant_id": "globex"}),
    ("campaign", {"campaign_id": "other"}),
    ("request id", {"request_id": "q2"}),
    ("requester", {"requested_by": "mallory"}),
    ("privileged flag", {"privileged": False}),
    ("action", {"action": OperatorAction.UNLOCK, "schema_version": 2}),
    ("time", {"requested_at": NOW + timedelta(milliseconds=1)}),
]


@pytest.mark.parametrize(("what", "change"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_signed_field_changed_after_signing_is_refused(what: str, change: dict[str, Any]) -> None:
    """Every field of the canonical request is covered: changing any one breaks the signature."""
    tampered = signed(request(), "ops-global", GLOBAL).model_copy(update=change)
    assert KEYS.refusal(tampered, NOW, 300) is not None, what


@pytest.mark.parametrize(
    ("made", "why"),
    [
        (request, "not signed"),
        (lambda: signed(request(), "nobody", GLOBAL), "not an operator key of tenant acme"),
        (lambda: signed(request(tenant_id="globex"), "acme-new", NEW), "of tenant globex"),
        (lambda: signed(request(), "acme-new", OLD), "does not verify"),
        (
            lambda: signed(request(requested_at=NOW - timedelta(seconds=301)), "acme-new", NEW),
            "window",
        ),
        (
            lambda: signed(request(requested_at=NOW + timedelta(seconds=301)), "acme-new", NEW),
            "window",
        ),
    ],
    ids=["unsigned", "unknown key", "other tenant's key", "wrong secret", "stale", "future"],
)
def test_a_request_without_a_valid_fresh_signature_is_refused(made: Any, why: str) -> None:
    """Unsigned, unknown key, another tenant's key, a wrong MAC, or outside the window."""
    refusal = KEYS.refusal(made(), NOW, 300)
    assert refusal is not None
    assert why in refusal


def test_a_worker_without_keys_refuses_every_signature() -> None:
    """With no keys file, even a well-formed signature authorizes nothing."""
    from processor.config.operator_keys import OperatorKeys  # noqa: PLC0415  # only here

    refusal = OperatorKeys.none().refusal(signed(request(), "ops-global", GLOBAL), NOW, 300)
    assert refusal is not None
    assert "SENDGUARD_OPERATOR_KEYS_FILE" in refusal


@pytest.mark.parametrize(
    ("fields", "needs"),
    [
        ({"privileged": False}, False),
        ({"privileged": True}, True),
        ({"privileged": False, "action": OperatorAction.LOCK, "schema_version": 2}, True),
        ({"privileged": False, "action": OperatorAction.UNLOCK, "schema_version": 2}, True),
    ],
)
def test_privileged_resumes_locks_and_unlocks_need_a_signature(
    fields: dict[str, Any], *, needs: bool
) -> None:
    """Only a plain resume goes without a signature."""
    assert needs_signature(request(**fields)) is needs


def test_a_lock_request_must_say_schema_version_2() -> None:
    """A version-1 lock is invalid: a worker before actions would take it for a resume."""
    with pytest.raises(ValueError, match="schema_version 2"):
        request(action=OperatorAction.LOCK)


_TEXT = st.text(min_size=1, max_size=30).filter(lambda text: text.strip() == text)


@given(_TEXT, st.text(max_size=30))
def test_the_canonical_form_is_unambiguous(requested_by: str, reason: str) -> None:
    """Distinct requesters never share a canonical form; the free-text reason is not signed."""
    one = request(requested_by=requested_by, reason=reason)
    other = request(requested_by=f"{requested_by},", reason=reason)
    assert canonical_request(one) != canonical_request(other)
    assert canonical_request(one).isascii()


BAD_FILES = [
    (f"global:\n  - id: a\n    secret: {GLOBAL}\n  - id: a\n    secret: {OLD}\n", "more than once"),
    (f"global:\n  - id: a\n    secret: {GLOBAL}\n  - id: b\n    secret: {GLOBAL}\n", "same secret"),
    ("global:\n  - id: a\n    secret: short-secret-hunter2\n", "at least 32"),
    ("tenants: {}\n", "no operator key"),
    (f"global:\n  - id: a\n    secret: {GLOBAL}\n    extra: 1\n", "extra"),
    (f"global: [{{id: a, secret: {GLOBAL}\n", "YAML"),
    (f"global:\n  - id: a\n  secret: {GLOBAL}\n", "YAML"),
    ("global:\n  - id: a\n    secret: env:NOT_SET_ANYWHERE\n", "NOT_SET_ANYWHERE"),
    (f'tenants:\n  "ac\\u200bme":\n    - id: a\n      secret: {GLOBAL}\n', "tenants"),
]


@pytest.mark.parametrize(("text", "says"), BAD_FILES)
def test_a_bad_keys_file_is_refused_without_echoing_a_secret(
    text: str, says: str, tmp_path: Path
) -> None:
    """Each problem is named (place and kind), never with a secret in the message."""
    path = tmp_path / "operator-keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_operator_keys(path, environ={})
    message = str(caught.value)
    assert says in message
    for secret in (GLOBAL, OLD, "hunter2"):
        assert secret not in message
