"""After a campaign's outbox is published: escalate its pauses to the tenant, then clear it.

Also the recovery of outboxes a crash left unpublished.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from processor.ports.detection_store import CampaignAsk
from processor.ports.records import to_ms
from processor.services.outbox import tenant_pause_command
from schemas.control import PauseCommand, read_control
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.domain.policy import PolicyBook
    from processor.ports.detection_store import CampaignRef, DetectionStore, OutboxMessage
    from processor.ports.publishing import Publisher

log = logging.getLogger(__name__)

Published = tuple["CampaignRef", list["OutboxMessage"], int]
"""A campaign, its published outbox and the outbox's version (to clear exactly that one)."""


class OutboxDelivery:
    """Publishes campaigns' outboxes, escalates their pauses, then forgets them."""

    def __init__(
        self,
        store: DetectionStore,
        publisher: Publisher,
        policy_book: Callable[[], PolicyBook],
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._policy_book = policy_book

    async def deliver(self, ref: CampaignRef, outbox: list[OutboxMessage], version: int) -> None:
        """Publish a campaign's decided messages, escalate its pauses, then forget them."""
        await self._publisher.publish(outbox)
        await self.after_publish([(ref, outbox, version)])

    async def after_publish(self, published: list[Published]) -> None:
        """Escalate the published pauses in event-time order, then forget the outboxes.

        The order makes tenant escalation independent of how events were cut into batches.
        """
        pauses: list[tuple[int, CampaignRef, PauseCommand]] = []
        for ref, outbox, _ in published:
            for message in outbox:
                if message.role == TopicRole.CONTROL:
                    command = read_control(message.value)
                    if isinstance(command, PauseCommand):
                        pauses.append((to_ms(command.decided_at), ref, command))
        pauses.sort(key=lambda p: (p[0], p[1].tenant_id, p[1].campaign_id))
        for at_ms, ref, command in pauses:
            await self._escalate(ref, command.episode, at_ms)
        for ref, _, version in published:
            await self._store.clear_outbox(ref, version)

    async def _escalate(self, ref: CampaignRef, episode: int, at_ms: int) -> None:
        book = self._policy_book()
        policy = book.for_tenant(ref.tenant_id)
        escalation = await self._store.record_campaign_pause(
            ref.tenant_id,
            f"{ref.campaign_id}#{episode}",
            at_ms,
            policy.escalation.campaign_pauses,
            policy.escalation.within_ms,
        )
        if escalation is None:
            return
        message = tenant_pause_command(ref.tenant_id, escalation, at_ms, policy)
        await self._publisher.publish([message])
        await self._store.confirm_tenant_pause(ref.tenant_id, escalation.episode)
        log.warning(
            "tenant paused",
            extra={"tenant_id": ref.tenant_id, "episode": escalation.episode},
        )

    async def recover(self, unpublished_for_s: float = 0.0) -> int:
        """Publish outboxes left by a crash; returns how many.

        Only those unpublished for `unpublished_for_s`: the worker that writes an outbox
        publishes it within milliseconds, and a sweep (of any worker) taking it meanwhile would
        publish the same command twice.
        """
        refs = await self._store.campaigns_with_outbox(round(unpublished_for_s * 1000))
        if not refs:
            return 0
        stored = await self._store.load_campaigns([CampaignAsk(ref) for ref in refs])
        recovered = 0
        for ref, loaded in zip(refs, stored, strict=True):
            if loaded.outbox:
                await self.deliver(ref, loaded.outbox, loaded.outbox_version)
                recovered += 1
            else:
                await self._store.clear_outbox(ref, loaded.outbox_version)
        return recovered
