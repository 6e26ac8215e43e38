"""The collector policy of the daemons: bursts stay young until they are handled, then frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from wren.gc_tuning import FREEZE_AT, freeze_burst, tune_for_bursts


@pytest.fixture
def daemon_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    tune_for_bursts()
    gc.collect()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@pytest.mark.usefixtures("daemon_gc")
def test_a_few_new_objects_are_left_to_the_collector() -> None:
    kept = [[i] for i in range(FREEZE_AT // 10)]
    frozen = gc.get_freeze_count()
    assert not freeze_burst()
    assert gc.get_freeze_count() <= frozen
    assert kept


@pytest.mark.usefixtures("daemon_gc")
def test_what_a_burst_left_is_frozen_and_nothing_young_is_left_to_scan() -> None:
    kept = [[i] for i in range(FREEZE_AT * 2)]
    frozen = gc.get_freeze_count()
    assert freeze_burst()
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert gc.get_count()[0] < FREEZE_AT
