"""Unit tests of the worker's garbage-collector tuning (`runtime.app.tune_garbage_collection`)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from processor.runtime.app import WORKER_GC_YOUNG_THRESHOLD, tune_garbage_collection

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The thresholds and the frozen heap as they were (the test process is shared)."""
    saved = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


@pytest.mark.usefixtures("restored_gc")
def test_the_start_up_heap_is_frozen_and_young_collections_are_rarer() -> None:
    """What start-up left is out of every generation; only the young threshold rises."""
    gc.set_threshold(700, 10, 10)
    start_up: list[object] = [[], {}]
    tune_garbage_collection()
    assert gc.get_freeze_count() > 0
    assert not any(o is start_up for o in gc.get_objects())  # frozen: in no generation
    assert gc.get_threshold() == (WORKER_GC_YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("restored_gc")
def test_a_higher_young_threshold_set_by_the_process_is_kept() -> None:
    """The tuning never lowers a threshold, nor touches the older generations'."""
    gc.set_threshold(WORKER_GC_YOUNG_THRESHOLD * 5, 20, 30)
    tune_garbage_collection()
    assert gc.get_threshold() == (WORKER_GC_YOUNG_THRESHOLD * 5, 20, 30)
