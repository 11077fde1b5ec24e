"""The canonical form of an operator request and its HMAC-SHA256 signature (pure).

Signer (`sendguard resume --privileged`, `lock`, `unlock`) and verifier (the worker) build the
same bytes from the request's fields; docs/SECURITY.md states the form for other signers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from schemas.resume import ResumeRequest

CANONICAL_VERSION: Final = "sendguard-operator-request-v1"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


def epoch_ms(at: datetime) -> int:
    """Whole milliseconds since the epoch (exact: no float rounding)."""
    return (at - _EPOCH) // _MILLISECOND


def canonical_request(request: ResumeRequest) -> bytes:
    """What is signed: the request's canonical form, as ASCII bytes.

    A JSON array, ASCII-only, no spaces: the version, action, tenant, campaign, request id,
    requester, privileged flag and the signing time (`requested_at`) in epoch ms. JSON quoting
    makes the fields unambiguous whatever characters they hold.
    """
    fields = [
        CANONICAL_VERSION,
        request.action.value,
        request.tenant_id,
        request.campaign_id,
        request.request_id,
        request.requested_by,
        request.privileged,
        epoch_ms(request.requested_at),
    ]
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sign(secret: bytes, request: ResumeRequest) -> str:
    """The request's signature with `secret`: lowercase hex HMAC-SHA256."""
    return hmac.new(secret, canonical_request(request), hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, request: ResumeRequest, signature: str) -> bool:
    """Whether `signature` is the request's signature with `secret` (constant time)."""
    return hmac.compare_digest(sign(secret, request).encode(), signature.encode("ascii"))
