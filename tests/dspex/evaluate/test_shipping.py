"""What a run on hosts ships by value: the user's own modules, registered with cloudpickle while any run
pickles (a compile's evaluations pickle in several threads at once)."""

from __future__ import annotations

import sys
import threading
import types

import cloudpickle

from dspex.evaluate.feed import shipped_by_value


def test_a_module_stays_registered_while_any_run_needs_it():
    module = types.ModuleType("user_metrics_for_shipping")
    sys.modules[module.__name__] = module
    try:
        inner_done, outer_may_finish = threading.Event(), threading.Event()
        seen: list[bool] = []

        def other_run() -> None:
            with shipped_by_value([module]):
                inner_done.wait(10)
                seen.append(module.__name__ in cloudpickle.list_registry_pickle_by_value())
            outer_may_finish.set()

        thread = threading.Thread(target=other_run)
        thread.start()
        with shipped_by_value([module]):
            pass  # this run ends first: the other still pickles
        inner_done.set()
        outer_may_finish.wait(10)
        thread.join(10)
        assert seen == [True]
        assert module.__name__ not in cloudpickle.list_registry_pickle_by_value()  # the last one out unregisters
    finally:
        del sys.modules[module.__name__]


def test_a_module_the_user_registered_is_left_registered():
    module = types.ModuleType("user_registered_module")
    sys.modules[module.__name__] = module
    cloudpickle.register_pickle_by_value(module)
    try:
        with shipped_by_value([module]):
            pass
        assert module.__name__ in cloudpickle.list_registry_pickle_by_value()
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        del sys.modules[module.__name__]
