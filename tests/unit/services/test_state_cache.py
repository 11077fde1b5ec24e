"""The cache of states this worker wrote: used only for the very blob it wrote, bounded."""

from __future__ import annotations

from processor.domain.campaign_state import CampaignState
from processor.domain.codec import encode_state
from processor.ports.detection_store import CampaignRef
from processor.services.state_cache import StateCache
from tests.unit.services.resume_world import BOOK

REF = CampaignRef("t1", "c1")


def _state(duplicates: int) -> CampaignState:
    state = CampaignState.fresh(BOOK.windows)
    state.duplicates = duplicates
    return state


def test_the_blob_written_last_gives_back_the_very_state_once() -> None:
    """Taken out while folded: a second decode of the same blob decodes it afresh."""
    cache, state = StateCache(10), _state(7)
    blob = encode_state(state)
    cache.remember(REF, blob, 4, BOOK.windows, state)

    assert cache.written(REF, BOOK.windows) == (blob, 4)
    assert cache.decode(REF, blob, BOOK.windows) is state
    again = cache.decode(REF, blob, BOOK.windows)
    assert again is not state
    assert again.duplicates == 7


def test_another_blob_or_windows_is_decoded_from_the_store() -> None:
    """A blob another worker wrote, or a policy with other windows, never uses the cache."""
    cache, state = StateCache(10), _state(1)
    cache.remember(REF, encode_state(state), 1, BOOK.windows, state)
    assert cache.written(REF, BOOK.windows[:1]) is None

    stored = encode_state(_state(2))
    decoded = cache.decode(REF, stored, BOOK.windows)

    assert decoded is not state
    assert decoded.duplicates == 2


def test_no_blob_is_a_fresh_state_and_a_corrupt_one_starts_afresh() -> None:
    """A campaign never written, and one whose blob cannot be read, start from nothing."""
    cache = StateCache(10)
    assert cache.decode(REF, None, BOOK.windows).duplicates == 0
    assert cache.decode(REF, b"\x00not a state", BOOK.windows).duplicates == 0


def test_the_least_recently_written_are_forgotten_beyond_the_size() -> None:
    """At most `campaigns` states are kept; none with a size of zero."""
    cache = StateCache(2)
    refs = [CampaignRef("t1", f"c{n}") for n in range(3)]
    for n, ref in enumerate(refs):
        state = _state(n)
        cache.remember(ref, encode_state(state), 1, BOOK.windows, state)
    assert [cache.written(ref, BOOK.windows) is not None for ref in refs] == [False, True, True]

    off = StateCache(0)
    off.remember(REF, b"x", 1, BOOK.windows, _state(0))
    assert off.written(REF, BOOK.windows) is None
