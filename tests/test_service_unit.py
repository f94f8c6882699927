"""How a service process is set up to run (estrom.service)."""

from __future__ import annotations

import gc

from estrom.service import GC_YOUNG, tune_collector


def test_the_collector_leaves_start_up_alone_and_collects_young_objects_less_often():
    threshold = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_freeze_count() > 0  # what exists now is never scanned again
        assert gc.get_threshold() == (GC_YOUNG, threshold[1], threshold[2])
        # Cyclic garbage made later is still collected.
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
