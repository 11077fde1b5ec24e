"""Detection's write-behind: campaigns folded in memory and written to the store a little later.

Terms, one word each:
- held: a campaign whose folded state is in memory and not in the store yet (a `Held`), with
  its held events (every event folded since the stored version). Only a campaign that decided
  nothing is held; a decision writes its campaign at once. A later batch's events of a held
  campaign are joined after its held events and folded onto its held state.
- counted: what earlier batch reports already counted of the held events, so that a fold over
  them again reports only the new ones.
- due: the first campaign held since all were written was held `hold_s` ago (or holding is
  off): the next batch writes every held campaign.
- landing: a batch's offsets may be committed once its landing is done (`BatchReport.landing`).
  A batch that held a campaign lands only once every campaign held so far is written; if that
  write fails, its landing raises StoreUnavailableError and the batch is read again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from processor.errors import StoreUnavailableError
from processor.services.campaign_fold import CampaignEvents, Held

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.domain.windows import WindowSpec
    from processor.ports.detection_store import CampaignRef
    from processor.services.campaign_fold import Folded


class WriteBehind:
    """The held campaigns of one detection service, and when they are due to be written."""

    def __init__(self, hold_s: float, monotonic: Callable[[], float]) -> None:
        self._hold_s = hold_s
        self._monotonic = monotonic
        self._held: dict[CampaignRef, Held] = {}
        self._held_since = 0.0
        self._all_written: asyncio.Future[None] | None = None
        """Done once every campaign held so far is written (None while none is held)."""

    def holding(self) -> bool:
        """Whether any campaign is held."""
        return bool(self._held)

    def due(self) -> bool:
        """Whether the held campaigns are to be written with the next batch."""
        if self._hold_s <= 0:
            return True
        waited = self._monotonic() - self._held_since
        return bool(self._held) and waited >= self._hold_s

    def held_refs(self) -> list[CampaignRef]:
        """The held campaigns."""
        return list(self._held)

    def landing(self) -> asyncio.Future[None] | None:
        """What a batch that ran while campaigns are held waits for to land (None if none is).

        Shielded: a commit cancelled while it waits must not cancel the others' wait.
        """
        return None if self._all_written is None else asyncio.shield(self._all_written)

    def take(
        self, todo: list[CampaignEvents], windows: tuple[WindowSpec, ...]
    ) -> tuple[list[CampaignEvents], dict[CampaignRef, Held]]:
        """Join each campaign's held events before the batch's, taking it out of the held.

        Also returns the held campaigns whose state may be folded on: sound and of `windows`.
        """
        joined: list[CampaignEvents] = []
        sound: dict[CampaignRef, Held] = {}
        for campaign in todo:
            held = self._held.pop(campaign.ref, None)
            if held is None:
                joined.append(campaign)
                continue
            held_events = len(held.events)
            held.events.extend(campaign.events)
            if held.state is not None and held.windows == windows:
                sound[campaign.ref] = held
            joined.append(CampaignEvents(campaign.ref, held.events, held_events, held.counted))
        return joined, sound

    def hold(self, folded: Folded, windows: tuple[WindowSpec, ...]) -> None:
        """Hold a folded campaign, to be written once due."""
        if self._all_written is None:  # the first held since all were written: the wait starts
            self._held_since = self._monotonic()
            self._all_written = asyncio.get_running_loop().create_future()
        campaign, write = folded.campaign, folded.write
        self._held[campaign.ref] = Held(
            folded.state,
            write.expected_version,
            windows,
            campaign.events,
            write.new_digests_by_day,
            folded.seen,
            campaign.counted + folded.uncounted(),
        )

    def keep_after_break(
        self, taken: list[CampaignEvents], windows: tuple[WindowSpec, ...]
    ) -> None:
        """Hold again what `take` joined, when the batch broke off before its writes.

        Nothing held may be lost with such a batch: each campaign keeps the events of earlier
        batches, to be folded again from the store; this batch's own are left out (the caller
        applies them again, record by record).
        """
        for campaign in taken:
            if campaign.held_events:
                events = campaign.events[: campaign.held_events]
                self._held[campaign.ref] = Held(
                    None, 0, windows, events, {}, set(), campaign.counted
                )
            else:
                self._held.pop(campaign.ref, None)

    def settle(self) -> None:
        """Let the waiting batches land if nothing is held any more."""
        if self._all_written is not None and not self._held:
            self._all_written.set_result(None)
            self._all_written = None

    def fail(self, exc: Exception) -> None:
        """Drop every held campaign and fail the waiting batches' landings with `exc`.

        For when the worker stops: it reads every batch not committed again, so what was held
        is moot, and the batches that held it must not be committed.
        """
        self._held.clear()
        if self._all_written is not None:
            self._all_written.set_exception(
                StoreUnavailableError(f"campaign states held in memory not written: {exc}")
            )
            self._all_written = None
