"""Random crash / exit / start / terminate sequences against a pure reference model of OTP's rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from supervision import ActorRuntime, CallFailed, ChildSpec, SupervisionError, SupervisorSpec
from tests.supervision.actors import Counter

RESTARTS = ["permanent", "transient", "temporary"]


@dataclass
class ModelChild:
    id: str
    restart: str
    running: bool = True
    incarnation: int = 0


class Model:
    """OTP's supervisor rules, as plain Python over a list of children in start order."""

    def __init__(self, strategy: str, intensity: int, children: list[ModelChild]) -> None:
        self.strategy, self.intensity, self.children = strategy, intensity, children
        self.restarts = 0
        self.alive = True

    def get(self, cid: str) -> ModelChild:
        return next(c for c in self.children if c.id == cid)

    def exit(self, cid: str, normal: bool) -> None:
        child = self.get(cid)
        child.running = False
        restart = child.restart == "permanent" or (child.restart == "transient" and not normal)
        if not restart:
            if child.restart == "temporary":
                self.children.remove(child)
            return
        self.restarts += 1
        if self.restarts > self.intensity:
            self.alive = False
            self.children = []
            return
        if self.strategy == "one_for_one":
            affected = [child]
        else:
            start = 0 if self.strategy == "one_for_all" else self.children.index(child)
            affected = self.children[start:]
        for other in affected:
            if other is not child and other.restart == "temporary":
                self.children.remove(other)
                continue
            other.running = True
            other.incarnation += 1


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rt = ActorRuntime(base="local", name="sm").start()
        self.counter = 0

    def teardown(self) -> None:
        self.rt.close()

    @initialize(strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
                intensity=st.integers(0, 6), restarts=st.lists(st.sampled_from(RESTARTS), min_size=1, max_size=4))
    def start(self, strategy, intensity, restarts):
        children = [ModelChild(f"c{i}", r) for i, r in enumerate(restarts)]
        self.counter = len(children)
        self.model = Model(strategy, intensity, children)
        specs = [ChildSpec(id=c.id, start=Counter, restart=c.restart) for c in children]
        self.sup = self.rt.start_supervisor(SupervisorSpec(strategy=strategy, intensity=intensity, period=3600),
                                            specs, name="top")
        self.refs = {i.id: i.ref for i in self.sup.which_children()}
        self.seen = {c.id: c.incarnation for c in children}

    def running(self):
        return [c.id for c in self.model.children if c.running]

    def stopped(self):
        return [c.id for c in self.model.children if not c.running]

    @precondition(lambda self: self.model.alive and self.running())
    @rule(data=st.data())
    def crash(self, data):
        cid = data.draw(st.sampled_from(self.running()))
        with pytest.raises(CallFailed):
            self.refs[cid].call("crash")
        self.model.exit(cid, normal=False)

    @precondition(lambda self: self.model.alive and self.running())
    @rule(data=st.data())
    def normal_exit(self, data):
        cid = data.draw(st.sampled_from(self.running()))
        assert self.refs[cid].call("stop") == "stopping"
        self.model.exit(cid, normal=True)

    @precondition(lambda self: self.model.alive and self.running())
    @rule(data=st.data())
    def terminate(self, data):
        cid = data.draw(st.sampled_from(self.running()))
        self.sup.terminate_child(cid)
        child = self.model.get(cid)
        child.running = False
        if child.restart == "temporary":
            self.model.children.remove(child)

    @precondition(lambda self: self.model.alive and self.stopped())
    @rule(data=st.data())
    def restart_child(self, data):
        cid = data.draw(st.sampled_from(self.stopped()))
        self.sup.restart_child(cid)
        child = self.model.get(cid)
        child.running = True
        child.incarnation += 1

    @precondition(lambda self: self.model.alive and self.stopped())
    @rule(data=st.data())
    def delete_child(self, data):
        cid = data.draw(st.sampled_from(self.stopped()))
        self.sup.delete_child(cid)
        self.model.children.remove(self.model.get(cid))

    @precondition(lambda self: self.model.alive and len(self.model.children) < 6)
    @rule(restart=st.sampled_from(RESTARTS))
    def start_child(self, restart):
        cid = f"c{self.counter}"
        self.counter += 1
        info = self.sup.start_child(ChildSpec(id=cid, start=Counter, restart=restart))
        self.model.children.append(ModelChild(cid, restart))
        self.refs[cid], self.seen[cid] = info.ref, 0

    @rule()
    def count(self):
        if self.model.alive:
            counts = self.sup.count_children()
            assert (counts.specs, counts.active) == (len(self.model.children), len(self.running()))

    @invariant()
    def matches_model(self):
        if not hasattr(self, "model"):
            return
        if not self.model.alive:
            with pytest.raises(SupervisionError):
                self.sup.which_children()
            assert [f.name for f in self.rt.failures] == ["top"]
            return
        infos = self.sup.which_children()
        assert [(i.id, i.ref is not None) for i in infos] == [(c.id, c.running) for c in self.model.children]
        for info in infos:
            child = self.model.get(info.id)
            if info.ref is None:
                continue
            changed = info.ref != self.refs.get(info.id)
            assert changed == (child.incarnation != self.seen.get(info.id)), (info.id, child)
            self.refs[info.id], self.seen[info.id] = info.ref, child.incarnation
            assert info.ref.call("get") == 0 or not changed


SupervisorMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=15, deadline=None)
test_supervisor_matches_otp_model = SupervisorMachine.TestCase
