"""Decoded campaign states as this worker last wrote them: a bounded cache, Redis the truth.

A cached state is used only while the stored blob is still the one it wrote, and it is taken
out while folded, so a failed write never leaves it changed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processor.domain.campaign_state import CampaignState
from processor.domain.codec import StateDecodeError, decode_state

if TYPE_CHECKING:
    from processor.domain.windows import WindowSpec
    from processor.ports.detection_store import CampaignRef

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _CachedState:
    """A campaign's state as this worker last wrote it, and the blob it wrote."""

    blob: bytes
    version: int
    windows: tuple[WindowSpec, ...]
    state: CampaignState


class StateCache:
    """The states of the campaigns this worker wrote last, least recently used first."""

    def __init__(self, campaigns: int) -> None:
        self._campaigns = campaigns
        self._states: OrderedDict[CampaignRef, _CachedState] = OrderedDict()
        self.hits = 0
        """Stored states taken from the cache instead of decoded (for metrics)."""
        self.misses = 0
        """Stored states that had to be decoded."""

    def written(
        self, ref: CampaignRef, windows: tuple[WindowSpec, ...]
    ) -> tuple[bytes, int] | None:
        """The blob and version this worker last wrote of a campaign (None if not cached)."""
        cached = self._states.get(ref)
        if cached is None or cached.windows != windows:
            return None
        return cached.blob, cached.version

    def decode(
        self, ref: CampaignRef, blob: bytes | None, windows: tuple[WindowSpec, ...]
    ) -> CampaignState:
        """The state of a stored blob, taken out of the cache if it is the blob written last.

        Else decoded; a fresh state if there is none, or if it is corrupt (logged).
        """
        cached = self._states.pop(ref, None)
        if (
            cached is not None
            and blob is not None
            and cached.blob == blob
            and cached.windows == windows
        ):
            self.hits += 1
            return cached.state
        if blob is None:
            return CampaignState.fresh(windows)
        self.misses += 1
        try:
            return decode_state(blob, windows)
        except StateDecodeError:
            log.exception(
                "corrupt campaign state, starting afresh",
                extra={"tenant_id": ref.tenant_id, "campaign_id": ref.campaign_id},
            )
            return CampaignState.fresh(windows)

    def remember(
        self,
        ref: CampaignRef,
        blob: bytes,
        version: int,
        windows: tuple[WindowSpec, ...],
        state: CampaignState,
    ) -> None:
        """Keep a state just written, forgetting the least recently written beyond the size."""
        if self._campaigns <= 0:
            return
        self._states[ref] = _CachedState(blob, version, windows, state)
        self._states.move_to_end(ref)
        while len(self._states) > self._campaigns:
            self._states.popitem(last=False)
