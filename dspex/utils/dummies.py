"""DSPy's test doubles: ``DummyLM`` (answers from a list, a dict or the prompt's own demos), ``DummyVectorizer``
and ``dummy_rm``, so a DSPy user's unit tests run on dspex unchanged.

``DummyLM`` is a :class:`dspex.BaseLM`: it answers in this process (no HTTP), through the client pipeline
like any LM (its calls are leased, booked in the ledger at zero cost, kept in ``lm.history``). Its answers
are written in the output format of its adapter (``ChatAdapter`` unless given), so the program's adapter
parses them as it would parse a real model's.
"""

from __future__ import annotations

from dataclasses import replace

import re
import zlib
from collections import Counter
from typing import Any, Iterable, Iterator, Mapping

from ..adapters import ChatAdapter
from ..clients.base_lm import BaseLM
from ..errors import ConfigError
from ..signature import OutputField

NO_MORE = {"answer": "No more responses"}  # what DSPy's DummyLM answers once its list is used up
_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


class AttrDict(dict):
    """A dict whose keys read as attributes (the OpenAI-shaped response DummyLM returns)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class DummyLM(BaseLM):
    """An LM for unit tests (DSPy's three modes):

    - ``DummyLM([{"answer": "red"}, {"answer": "blue"}])``: each call answers the next dict (then
      ``{"answer": "No more responses"}``);
    - ``DummyLM({"What color is the sky?": {"answer": "blue"}})``: the answer of the first key found in the
      last message;
    - ``follow_examples=True``: the answer of the demo in the prompt whose input matches the question.

    ``reasoning=True`` adds ``reasoning_content`` to each answer (a model with native reasoning).
    """

    def __init__(self, answers: list[dict[str, Any]] | Mapping[str, dict[str, Any]], follow_examples: bool = False,
                 reasoning: bool = False, adapter: Any = None, **kwargs: Any) -> None:
        super().__init__("dummy", "chat", 0.0, 1000, True, **kwargs)
        if isinstance(answers, Mapping):
            self.answers: Any = dict(answers)
        elif isinstance(answers, Iterable) and not isinstance(answers, (str, bytes)):
            self.answers = iter(list(answers))
        else:
            raise ConfigError(f"DummyLM answers must be a list of dicts or a dict of dicts, got {type(answers).__name__}")
        self.follow_examples = follow_examples
        self.reasoning = reasoning
        self.adapter = adapter if adapter is not None else ChatAdapter()

    def _answer_text(self, values: Mapping[str, Any]) -> str:
        """``values`` written as the adapter wants a model's answer written."""
        write = getattr(self.adapter, "format_field_with_value", None)
        if write is not None:
            from ..adapters.chat_adapter import FieldInfoWithName

            # untyped, as DSPy's OutputField() is: a list value is written as JSON, not as a numbered list
            untyped = replace(OutputField(), annotation=None)
            fields = {FieldInfoWithName(name=name, info=untyped): value for name, value in values.items()}
            try:
                return write(fields, role="assistant")
            except TypeError:  # an adapter whose method takes no role
                return write(fields)
        return "\n\n".join(f"[[ ## {name} ## ]]\n{value}" for name, value in values.items())

    def _from_examples(self, messages: list[dict]) -> str | None:
        """The answer of the demo whose input turn holds the final question (the prompt's own examples)."""
        counts: Counter[str] = Counter()  # the field each turn starts with: inputs start every user turn
        for message in messages:
            content = message.get("content")
            first = _HEADER.match(content) if isinstance(content, str) else None
            if first is not None:
                counts[first.group(1)] += 1
        if not counts:
            return None
        most = max(counts.values())
        outputs = {name for name, n in counts.items() if n != most}
        question = str(messages[-1].get("content", "")).split("\n\n")[0]
        for ask, answer in zip(reversed(messages[:-1]), reversed(messages)):
            content = str(answer.get("content", ""))
            if any(f"[[ ## {name} ## ]]" in content for name in outputs) and question in str(ask.get("content", "")):
                return content
        return None

    def _next(self, messages: list[dict]) -> str:
        if self.follow_examples:
            return self._from_examples(messages) or ""
        if isinstance(self.answers, dict):
            last = str(messages[-1].get("content", ""))
            found = next((v for k, v in self.answers.items() if k in last), None)
            return self._answer_text(found) if found is not None else "No more responses"
        return self._answer_text(next(self.answers, NO_MORE))

    def forward(self, prompt: str | None = None, messages: list[dict] | None = None, **kwargs: Any) -> AttrDict:
        messages = messages or [{"role": "user", "content": prompt}]
        choices = []
        for _ in range(int({**self.kwargs, **kwargs}.get("n", 1))):
            message = AttrDict(content=self._next(messages), tool_calls=None)
            if self.reasoning:
                message.reasoning_content = "Some reasoning"
            choices.append(AttrDict(message=message, finish_reason="stop"))
        return AttrDict(choices=choices, usage=AttrDict(prompt_tokens=0, completion_tokens=0, total_tokens=0),
                        model="dummy")

    def get_convo(self, index: int) -> tuple[list[dict], list]:
        """The messages and answers of the ``index``-th call."""
        return self.history[index]["messages"], self.history[index]["outputs"]


class DummyVectorizer:
    """A deterministic character n-gram embedder (hashed counts, unit length): similar texts get similar
    vectors, with no model and no network. ``vectorizer(texts)`` → a (len(texts), max_length) numpy array."""

    def __init__(self, max_length: int = 100, n_gram: int = 2) -> None:
        if max_length < 1 or n_gram < 1:
            raise ConfigError("DummyVectorizer: max_length and n_gram must be >= 1")
        self.max_length = max_length
        self.n_gram = n_gram

    def _grams(self, text: str) -> Iterator[str]:
        padded = f" {text.lower()} "
        return (padded[i:i + self.n_gram] for i in range(max(1, len(padded) - self.n_gram + 1)))

    def __call__(self, texts: Iterable[str]) -> Any:
        import numpy as np

        texts = list(texts)
        out = np.zeros((len(texts), self.max_length), dtype=np.float32)
        for row, text in enumerate(texts):
            for gram in self._grams(str(text)):
                out[row, zlib.crc32(gram.encode()) % self.max_length] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def dummy_rm(passages: Iterable[str] = ()) -> Any:
    """A retriever over ``passages`` by :class:`DummyVectorizer` similarity: ``rm(query, k=3)`` → the k
    nearest as objects with ``long_text``."""
    passages = list(passages)

    def retrieve(query: str, *, k: int, **_: Any) -> list[AttrDict]:
        if not passages:
            raise ConfigError("dummy_rm was given no passages")
        if k > len(passages):
            raise ConfigError(f"dummy_rm: k={k} but there are only {len(passages)} passages")
        vectorizer = DummyVectorizer(max(map(len, passages)) + 100)
        scores = vectorizer(passages) @ vectorizer([query])[0]
        return [AttrDict(long_text=passages[i]) for i in (-scores).argsort()[:k]]

    return retrieve


__all__ = ["DummyLM", "DummyVectorizer", "dummy_rm", "AttrDict"]
