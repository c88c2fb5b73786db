"""Example / Prediction values and data loading."""

from __future__ import annotations

import json
import pickle

import pytest

from dspex import Example, ExampleError, Prediction, Usage, examples_from, load_jsonl


def test_example_inputs_labels_and_mutation_as_dspy():
    ex = Example(question="q", answer="a").with_inputs("question")
    assert ex.inputs() == Example(question="q").with_inputs("question")
    assert ex.labels().to_dict() == {"answer": "a"} and ex.question == "q" and ex["answer"] == "a"
    changed = ex.copy(answer="b")
    assert changed.answer == "b" and ex.answer == "a" and changed.input_keys == ("question",)
    ex.answer = "b"  # mutable, as DSPy's
    ex["extra"] = 1
    del ex["extra"]
    assert ex.answer == "b" and "extra" not in ex and ex._input_keys == {"question"}
    with pytest.raises(AttributeError):
        _ = ex.extra
    with pytest.raises(ExampleError, match="not starting with"):
        ex["_private"] = 1
    assert repr(Example(a=1, dspy_uuid="u")) == "Example({'a': 1}) (input_keys=None)"
    with pytest.raises(ExampleError, match="with_inputs"):
        Example(question="q").labels()
    with pytest.raises(ExampleError, match="not in this example"):
        ex.with_inputs("nope")


def test_round_trips():
    ex = Example(question="q", n=3).with_inputs("question")
    assert Example.from_json(ex.to_json()) == ex and pickle.loads(pickle.dumps(ex)) == ex
    pred = Prediction(answer="x", usage=Usage(3, 4), cost=0.01, raw="raw")
    assert pickle.loads(pickle.dumps(pred)) == pred and pred.usage.total_tokens == 7
    assert (Usage(1, 2) + Usage(3, 4)) == Usage(4, 6)


def test_load_jsonl_reports_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"sentence": "good", "label": "positive"}) + "\n\n{bad json}\n")
    with pytest.raises(ExampleError, match=r"d.jsonl:3: not valid JSON"):
        load_jsonl(path, inputs=["sentence"])
    path.write_text(json.dumps({"sentence": "good"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ExampleError, match=r":2: missing input field\(s\) sentence"):
        load_jsonl(path, inputs=["sentence"])
    path.write_text(json.dumps({"sentence": "good", "label": "positive"}) + "\n")
    assert load_jsonl(path, inputs=["sentence"])[0].labels().to_dict() == {"label": "positive"}
    with pytest.raises(ExampleError, match="row 1"):
        examples_from([{"sentence": "a"}, ["x"]], inputs=["sentence"])


def test_json_lines_survive_str_splitlines():
    import json

    from dspex.jsonl import dumps_line

    record = {"text": "a\u2028b\x85c\u2029d\x0be", "n": 1}
    line = dumps_line(record)
    assert line.endswith("\n") and len(line.splitlines()) == 1
    assert json.loads(line) == record


def test_the_shipped_sentiment_data_is_one_record_a_line():
    import json
    from pathlib import Path

    import dspex

    text = (Path(dspex.__file__).parent / "data" / "sentiment" / "sentences.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 3000 and all({"text", "label"} <= set(r) for r in rows)


def test_a_prediction_with_a_score_is_a_number_as_dspy_metrics_use_it():
    scored = [Prediction(score=0.5, feedback="half"), Prediction(score=1.0)]
    assert sum(scored) == 1.5 and sum(scored) / len(scored) == 0.75  # sum() starts from 0 + Prediction
    assert scored[0] / 2 == 0.25 and 1 / scored[1] == 1.0 and scored[0] + scored[1] == 1.5
    assert scored[0] < scored[1] and scored[1] >= 1 and float(scored[0]) == 0.5 and max(scored) is scored[1]
    with pytest.raises(ExampleError, match="no 'score' field"):
        float(Prediction(answer="x"))
    with pytest.raises(TypeError, match="unsupported operand"):
        scored[0] + "1"


def test_to_dict_turns_nested_examples_into_dicts():
    nested = Example(q=[Example(q="a"), Example(q="b")], a="x").with_inputs("q")
    assert nested.toDict() == {"q": [{"q": "a"}, {"q": "b"}], "a": "x"}
    assert json.loads(json.dumps(nested.toDict()))["q"][1] == {"q": "b"}
