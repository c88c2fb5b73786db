"""KNNFewShot and Embedder against the simulator's /v1/embeddings (hashed bag of words)."""

from __future__ import annotations

import re

import pytest

import dspex
from dspex.testing import ProviderServer

from ..scripted import chat

KEY = "sk-test-knn-123456"
TOPICS = {"cat": "whiskers purr meow kitten", "dog": "bark leash puppy fetch", "bird": "wings feathers nest chirp"}


def copies_first_demo(req) -> str:
    """The simulated model answers with the first demo's answer: right only if the demos are on topic."""
    demos = [m["content"] for m in req.messages if m["role"] == "assistant"]
    found = re.search(r"\[\[ ## answer ## \]\]\n([^\n]*)", demos[0]) if demos else None
    return chat(answer=found.group(1) if found else "none")


def topic_examples(prefix: str, n: int) -> list[dspex.Example]:
    out = []
    for i in range(n):
        topic = list(TOPICS)[i % 3]
        words = TOPICS[topic].split()
        text = f"{prefix}{i} {words[i % 4]} {words[(i + 1) % 4]}"
        out.append(dspex.Example(question=text, answer=topic).with_inputs("question"))
    return out


def exact(example, pred, trace=None):
    return pred.answer == example.answer


@pytest.fixture
def world(tmp_path):
    with ProviderServer(answer=copies_first_demo, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/knn", api_key=KEY, base_url=server.base_url())
        embedder = dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key=KEY)
        yield server, lm, embedder


def test_nearest_examples_become_the_demos_of_each_call(world):
    server, lm, embedder = world
    train, dev = topic_examples("t", 30), topic_examples("d", 12)
    student = dspex.Predict("question -> answer", lm=lm)
    knn = dspex.KNNFewShot(k=1, trainset=train, embedder=embedder).compile(student)
    labeled = dspex.LabeledFewShot(k=1, seed=0).compile(student, trainset=train)
    score = lambda p: dspex.Evaluate(dev, exact, progress=False).run(p).mean  # noqa: E731
    assert score(knn) >= 0.9 and score(labeled) <= 0.5  # on-topic demos (hashed words can collide)
    assert student.demos == [] and knn.compile_report.optimizer == "KNNFewShot"


def test_embeddings_are_cached_and_typed_errors(world):
    server, _, embedder = world
    first = embedder(["a cat purrs", "a dog barks"])
    asked = len(server.log)
    assert embedder(["a dog barks", "a cat purrs"]) == first[::-1] and len(server.log) == asked
    assert len(first[0]) == 64
    with pytest.raises(dspex.AuthError):
        dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key="sk-wrong-key-0000",
                       cache=False)(["x"])
    with pytest.raises(dspex.ConfigError):
        dspex.Embedder("cohere/x")
    with pytest.raises(dspex.ConfigError, match="vectorizer"):
        dspex.KNNFewShot(k=2, trainset=topic_examples("t", 3))


@pytest.mark.slow
def test_the_local_embedder_finds_sentiment_neighbours(tmp_path):
    pytest.importorskip("sentence_transformers", reason="./run installs sentence-transformers")
    from dspex.demo import sentiment_split

    train, dev = sentiment_split(60, train_size=200)
    train = [dspex.Example(question=e.review, answer=e.sentiment).with_inputs("question") for e in train]
    dev = [dspex.Example(question=e.review, answer=e.sentiment).with_inputs("question") for e in dev]
    with ProviderServer(answer=copies_first_demo, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        embedder = dspex.Embedder("local/all-minilm-l6-v2")
        a, b, c = embedder(["a cat purrs", "the kitten meows", "stock markets fell"])
        assert len(a) == 384 and sum(x * y for x, y in zip(a, b)) > sum(x * y for x, y in zip(a, c)) + 0.2
        lm = dspex.LM("openai/knn", api_key=KEY, base_url=server.base_url())
        knn = dspex.KNNFewShot(k=1, trainset=train, embedder=embedder).compile(dspex.Predict("question -> answer", lm=lm))
        score = dspex.Evaluate(dev, exact, progress=False).run(knn).mean  # the nearest review's label
    assert score >= 0.65, score
