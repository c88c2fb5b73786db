"""Small datasets that ship with dspex, read without the network.

``countries_qa()``: a retrieval QA task over ISO 3166 country facts (``dspex/data/countries``, from
pycountry's copy of Debian's iso-codes tables, LGPL-2.1; the folder's README says how it was built). The
corpus has one passage per country and per withdrawn country code; each question's answer (an alpha-3
code, a numeric code, an official name) stands in exactly one passage, so a small model answers from
retrieved context or not at all: closed-book a 135M model scores 0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .primitives import Example

COUNTRIES = Path(__file__).resolve().parent / "data" / "countries"


@dataclass(frozen=True)
class RetrievalQA:
    """A corpus of passages and its questions split three ways (``Example(question=, answer=)``, input
    ``question``; ``source`` is the id of the passage that holds the answer)."""

    corpus: list[str]
    train: list[Example]
    val: list[Example]
    dev: list[Example]


def countries_qa(train_size: int = 24, val_size: int = 24, dev_size: int = 100) -> RetrievalQA:
    """The countries task split by a stable hash of each question's id: the same sizes give the same
    examples on every machine, and a larger split extends a smaller one."""
    for label, value in (("train_size", train_size), ("val_size", val_size), ("dev_size", dev_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{label} must be an int >= 0, got {value!r}")
    corpus = [row["text"] for row in _rows("corpus.jsonl")]
    rows = sorted(_rows("questions.jsonl"), key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    if train_size + val_size + dev_size > len(rows):
        raise ConfigError(f"the countries task has {len(rows)} questions; asked for "
                          f"{train_size} + {val_size} + {dev_size}")
    examples = [Example(question=r["question"], answer=r["answer"], source=r["source"]).with_inputs("question")
                for r in rows]
    # dev from the front, train then val from the back: a larger dev never takes a training example
    dev = examples[:dev_size]
    rest = examples[::-1]
    return RetrievalQA(corpus, train=rest[:train_size], val=rest[train_size:train_size + val_size], dev=dev)


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (COUNTRIES / name).read_text(encoding="utf-8").splitlines() if line.strip()]
