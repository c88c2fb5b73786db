"""DSPy's ``Retrieve``: a program step that asks a retriever (an ``rm``) for the passages of a query.

The retriever is any callable ``rm(query, k=...)``: ``dspex.retrievers.Embeddings``, DSPy's ``dummy_rm``,
a ColBERT client of your own. It comes from ``Retrieve(rm=...)`` (explicit, dspex's) or from the setting
in force (``dspex.configure(rm=...)`` / ``with dspex.context(rm=...)``, DSPy's way). A program sent to
Evaluate's worker processes carries the retriever it resolved here, as it carries its LM.

A retriever may answer with strings, objects or dicts with ``long_text`` (DSPy's passages), or a
prediction with ``passages`` (an ``Embeddings``): ``Retrieve`` always returns
``Prediction(passages=[...])``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError, RetrieverNotConfigured
from ..primitives import Prediction
from ..programs.module import Module
from ..programs.settings import setting


class Retrieve(Module):
    """``Retrieve(k=3)(query).passages``: the ``k`` passages the retriever finds for ``query``.

    A module (it fires the module callbacks and travels with its program), not a predictor: optimizers
    leave it alone, as DSPy's do. ``dump_state`` / ``load_state`` keep ``k``, as DSPy's."""

    name = "Search"
    input_variable = "query"
    desc = "takes a search query and returns one or more potentially relevant passages from a corpus"
    uses_rm_setting = True  # programs.settings.with_resolved_lms gives it the rm in force for worker processes

    def __init__(self, k: int = 3, callbacks: list[Any] | None = None, *, rm: Any = None) -> None:
        super().__init__(callbacks=callbacks)
        if rm is not None and not callable(rm):
            raise ConfigError(f"Retrieve(rm=...) takes a retriever: a callable rm(query, k=...), got "
                              f"{type(rm).__name__}")
        self.stage = secrets.token_hex(8)  # DSPy's per-instance id (random bytes, not the global random state)
        self.k = k
        self.rm = rm

    def reset(self) -> None:
        """DSPy's: a retriever step has nothing learned to forget."""

    def dump_state(self) -> dict:
        return {"k": self.k}

    def load_state(self, state: dict, **_: Any) -> "Retrieve":
        if not isinstance(state, Mapping):
            raise ConfigError(f"a Retrieve's saved state must be an object, got {type(state).__name__}")
        for key, value in state.items():
            setattr(self, key, value)
        return self

    def forward(self, query: str, k: int | None = None, **kwargs: Any) -> Prediction:
        """``Prediction(passages=[...])``: the texts ``rm(query, k=k, **kwargs)`` found, in its order."""
        k = self.k if k is None else k
        rm = self.rm if self.rm is not None else setting("rm")
        if rm is None:
            raise RetrieverNotConfigured(
                "dspex.Retrieve has no retriever: dspex.configure(rm=dspex.retrievers.Embeddings(corpus, "
                "embedder=dspex.Embedder(...))), or Retrieve(k, rm=...) with any callable rm(query, k=...)")
        return Prediction(passages=passage_texts(rm(query, k=k, **kwargs)))


def passage_texts(found: Any) -> list[Any]:
    """The passages of a retriever's answer as a list (module docstring: the shapes accepted)."""
    if isinstance(found, Prediction) or (hasattr(found, "passages") and not isinstance(found, (str, Mapping))):
        found = found.passages
    if isinstance(found, (str, Mapping)) or not isinstance(found, Iterable):
        found = [found]  # one passage (DSPy wraps a non-iterable answer too)
    texts = []
    for passage in found:
        if isinstance(passage, str):
            texts.append(passage)
        elif isinstance(passage, Mapping) and "long_text" in passage:
            texts.append(passage["long_text"])
        elif hasattr(passage, "long_text"):
            texts.append(passage.long_text)
        else:
            raise ConfigError(f"the retriever answered with a {type(passage).__name__} passage: a retriever returns "
                              "strings, objects or dicts with long_text, or a prediction with passages")
    return texts


def single_query_passage(passages: list[Mapping[str, Any]]) -> Prediction:
    """DSPy's helper: a list of passage dicts as one prediction of lists, one per key (``long_text`` is
    renamed ``passages``)."""
    passages = list(passages)
    if not passages:
        raise ConfigError("single_query_passage needs at least one passage")
    fields: dict[str, list[Any]] = {key: [] for key in passages[0]}
    for passage in passages:
        for key, value in passage.items():
            fields.setdefault(key, []).append(value)
    if "long_text" in fields:
        fields["passages"] = fields.pop("long_text")
    return Prediction(**fields)


__all__ = ["Retrieve", "passage_texts", "single_query_passage"]
