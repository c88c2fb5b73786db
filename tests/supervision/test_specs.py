"""Specs validate when constructed: SpecError naming the field, never a raw exception."""

from __future__ import annotations

import pytest

from supervision import ActorRuntime, ChildSpec, GenServer, SpecError, SupervisorSpec
from supervision.specs import Restart, Strategy
from tests.supervision.actors import Counter


@pytest.mark.parametrize("kwargs, field", [
    ({"strategy": "one_for_some"}, "strategy"),
    ({"intensity": -1}, "intensity"),
    ({"intensity": 1.5}, "intensity"),
    ({"period": -2}, "period"),
    ({"period": 0}, "period"),
    ({"auto_shutdown": "sometimes"}, "auto_shutdown"),
    ({"min_backoff": 1.0}, "min_backoff"),
    ({"min_backoff": 2.0, "max_backoff": 1.0}, "max_backoff"),
])
def test_bad_supervisor_spec(kwargs, field):
    with pytest.raises(SpecError) as info:
        SupervisorSpec(**kwargs)
    assert field in str(info.value)


def test_supervisor_spec_defaults_are_otps():
    spec = SupervisorSpec()
    assert (spec.strategy, spec.intensity, spec.period) == (Strategy.ONE_FOR_ONE, 1, 5.0)


class NotAGenServer:
    pass


@pytest.mark.parametrize("kwargs, needle", [
    ({"id": "", "start": Counter}, "id"),
    ({"id": "c", "start": NotAGenServer}, "not a GenServer"),
    ({"id": "c", "start": "no_colon_path"}, "module:Class"),
    ({"id": "c", "start": Counter, "restart": "sometimes"}, "restart"),
    ({"id": "c", "start": Counter, "shutdown": -1}, "shutdown"),
    ({"id": "c", "start": Counter, "shutdown": "later"}, "shutdown"),
    ({"id": "c", "start": Counter, "significant": True}, "permanent child cannot be significant"),
    ({"id": "c", "start": Counter, "children": [ChildSpec(id="x", start=Counter)]}, "only a nested supervisor"),
    ({"id": "c", "start": SupervisorSpec(), "children": [ChildSpec(id="x", start=Counter)] * 2}, "duplicate"),
    ({"id": "c", "start": SupervisorSpec(strategy="simple_one_for_one")}, "exactly one template"),
    ({"id": "c", "start": Counter, "kwargs": [1]}, "mapping"),
])
def test_bad_child_spec(kwargs, needle):
    with pytest.raises(SpecError) as info:
        ChildSpec(**kwargs)
    assert needle in str(info.value)


def test_class_defined_in_function_is_refused():
    class Local(GenServer):
        pass

    with pytest.raises(SpecError, match="inside a function"):
        ChildSpec(id="c", start=Local)


def test_child_spec_defaults():
    worker = ChildSpec(id="w", start=Counter)
    sup = ChildSpec(id="s", start=SupervisorSpec(), children=[worker])
    assert (worker.restart, worker.shutdown, worker.kind.value) == (Restart.PERMANENT, 5.0, "worker")
    assert (sup.shutdown, sup.kind.value) == ("infinity", "supervisor")


def test_significant_needs_auto_shutdown():
    with pytest.raises(SpecError, match="auto_shutdown"):
        ChildSpec(id="s", start=SupervisorSpec(),
                  children=[ChildSpec(id="x", start=Counter, restart="transient", significant=True)])


def test_runtime_checks_before_starting(base):
    main_cls = type("MainActor", (GenServer,), {"__module__": "__main__"})
    with ActorRuntime(base=base, name="v") as rt:
        with pytest.raises(SpecError, match="used twice"):
            rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="a", start=Counter, name="n"),
                                                   ChildSpec(id="b", start=Counter, name="n")])
        with pytest.raises(SpecError, match="duplicate child id"):
            rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="a", start=Counter)] * 2)
        with pytest.raises(SpecError):
            rt.start_supervisor("one_for_one", [])
        if base != "local":
            with pytest.raises(SpecError, match="__main__"):
                rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="m", start=main_cls)])
        assert rt.whereis("top") is None


def test_unknown_base_and_closed_runtime():
    from supervision import Shutdown

    with pytest.raises(SpecError, match="base"):
        ActorRuntime(base="cluster")
    with ActorRuntime(base="local") as rt:
        sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)])
    with pytest.raises(Shutdown):
        sup.which_children()


def test_errors_pickle_round_trip():
    import pickle

    from supervision import CallFailed, FailedToStartChild

    err = pickle.loads(pickle.dumps(FailedToStartChild("c", "boom")))
    assert (err.id, err.reason) == ("c", "boom")
    err = pickle.loads(pickle.dumps(CallFailed("t", "ValueError", "x", "tb")))
    assert (err.remote_type, err.remote_message) == ("ValueError", "x")
