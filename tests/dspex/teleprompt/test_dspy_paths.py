"""DSPy's teleprompt module paths and arguments: KNNFewShot(vectorizer=), restrict=, demos read as attributes."""

import pytest

import dspex
from dspex.teleprompt import bootstrap, knn_fewshot, teleprompt, vanilla
from dspex.teleprompt.fewshot import Demo
from dspex.teleprompt.random_search import dspy_seed
from dspex.utils.dummies import DummyVectorizer


def test_dspy_module_paths_name_the_same_classes():
    assert bootstrap.BootstrapFewShot is dspex.BootstrapFewShot
    assert knn_fewshot.KNNFewShot is dspex.teleprompt.KNNFewShot
    assert vanilla.LabeledFewShot is dspex.teleprompt.LabeledFewShot
    assert teleprompt.Teleprompter is dspex.teleprompt.Teleprompter


def test_knn_few_shot_takes_a_vectorizer_and_keeps_dspy_knn_settings():
    train = [dspex.Example(question=q, answer=a).with_inputs("question")
             for q, a in [("capital of France?", "Paris"), ("largest ocean?", "Pacific"), ("2+2?", "4")]]
    knn = knn_fewshot.KNNFewShot(k=2, trainset=train, vectorizer=dspex.Embedder(DummyVectorizer()))
    assert knn.KNN.k == 2 and len(knn.KNN.trainset) == 3
    assert len(knn.KNN(question="capital of France?")) == 2


def test_a_demo_reads_as_a_dict_and_by_attribute():
    demo = Demo(question="q", answer="a")
    assert demo == {"question": "q", "answer": "a"} and demo.answer == "a"
    with pytest.raises(AttributeError):
        demo.missing


def test_random_search_seeds_follow_dspy():
    seeds = [dspy_seed(item) for item in dspex.BootstrapFewShotWithRandomSearch(
        lambda e, p, t=None: True, num_candidate_programs=2).plan()]
    assert seeds == [-3, -2, -1, 0, 1]


def test_bootstrap_takes_dspy_arguments():
    boot = dspex.BootstrapFewShot(metric=None, teacher_settings={"temperature": 0.0}, max_errors=2)
    assert boot.metric is None and boot.teacher_settings == {"temperature": 0.0} and boot.max_errors == 2
    with pytest.raises(dspex.errors.ConfigError):
        dspex.BootstrapFewShot(max_errors=0)
