"""dspex.retrievers.Embeddings / EmbeddingsWithScores: real embedders (DummyVectorizer, a dspex.Embedder over
HTTP to the provider simulator), results checked against a brute-force reference, saving without pickles."""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspex
from dspex.errors import FaissNotInstalled, SavedIndexError, SavedIndexMissing
from dspex.retrievers import Embeddings, EmbeddingsWithScores
from dspex.testing import ProviderServer
from dspex.utils import BaseCallback
from dspex.utils.dummies import DummyVectorizer

HAS_FAISS = importlib.util.find_spec("faiss") is not None
KEY = "sk-test-retrievers-123456"
PETS = ["The cat sat on the mat.", "The dog barked at the mailman.", "Birds fly in the sky."]
TOPICS = {"cat": "whiskers purr meow kitten", "dog": "bark leash puppy fetch", "bird": "wings feathers nest chirp"}


def one_hot(texts):
    """DSPy's test embedder: a numpy array, one axis per animal."""
    return np.stack([np.array([1, 0, 0] if "cat" in t else [0, 1, 0] if "dog" in t else [0, 0, 1], dtype=np.float32)
                     for t in texts])


class Counting:
    """A real embedder (DummyVectorizer) that counts its calls and the texts it was given."""

    def __init__(self) -> None:
        self.inner, self.calls, self.texts = DummyVectorizer(max_length=64), 0, 0

    def __call__(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return self.inner(texts)


def reference(corpus, query, vectorizer):
    """Brute force in float64, written independently of the retriever: cosine similarity of every passage."""
    vecs = np.asarray(vectorizer(corpus), dtype=np.float64)
    q = np.asarray(vectorizer([query]), dtype=np.float64)[0]
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-10)
    q /= max(np.linalg.norm(q), 1e-10)
    return vecs @ q


def test_dspy_shape_passages_and_indices_nearest_first():
    retriever = Embeddings(corpus=PETS, embedder=one_hot, k=1)
    result = retriever("I saw a dog running.")
    assert result.passages == ["The dog barked at the mailman."] and result.indices == [1]
    assert isinstance(result, dspex.Prediction) and not hasattr(result, "scores")
    scored = EmbeddingsWithScores(corpus=PETS, embedder=one_hot, k=2)("A dog is barking.")
    assert scored.passages == ["The dog barked at the mailman.", "The cat sat on the mat."]
    assert scored.indices == [1, 0] and scored.scores == pytest.approx([1.0, 0.0])
    assert retriever.index is None and retriever.corpus_embeddings.shape == (3, 3)


words = st.sampled_from("cat dog bird fish tree house river stone cloud apple".split())
texts = st.lists(words, min_size=1, max_size=6).map(" ".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=st.lists(texts, min_size=1, max_size=25), query=texts, k=st.integers(1, 30))
def test_nearest_neighbours_match_a_brute_force_reference(corpus, query, k):
    vectorizer = DummyVectorizer(max_length=32)
    found = EmbeddingsWithScores(corpus, vectorizer, k=k)(query)
    expected = reference(corpus, query, vectorizer)
    assert len(found.indices) == min(k, len(corpus)) == len(set(found.indices))
    assert found.scores == pytest.approx(sorted(expected, reverse=True)[:len(found.indices)], abs=1e-5)
    assert [expected[i] for i in found.indices] == pytest.approx(found.scores, abs=1e-5)
    assert found.passages == [corpus[i] for i in found.indices]
    assert found.scores == sorted(found.scores, reverse=True)


def test_k_is_respected_overridden_per_call_and_checked():
    corpus = [f"passage {i} about {w}" for i, w in enumerate("cat dog bird fish tree house".split())]
    retriever = Embeddings(corpus, DummyVectorizer(), k=2)
    assert len(retriever("cat").passages) == 2
    assert len(retriever("cat", k=4).indices) == 4 and len(retriever("cat", k=100).indices) == len(corpus)
    retriever.k = 3
    assert len(retriever.forward("fish").passages) == 3
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(dspex.ConfigError, match="k must be an int"):
            Embeddings(corpus, DummyVectorizer(), k=bad)
    with pytest.raises(dspex.ConfigError, match="k must be an int"):
        retriever("cat", k=0)


def test_the_corpus_is_embedded_once_and_each_query_is_one_call():
    embedder = Counting()
    corpus = [f"text number {i}" for i in range(2500)]
    retriever = Embeddings(corpus, embedder, k=3)
    assert (embedder.calls, embedder.texts) == (3, 2500)  # in batches of EMBED_BATCH (1024)
    retriever("text number 7")
    retriever("text number 8")
    assert (embedder.calls, embedder.texts) == (5, 2502)
    batched = retriever.batch(["text number 1", "text number 2000"])
    assert embedder.calls == 6 and [p.indices[0] for p in batched] == [1, 2000]


@pytest.fixture
def simulator(tmp_path):
    with ProviderServer(api_key=KEY) as server, dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        yield server, dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key=KEY, batch_size=16)


def test_a_dspex_embedder_over_http_finds_the_topic(simulator):
    server, embedder = simulator
    corpus = [f"note {i}: {' '.join(TOPICS[t].split()[i % 4:] + TOPICS[t].split()[:i % 4])}"
              for i, t in enumerate(list(TOPICS) * 12)]
    retriever = EmbeddingsWithScores(corpus, embedder, k=3)
    assert len(server.log) == 3  # 36 passages, 16 per request of the Embedder
    found = retriever("a kitten that will purr")
    assert all("purr" in p for p in found.passages) and len(server.log) == 4
    assert retriever("a kitten that will purr").indices == found.indices and len(server.log) == 4  # cached vector
    assert retriever.corpus_embeddings.shape == (36, 64)


def test_save_and_load_give_identical_results_and_hold_no_pickle(tmp_path):
    corpus = [f"{w} {v}" for w in "cat dog bird fish".split() for v in "runs sleeps eats sings".split()]
    vectorizer = DummyVectorizer()
    original = EmbeddingsWithScores(corpus, vectorizer, k=4, normalize=False, brute_force_threshold=1000)
    original.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["config.json", "corpus_embeddings.npy"]
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["corpus"] == corpus and (config["k"], config["normalize"], config["has_faiss_index"]) == (4, False,
                                                                                                           False)
    assert config["brute_force_threshold"] == 1000
    assert np.load(tmp_path / "saved" / "corpus_embeddings.npy", allow_pickle=False).dtype == np.float32
    loaded = EmbeddingsWithScores.from_saved(tmp_path / "saved", vectorizer)
    into = Embeddings(["placeholder"], vectorizer, k=1).load(str(tmp_path / "saved"), vectorizer)
    for query in ("cat sleeps", "a bird sings", "fish"):
        assert loaded(query) == original(query)
        assert (into(query).passages, into(query).indices) == (original(query).passages, original(query).indices)
    assert (loaded.k, loaded.normalize, loaded.brute_force_threshold, loaded.index) == (4, False, 1000, None)
    assert np.array_equal(loaded.corpus_embeddings, original.corpus_embeddings)


@pytest.fixture
def saved_dir(tmp_path):
    Embeddings(PETS, one_hot, k=2).save(tmp_path / "idx")
    return tmp_path / "idx"


def test_a_missing_directory_or_file_is_a_typed_error_that_is_also_file_not_found(saved_dir, tmp_path):
    with pytest.raises(SavedIndexMissing, match="does not exist") as err:
        Embeddings.from_saved(tmp_path / "nowhere", one_hot)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, dspex.ConfigError)
    (saved_dir / "corpus_embeddings.npy").unlink()
    with pytest.raises(SavedIndexMissing, match="corpus_embeddings.npy is missing"):
        Embeddings.from_saved(saved_dir, one_hot)
    (saved_dir / "config.json").unlink()
    with pytest.raises(SavedIndexMissing, match="config.json is missing"):
        Embeddings.from_saved(saved_dir, one_hot)


CONFIG, VECTORS = "config.json", "corpus_embeddings.npy"


@pytest.mark.parametrize("tamper, message, file", [
    (lambda c: "{not json", "not readable JSON", CONFIG),
    (lambda c: json.dumps([1, 2]), "must hold a JSON object", CONFIG),
    (lambda c: json.dumps({k: v for k, v in c.items() if k != "corpus"}), "lacks corpus", CONFIG),
    (lambda c: json.dumps({**c, "k": "five"}), "k must be an int >= 1", CONFIG),
    (lambda c: json.dumps({**c, "corpus": [1, 2, 3]}), "corpus must be a non-empty list of strings", CONFIG),
    (lambda c: json.dumps({**c, "dspex_format": 99}), "upgrade dspex", CONFIG),
    (lambda c: json.dumps({**c, "corpus": c["corpus"][:2]}), r"shape \(3, 3\), but config.json lists 2", VECTORS),
])
def test_a_tampered_config_says_what_is_wrong(saved_dir, tamper, message, file):
    config = json.loads((saved_dir / "config.json").read_text())
    (saved_dir / "config.json").write_text(tamper(config))
    with pytest.raises(SavedIndexError, match=message) as err:
        Embeddings.from_saved(saved_dir, one_hot)
    assert err.value.path.endswith(file) and file in str(err.value)


class Payload:
    """What a malicious .npy could carry: unpickling it would create a file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_tampered_vectors_are_refused_without_running_code(saved_dir, tmp_path):
    marker = tmp_path / "pwned"
    np.save(saved_dir / "corpus_embeddings.npy", np.array([Payload(marker)] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(SavedIndexError, match="not a numeric .npy array"):
        Embeddings.from_saved(saved_dir, one_hot)
    assert not marker.exists()
    (saved_dir / "corpus_embeddings.npy").write_bytes(pickle.dumps(np.zeros((3, 3))))
    with pytest.raises(SavedIndexError, match="not a numeric .npy array"):
        Embeddings.from_saved(saved_dir, one_hot)
    np.save(saved_dir / "corpus_embeddings.npy", np.array([["a", "b", "c"]] * 3))
    with pytest.raises(SavedIndexError, match="numeric array"):
        Embeddings.from_saved(saved_dir, one_hot)
    np.save(saved_dir / "corpus_embeddings.npy", np.full((3, 3), np.nan, dtype=np.float32))
    with pytest.raises(SavedIndexError, match="NaN"):
        Embeddings.from_saved(saved_dir, one_hot)


@pytest.mark.skipif(HAS_FAISS, reason="faiss is installed here: the FAISS path is tested below")
def test_at_the_threshold_without_faiss_a_typed_error_says_what_to_do_before_any_embedding(saved_dir):
    embedder = Counting()
    with pytest.raises(FaissNotInstalled, match=r"dspex\[faiss\].*brute_force_threshold") as err:
        Embeddings([f"t{i}" for i in range(50)], embedder, brute_force_threshold=50)
    assert isinstance(err.value, ImportError) and isinstance(err.value, dspex.ConfigError)
    assert embedder.calls == 0
    assert len(Embeddings([f"t{i}" for i in range(50)], embedder, brute_force_threshold=51).corpus) == 50
    config = json.loads((saved_dir / "config.json").read_text())
    (saved_dir / "config.json").write_text(json.dumps({**config, "has_faiss_index": True}))
    with pytest.raises(FaissNotInstalled):
        Embeddings.from_saved(saved_dir, one_hot)


@pytest.mark.skipif(not HAS_FAISS, reason="needs faiss: pip install 'dspex[faiss]'")
def test_the_faiss_index_agrees_with_exact_search_and_round_trips(tmp_path):
    corpus = [f"{a} {b} {i}" for i, (a, b) in enumerate(zip(["cat", "dog", "bird", "fish"] * 200,
                                                           ["runs", "eats", "sings", "naps", "hides"] * 160))]
    vectorizer = DummyVectorizer()
    approximate = EmbeddingsWithScores(corpus, vectorizer, k=5, brute_force_threshold=500)
    exact = EmbeddingsWithScores(corpus, vectorizer, k=5)
    assert approximate.index is not None and exact.index is None
    queries = corpus[::40]
    agree = sum(approximate(q).indices[0] == exact(q).indices[0] for q in queries)
    assert agree >= 0.9 * len(queries)
    approximate.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "faiss_index.bin").is_file()
    loaded = EmbeddingsWithScores.from_saved(tmp_path / "idx", vectorizer)
    assert all(loaded(q) == approximate(q) for q in queries)
    shipped = cloudpickle.loads(cloudpickle.dumps(approximate))
    assert all(shipped(q) == approximate(q) for q in queries)
    (tmp_path / "idx" / "faiss_index.bin").write_bytes(b"garbage")
    with pytest.raises(SavedIndexError, match="not a FAISS index"):
        Embeddings.from_saved(tmp_path / "idx", vectorizer)
    (tmp_path / "idx" / "faiss_index.bin").unlink()
    with pytest.raises(SavedIndexMissing, match="faiss_index.bin is missing"):
        Embeddings.from_saved(tmp_path / "idx", vectorizer)


def test_bad_arguments_are_config_errors():
    with pytest.raises(dspex.ConfigError, match="does not cache"):
        Embeddings(PETS, one_hot, cache=True)
    with pytest.raises(dspex.ConfigError, match="corpus is empty"):
        Embeddings([], one_hot)
    with pytest.raises(dspex.ConfigError, match=r"corpus\[1\] is a int"):
        Embeddings(["a", 2], one_hot)
    with pytest.raises(dspex.ConfigError, match="list of strings"):
        Embeddings("one long text", one_hot)
    with pytest.raises(dspex.ConfigError, match="must be callable"):
        Embeddings(PETS, "openai/text-embedding-3-small")
    with pytest.raises(dspex.ConfigError, match=r"shape \(2,\)"):
        Embeddings(PETS[:2], lambda texts: [0.1] * len(texts))
    with pytest.raises(dspex.ConfigError, match="NaN"):
        Embeddings(PETS, lambda texts: np.full((len(texts), 2), np.nan))
    retriever = Embeddings(PETS, one_hot)
    with pytest.raises(dspex.ConfigError, match="3-dim"):
        retriever.embedder = lambda texts: np.ones((len(texts), 5))
        retriever("cat")
    with pytest.raises(dspex.ConfigError, match="string query"):
        Embeddings(PETS, one_hot)(["cat", "dog"])


def test_copies_share_the_vectors_and_pickles_search_the_same():
    corpus = [f"{w} number {i}" for i, w in enumerate("cat dog bird fish".split() * 5)]
    retriever = Embeddings(corpus, DummyVectorizer())
    twin = copy.deepcopy(retriever)
    twin.k = 1
    assert twin.corpus_embeddings is retriever.corpus_embeddings and retriever.k == 5
    shipped = cloudpickle.loads(cloudpickle.dumps(retriever))
    assert shipped("bird number 2") == retriever("bird number 2")


def test_threads_search_at_once():
    retriever = Embeddings(corpus=PETS, embedder=one_hot, k=1)
    queries = [("A cat is sitting.", PETS[0]), ("My dog is awesome!", PETS[1]), ("Birds flying high.", PETS[2])] * 10
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda q: retriever(q[0]).passages[0], queries))
    assert found == [expected for _, expected in queries]


def test_calls_fire_the_module_callbacks():
    seen: list = []
    lock = threading.Lock()

    class Spy(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            with lock:
                seen.append(("start", type(instance).__name__, inputs["query"]))

        def on_module_end(self, call_id, outputs, exception=None):
            with lock:
                seen.append(("end", outputs.indices))

    Embeddings(PETS, one_hot, k=1, callbacks=[Spy()])("dog")
    assert seen == [("start", "Embeddings", "dog"), ("end", [1])]
