"""Operator requests on the resume-requests topic: the signature check, locks and unlocks.

Privilege comes from a verified operator signature (config/operator_keys.py), never from the
request's own `privileged` flag; a refusal is logged with who asked and why.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from processor.ports.detection_store import CampaignAsk, CampaignRef
from processor.services.resume_outbox import done_outcome, rejected_outcome
from schemas.base import campaign_key
from schemas.resume import OperatorAction, RejectionReason

if TYPE_CHECKING:
    from datetime import datetime

    from processor.config.operator_keys import OperatorKeys
    from processor.ports.detection_store import DetectionStore
    from schemas.resume import ResumeOutcome, ResumeRequest

log = logging.getLogger(__name__)


def unauthorized(
    keys: OperatorKeys, request: ResumeRequest, now: datetime, max_age_s: float
) -> ResumeOutcome | None:
    """The refusal of a request whose operator signature does not authorize it, or None."""
    why = keys.refusal(request, now, max_age_s)
    if why is None:
        return None
    log.warning(
        "operator request refused: unauthorized",
        extra={
            "tenant_id": request.tenant_id,
            "campaign_id": request.campaign_id,
            "request_id": request.request_id,
            "action": request.action.value,
            "privileged": request.privileged,
            "requested_by": request.requested_by,
            "key_id": request.signature.key_id if request.signature else None,
            "why": why,
        },
    )
    return rejected_outcome(request, RejectionReason.UNAUTHORIZED, why)


async def apply_lock(store: DetectionStore, request: ResumeRequest) -> ResumeOutcome:
    """Apply a verified lock or unlock of the campaign's pause; its outcome.

    Locking a campaign sendguard has no state of (never seen, a typo, or expired) is refused;
    an unlock says whether there was a lock.
    """
    ref = CampaignRef(request.tenant_id, request.campaign_id)
    key = campaign_key(ref.tenant_id, ref.campaign_id)
    extra = {"tenant_id": ref.tenant_id, "campaign_id": ref.campaign_id,
             "requested_by": request.requested_by, "request_id": request.request_id}  # fmt: skip
    if request.action is OperatorAction.UNLOCK:
        had = await store.campaign_lock(ref) is not None
        await store.set_campaign_lock(ref, None)
        log.info("campaign pause unlocked", extra={**extra, "had_lock": had})
        return done_outcome(
            request, f"unlocked {key}" if had else f"{key} had no lock: nothing to do"
        )
    (stored,) = await store.load_campaigns([CampaignAsk(ref)])
    if stored.blob is None:
        detail = f"no campaign {key}: never seen, or its state expired; nothing locked"
        return rejected_outcome(request, RejectionReason.UNKNOWN_CAMPAIGN, detail)
    lock = {
        "by": request.requested_by,
        "reason": request.reason,
        "at": request.requested_at.isoformat(),
        "key_id": request.signature.key_id if request.signature else None,
        "request_id": request.request_id,
    }
    await store.set_campaign_lock(ref, json.dumps(lock, separators=(",", ":")))
    log.info("campaign pause locked", extra=extra)
    return done_outcome(request, f"locked {key} (by {request.requested_by})")
