"""The resume use case: answer resume requests with filtered remaining-recipient sets.

What the filter reads comes in through `resume_intake`. Idempotent per request id: the answer
is saved before the source is re-armed or commanded, then given again on any replay (only a
crash between publishing the set and saving can publish the set twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from processor.config.operator_keys import OperatorKeys, needs_signature
from processor.domain.codec import StateDecodeError, decode_state, encode_state
from processor.domain.recipients import FilterRules, RecipientSetAccumulator
from processor.domain.windows import CampaignWindows
from processor.errors import (
    WRITE_ATTEMPTS,
    InvalidInputError,
    PublishError,
    StoreUnavailableError,
    WriteConflictError,
)
from processor.ports.dead_letters import dead_letter
from processor.ports.detection_store import CampaignAsk, CampaignRef
from processor.services.operator_requests import apply_lock, unauthorized
from processor.services.outbox import health_snapshot
from processor.services.resume_flow import PublishBehind, fewer_gc_passes, read_ahead
from processor.services.resume_intake import parse_input
from processor.services.resume_outbox import (
    ResumeRecord,
    chunk_message,
    clone_campaign_id,
    manifest_message,
    outcome_message,
    rejected_outcome,
    resume_command,
    set_outcome,
)
from schemas.base import campaign_key
from schemas.health import CampaignStatus
from schemas.resume import OperatorAction, RejectionReason, ResumeOutcome, ResumeRequest

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Sequence

    from processor.domain.campaign_state import CampaignState
    from processor.domain.policy import PolicyBook
    from processor.ports.contact_store import Candidates, ContactStore
    from processor.ports.detection_store import DetectionStore, OutboxMessage
    from processor.ports.publishing import Publisher
    from processor.ports.records import RawRecord

log = logging.getLogger(__name__)

FILTER_STEP = 2000
"""Recipients filtered between two returns to the event loop, where the read ahead of the next
audience chunk moves on (its Redis work then overlaps the filter's Python work)."""
PUBLISH_GROUP = 16
"""Recipient-set chunks confirmed per publish: pipelined, yet memory stays bounded (one group
in flight while the next fills)."""


class ContactProgress(Protocol):
    """How far the merge of delivery events into contact state is behind them."""

    async def wait_caught_up(self, timeout_s: float) -> int:
        """Wait until every event produced before the call is merged; events still behind."""
        ...


class ResumeService:
    """Answers resume requests: checks, filters the remainder, publishes it and re-arms."""

    def __init__(
        self,
        store: DetectionStore,
        contacts: ContactStore,
        publisher: Publisher,
        policy_book: Callable[[], PolicyBook],
        *,
        rules_for: Callable[[str], FilterRules] = lambda _tenant: FilterRules(),
        chunk_size: int = 1000,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
        run_ids: Callable[[], str] = lambda: uuid.uuid4().hex,
        contact_progress: ContactProgress | None = None,
        contact_wait_s: float = 30.0,
        operator_keys: OperatorKeys | None = None,
        operator_max_age_s: float = 300.0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._store = store
        self._contacts = contacts
        self._publisher = publisher
        self._policy_book = policy_book
        self._rules_for = rules_for
        self._chunk_size = chunk_size
        self._wall_clock = wall_clock
        self._run_ids = run_ids
        self._contact_progress = contact_progress
        self._contact_wait_s = contact_wait_s
        self._operator_keys = operator_keys or OperatorKeys.none()
        self._operator_max_age_s = operator_max_age_s

    async def apply(self, records: Sequence[RawRecord]) -> None:
        """Answer each request record; a bad one is dead-lettered, never raised.

        Raises StoreUnavailableError (or its WriteConflictError) or PublishError: the records
        must then be read again.
        """
        for record in records:
            try:
                request = parse_input(record, ResumeRequest, "invalid_request")
                await self.handle(request)
            except InvalidInputError as exc:
                letter = dead_letter(record, exc.error_type, exc.reason, self._wall_clock())
                await self._publisher.publish([letter])
            except (StoreUnavailableError, PublishError):
                raise
            except Exception as exc:  # a bug on one request must not stall the others
                log.exception("resume request could not be processed; dead-lettered")
                reason = f"{type(exc).__name__}: {exc}"
                letter = dead_letter(record, "processing_error", reason, self._wall_clock())
                await self._publisher.publish([letter])

    async def handle(self, request: ResumeRequest) -> ResumeOutcome:
        """Answer one request: the saved answer if it was answered before, else a new one."""
        ids = (request.tenant_id, request.campaign_id, request.request_id)
        saved = await self._contacts.resume_record(*ids)
        if saved is not None:
            return await self._answer(ResumeRecord.model_validate_json(saved))
        decided_at = self._wall_clock()
        privileged = needs_signature(request)
        if privileged:
            keys, max_age_s = self._operator_keys, self._operator_max_age_s
            refused = unauthorized(keys, request, decided_at, max_age_s)
            if refused is not None:
                # Not saved: nothing was done, and a forger must not pre-empt the request id.
                return await self._answer(
                    ResumeRecord(
                        outcome=refused, requested_by=request.requested_by, decided_at=decided_at
                    )
                )
        if request.action is not OperatorAction.RESUME:
            record = ResumeRecord(
                outcome=await apply_lock(self._store, request),
                requested_by=request.requested_by,
                decided_at=decided_at,
            )
            in_force = await self._contacts.save_resume_record(*ids, record.model_dump_json())
            return await self._answer(ResumeRecord.model_validate_json(in_force))
        checked = await self._check(request, privileged=privileged)
        if isinstance(checked, ResumeOutcome):
            record = ResumeRecord(
                outcome=checked, requested_by=request.requested_by, decided_at=decided_at
            )
        else:
            not_ready = await self._not_ready(request)
            if not_ready is not None:
                # Not saved: nothing was done, and the same request may be answered once the
                # inputs have caught up.
                transient = ResumeRecord(
                    outcome=not_ready, requested_by=request.requested_by, decided_at=decided_at
                )
                return await self._answer(transient)
            outcome = await self._publish_set(request)
            episode = checked if outcome.accepted else 0
            record = ResumeRecord(
                outcome=outcome,
                requested_by=request.requested_by,
                decided_at=decided_at,
                episode=episode,
            )
        # The commit point: from here on, every replay gives this answer (or one saved first).
        in_force = await self._contacts.save_resume_record(*ids, record.model_dump_json())
        return await self._answer(ResumeRecord.model_validate_json(in_force))

    async def _not_ready(self, request: ResumeRequest) -> ResumeOutcome | None:
        """A transient refusal when the set would be filtered on incomplete inputs, else None.

        A missing audience chunk would leave its recipients out of the set; contact state
        behind the delivery events could mail someone who unsubscribed or bounced moments ago.
        """
        stored, total = await self._contacts.audience_progress(
            request.tenant_id, request.campaign_id
        )
        if total is not None and stored < total:
            detail = (
                f"{stored} of the {total} chunks of campaign {request.campaign_id}'s planned "
                "audience have arrived; ask again once all have"
            )
            return rejected_outcome(request, RejectionReason.AUDIENCE_INCOMPLETE, detail)
        behind = await self._contacts_behind()
        if behind:
            detail = (
                f"contact state is {behind} delivery events behind after waiting "
                f"{self._contact_wait_s:g} s; ask again shortly"
            )
            return rejected_outcome(request, RejectionReason.CONTACTS_BEHIND, detail)
        return None

    async def _contacts_behind(self) -> int:
        """Delivery events produced before now and not yet merged into contact state."""
        if self._contact_progress is None:
            return 0
        behind = await self._contact_progress.wait_caught_up(self._contact_wait_s)
        if behind:
            log.warning("contact merge behind, resume refused", extra={"behind": behind})
        return behind

    async def _check(self, request: ResumeRequest, *, privileged: bool) -> ResumeOutcome | int:
        """A rejection, or the pause episode the request may resume.

        `privileged`: its operator signature was verified, so it may lift a tenant-wide or an
        operator-locked pause.
        """
        ref = CampaignRef(request.tenant_id, request.campaign_id)
        stored, total = await self._contacts.audience_progress(ref.tenant_id, ref.campaign_id)
        if not stored and total is None:
            detail = (
                f"sendguard has no planned audience of campaign {ref.campaign_id} "
                f"of tenant {ref.tenant_id}"
            )
            return rejected_outcome(request, RejectionReason.UNKNOWN_CAMPAIGN, detail)
        loaded = (await self._store.load_campaigns([CampaignAsk(ref)]))[0]
        state = self._decode(ref, loaded.blob)
        if state is None or state.status is not CampaignStatus.PAUSED:
            status = "unseen by detection" if state is None else state.status.value
            detail = f"campaign {ref.campaign_id} is not paused (it is {status})"
            return rejected_outcome(request, RejectionReason.NOT_PAUSED, detail)
        if not privileged and await self._store.tenant_paused(ref.tenant_id):
            detail = (
                f"tenant {ref.tenant_id} is paused as a whole: only a privileged request "
                "signed with an operator key may resume its campaigns"
            )
            return rejected_outcome(request, RejectionReason.PRIVILEGED_PAUSE, detail)
        lock = None if privileged else await self._store.campaign_lock(ref)
        if lock is not None:
            by = json.loads(lock).get("by", "an operator")
            detail = (
                f"campaign {ref.campaign_id}'s pause is locked by {by}: only a privileged "
                "request signed with an operator key may resume it"
            )
            return rejected_outcome(request, RejectionReason.PRIVILEGED_PAUSE, detail)
        return state.episode

    async def _publish_set(self, request: ResumeRequest) -> ResumeOutcome:
        """Stream the audience through the filter, publishing chunks as they fill."""
        tenant_id, campaign_id = request.tenant_id, request.campaign_id
        clone = clone_campaign_id(campaign_id, request.request_id)
        accumulator = RecipientSetAccumulator(
            rules=self._rules_for(tenant_id), now=request.requested_at, chunk_size=self._chunk_size
        )
        run_id = self._run_ids()
        publishing = PublishBehind(self._publisher)
        try:
            with fewer_gc_passes():
                pending = await self._filter(request, clone, run_id, accumulator, publishing)
            last = accumulator.finish()
            if last is not None:
                pending.append(chunk_message(request, clone, last))
            summary = accumulator.summary()
            if summary.total_recipients:
                pending.append(manifest_message(request, clone, summary))
            if pending:
                await publishing.publish(pending)
            await publishing.flush()
        finally:
            await publishing.abandon()  # only left in flight when failing
            with contextlib.suppress(StoreUnavailableError):  # its scratch set expires anyway
                await self._contacts.end_run(tenant_id, campaign_id, run_id)
        return set_outcome(request, clone, summary)

    async def _filter(
        self,
        request: ResumeRequest,
        clone: str,
        run_id: str,
        accumulator: RecipientSetAccumulator,
        publishing: PublishBehind,
    ) -> list[OutboxMessage]:
        """Feed the audience to the filter, publishing full groups of chunks; returns the rest.

        Overlapped: the next audience chunks are read while this one is filtered, and a group
        of set chunks is acknowledged while the next group fills. So at most three audience
        chunks (this one and two read ahead) and two groups of set chunks are held at once.
        """
        add = accumulator.add
        pending: list[OutboxMessage] = []
        batches = read_ahead(self._candidates(request.tenant_id, request.campaign_id, run_id))
        async with contextlib.aclosing(batches):
            async for candidates in batches:
                for part in candidates.slices(FILTER_STEP):
                    for recipient, state, done in part:
                        chunk = add(recipient, state, attempted=done)
                        if chunk is not None:
                            pending.append(chunk_message(request, clone, chunk))
                    await asyncio.sleep(0)  # the read ahead takes its next step now
                if len(pending) >= PUBLISH_GROUP:
                    await publishing.publish(pending)
                    pending = []
        return pending

    async def _candidates(
        self, tenant_id: str, campaign_id: str, run_id: str
    ) -> AsyncGenerator[Candidates, None]:
        """The audience, chunk by chunk: the recipients met first in the run, with their reads.

        The chunk after is read and decoded while Redis claims and reads this one's contacts.
        """
        chunks = read_ahead(self._contacts.audience_chunks(tenant_id, campaign_id))
        async with contextlib.aclosing(chunks):
            async for planned in chunks:
                yield await self._contacts.candidates(tenant_id, campaign_id, run_id, planned)

    async def _answer(self, record: ResumeRecord) -> ResumeOutcome:
        """Publish an answer: for an acceptance, re-arm the source and command the resume."""
        outcome = record.outcome
        messages = []
        if outcome.accepted and outcome.action is OperatorAction.RESUME:
            ref = CampaignRef(outcome.tenant_id, outcome.campaign_id)
            snapshot = await self._rearm(ref, record)
            messages.append(resume_command(record))
            if snapshot is not None:
                messages.append(snapshot)
        messages.append(outcome_message(outcome))
        await self._publisher.publish(messages)
        log.info(
            "resume request answered",
            extra={
                "tenant_id": outcome.tenant_id,
                "campaign_id": outcome.campaign_id,
                "request_id": outcome.request_id,
                "action": outcome.action.value,
                "accepted": outcome.accepted,
                "rejection": outcome.rejection,
                "recipients": outcome.total_recipients,
            },
        )
        return outcome

    async def _rearm(self, ref: CampaignRef, record: ResumeRecord) -> OutboxMessage | None:
        """Re-arm the source if still paused in the episode resumed; its RESUMED snapshot.

        Compare-and-set, retried on conflict. None when there is nothing (left) to re-arm.
        """
        book = self._policy_book()
        for _attempt in range(WRITE_ATTEMPTS):
            loaded = (await self._store.load_campaigns([CampaignAsk(ref)]))[0]
            state = self._decode(ref, loaded.blob)
            if (
                state is None
                or state.status is not CampaignStatus.PAUSED
                or state.episode != record.episode
            ):
                return None
            watermark_ms = state.windows.watermark_ms
            state.rearm(book.windows)
            if await self._store.save_resume(ref, encode_state(state), loaded.version):
                # Fresh windows, but the snapshot's as_of stays the campaign's event time.
                windows = CampaignWindows(book.windows, watermark_ms=watermark_ms)
                shown = replace(state, windows=windows)
                return health_snapshot(ref.tenant_id, ref.campaign_id, shown, status_changed=True)
        key = campaign_key(ref.tenant_id, ref.campaign_id)
        raise WriteConflictError(f"campaign state kept changing under us: {key}")

    def _decode(self, ref: CampaignRef, blob: bytes | None) -> CampaignState | None:
        if blob is None:
            return None
        try:
            return decode_state(blob, self._policy_book().windows)
        except StateDecodeError:
            log.exception(
                "corrupt campaign state, not resumable",
                extra={"tenant_id": ref.tenant_id, "campaign_id": ref.campaign_id},
            )
            return None
