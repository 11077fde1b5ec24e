"""Builds what the resume agent publishes and saves: outcomes, set chunks, manifest, command.

Pure. Ids are derived from the request, so a replayed answer publishes identical bytes.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from processor.ports.detection_store import OutboxMessage
from processor.services.outbox import deterministic_id
from schemas.base import campaign_key
from schemas.control import ResumeCommand
from schemas.resume import (
    RecipientChunk,
    RecipientSetManifest,
    RejectionReason,
    ResumeOutcome,
    ResumeRequest,
)
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from processor.domain.recipients import KeptChunk, RecipientSetSummary

_MAX_IDENTIFIER = 200  # schemas.base.Identifier's max_length


def clone_campaign_id(campaign_id: str, request_id: str) -> str:
    """The campaign a resume sends its remainder as: derived from the request, so stable."""
    suffix = "-resume-" + hashlib.sha256(request_id.encode()).hexdigest()[:8]
    return campaign_id[: _MAX_IDENTIFIER - len(suffix)] + suffix


class ResumeRecord(BaseModel):
    """What the first answer to a request was: saved once, then given again on any replay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: ResumeOutcome
    requested_by: str
    decided_at: datetime
    episode: int = 0
    """The pause episode an accepted request resumes (0 for a rejection)."""


def rejected_outcome(request: ResumeRequest, reason: RejectionReason, detail: str) -> ResumeOutcome:
    """A refusal of `request` for `reason`."""
    return ResumeOutcome(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        campaign_id=request.campaign_id,
        action=request.action,
        accepted=False,
        rejection=reason,
        detail=detail,
    )


def done_outcome(request: ResumeRequest, detail: str) -> ResumeOutcome:
    """The acceptance of a lock or an unlock (nothing is published but the outcome)."""
    return ResumeOutcome(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        campaign_id=request.campaign_id,
        action=request.action,
        accepted=True,
        detail=detail,
    )


def set_outcome(request: ResumeRequest, clone: str, summary: RecipientSetSummary) -> ResumeOutcome:
    """The answer once the set is filtered: accepted, or refused if nobody remains."""
    excluded = sum(summary.excluded.values())
    accepted = summary.total_recipients > 0
    if accepted:
        detail = (
            f"{summary.total_recipients} recipients in {summary.chunk_count} chunks as campaign "
            f"{clone}; {summary.already_attempted} already attempted, {excluded} excluded"
        )
    else:
        detail = (
            f"no engaged recipient remains of {summary.audience_size} planned: "
            f"{summary.already_attempted} already attempted, {excluded} excluded"
        )
    return ResumeOutcome(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        campaign_id=request.campaign_id,
        accepted=accepted,
        rejection=None if accepted else RejectionReason.NO_RECIPIENTS_REMAIN,
        detail=detail,
        clone_campaign_id=clone if accepted else None,
        total_recipients=summary.total_recipients,
        already_attempted=summary.already_attempted,
        excluded=summary.excluded,
        chunk_count=summary.chunk_count,
    )


def outcome_message(outcome: ResumeOutcome) -> OutboxMessage:
    """An outcome on resume-outcomes (key `tenant:campaign`)."""
    key = campaign_key(outcome.tenant_id, outcome.campaign_id)
    return OutboxMessage(TopicRole.RESUME_OUTCOMES.value, key, outcome.model_dump_json())


def chunk_message(request: ResumeRequest, clone: str, chunk: KeptChunk) -> OutboxMessage:
    """A chunk of the set on recipient-sets (key `tenant:clone`)."""
    message = RecipientChunk(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        source_campaign_id=request.campaign_id,
        clone_campaign_id=clone,
        chunk_index=chunk.index,
        recipients=list(chunk.recipients),
    )
    key = campaign_key(request.tenant_id, clone)
    return OutboxMessage(TopicRole.RECIPIENT_SETS.value, key, message.model_dump_json())


def manifest_message(
    request: ResumeRequest, clone: str, summary: RecipientSetSummary
) -> OutboxMessage:
    """The manifest that closes the set on recipient-sets (key `tenant:clone`)."""
    manifest = RecipientSetManifest(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        source_campaign_id=request.campaign_id,
        clone_campaign_id=clone,
        total_recipients=summary.total_recipients,
        chunk_count=summary.chunk_count,
        chunk_size=summary.chunk_size,
        already_attempted=summary.already_attempted,
        excluded=summary.excluded,
        checksum=summary.checksum,
    )
    key = campaign_key(request.tenant_id, clone)
    return OutboxMessage(TopicRole.RECIPIENT_SETS.value, key, manifest.model_dump_json())


def resume_command(record: ResumeRecord) -> OutboxMessage:
    """The control command of an accepted answer (key `tenant:campaign` of the source)."""
    outcome = record.outcome
    if outcome.clone_campaign_id is None:
        raise ValueError("an accepted outcome names its clone campaign")
    command = ResumeCommand(
        command_id=deterministic_id(
            "resume", outcome.tenant_id, outcome.campaign_id, outcome.request_id
        ),
        tenant_id=outcome.tenant_id,
        campaign_id=outcome.campaign_id,
        clone_campaign_id=outcome.clone_campaign_id,
        request_id=outcome.request_id,
        requested_by=record.requested_by,
        recipient_count=outcome.total_recipients,
        decided_at=record.decided_at,
    )
    key = campaign_key(outcome.tenant_id, outcome.campaign_id)
    return OutboxMessage(TopicRole.CONTROL.value, key, command.model_dump_json())
