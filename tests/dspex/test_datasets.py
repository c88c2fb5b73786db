"""dspex.datasets: the countries retrieval task that ships with dspex (the RAG example's data)."""

from __future__ import annotations

import hashlib
import json

import pytest

import dspex
from dspex.datasets import COUNTRIES, countries_qa


def test_the_files_are_the_ones_the_readme_names():
    readme = (COUNTRIES / "README.md").read_text()
    for name in ("corpus.jsonl", "questions.jsonl"):
        digest = hashlib.sha256((COUNTRIES / name).read_bytes()).hexdigest()
        assert digest in readme, name  # rebuilt by examples/build_countries_corpus.py: update the README too
    assert "LGPL" in readme and (COUNTRIES / "LICENSE-LGPL-2.1.txt").exists()


def test_each_answer_stands_in_its_source_passage_and_the_split_is_fixed_and_disjoint():
    task = countries_qa(30, 20, 100)
    assert len(task.corpus) == 280 and (len(task.train), len(task.val), len(task.dev)) == (30, 20, 100)
    ids = {json.loads(line)["id"]: json.loads(line)["text"]
           for line in (COUNTRIES / "corpus.jsonl").read_text(encoding="utf-8").splitlines()}
    for ex in task.train + task.val + task.dev:
        assert ex.answer in ids[ex.source] and set(ex.inputs()) == {"question"}
    questions = [[e.question for e in part] for part in (task.train, task.val, task.dev)]
    assert len(set(sum(questions, []))) == 150  # disjoint
    again = countries_qa(30, 20, 100)
    assert [e.question for e in again.dev] == questions[2]
    bigger = countries_qa(30, 20, 200)  # a larger dev keeps the smaller one and never takes train or val
    assert [e.question for e in bigger.dev[:100]] == questions[2]
    assert not {e.question for e in bigger.dev} & set(questions[0] + questions[1])


def test_bad_sizes_are_typed_errors():
    with pytest.raises(dspex.ConfigError, match="671 questions"):
        countries_qa(400, 200, 100)
    with pytest.raises(dspex.ConfigError, match="dev_size must be an int"):
        countries_qa(10, 10, -1)
