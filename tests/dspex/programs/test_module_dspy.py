"""Module save/load in DSPy's file shape, transactional load_state, deepcopy of uncopyable attributes."""

import json
import threading

import pytest

import dspex
from dspex.errors import ConfigError


class Two(dspex.Module):
    def __init__(self):
        self.a = dspex.ChainOfThought("question -> answer")
        self.b = dspex.ChainOfThought("question -> answer")

    def forward(self, question):
        return self.b(question=question)


def test_save_writes_dspy_shape_with_metadata_and_loads_back(tmp_path):
    source = Two()
    source.a.predict.demos = [{"question": "q", "answer": "a"}]
    source.save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert {"a.predict", "b.predict", "metadata"} <= set(doc)
    assert set(doc["metadata"]["dependency_versions"]) == {"python", "dspy", "cloudpickle"}
    target = Two().load(tmp_path / "p.json")
    assert target.a.predict.demos == [{"question": "q", "answer": "a"}]
    assert dspex.load(tmp_path / "p.json").a.predict.demos == [{"question": "q", "answer": "a"}]


def test_a_format_1_file_still_loads(tmp_path):
    source = Two()
    source.b.predict.demos = [{"question": "q", "answer": "b"}]
    doc = {"dspex_format": 1, "class": f"{Two.__module__}:Two", "config": None, "state": source.dump_state()}
    (tmp_path / "old.json").write_text(json.dumps(doc))
    assert Two().load(tmp_path / "old.json").b.predict.demos == [{"question": "q", "answer": "b"}]


def test_a_dspy_file_without_dspex_fields_loads_into_a_built_program(tmp_path):
    state = Two().dump_state()
    state["a.predict"]["demos"] = [{"question": "q", "answer": "x"}]
    (tmp_path / "dspy.json").write_text(json.dumps({**state, "metadata": {"dependency_versions": {}}}))
    assert Two().load(tmp_path / "dspy.json").a.predict.demos == [{"question": "q", "answer": "x"}]
    with pytest.raises(ConfigError):
        dspex.load(tmp_path / "dspy.json")


def test_load_state_is_all_or_nothing(tmp_path):
    source = Two()
    source.a.predict.demos = [{"question": "q", "answer": "a"}]
    state = source.dump_state()
    target = Two()
    with pytest.raises(KeyError):
        target.load_state({"a.predict": state["a.predict"]})
    state["b.predict"] = {"signature": 5}
    with pytest.raises(ConfigError):
        target.load_state(state)
    assert target.a.predict.demos == []


def test_pickles_need_allow_pickle(tmp_path):
    Two().save(tmp_path / "state.pkl")
    with pytest.raises(ConfigError):
        Two().load(tmp_path / "state.pkl")
    Two().load(tmp_path / "state.pkl", allow_pickle=True)
    Two().save(tmp_path / "whole", save_program=True)
    assert (tmp_path / "whole" / "program.pkl").exists()
    assert isinstance(dspex.load(tmp_path / "whole", allow_pickle=True), Two)


def test_deepcopy_shares_what_cannot_be_copied():
    class Locked(dspex.Module):
        def __init__(self):
            self.lock = threading.Lock()
            self.cot = dspex.ChainOfThought("q -> a")

    model = Locked()
    twin = model.deepcopy()
    assert twin.lock is model.lock and twin.cot is not model.cot and twin.cot.predict is not model.cot.predict


def test_a_lone_predictors_options_survive_save_and_load(tmp_path):
    path = tmp_path / "p.json"
    dspex.Predict("q -> a", temperature=0.7).save(path)
    into = dspex.Predict("q -> a")
    into.load(path)
    assert into.config == {"temperature": 0.7} and dspex.load(path).config == {"temperature": 0.7}
