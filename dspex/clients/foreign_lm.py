"""An LM object that is not a dspex LM, used as one: DSPy's duck-typed LM.

DSPy's adapters call ``lm(messages=[...], **lm_kwargs)`` and read back a list of completions (strings, or
dicts with ``text`` and ``tool_calls`` / ``logprobs`` / ``reasoning_content``). Any object with that call
works as a DSPy LM; test doubles (``unittest.mock.MagicMock(spec=dspy.LM)``) and users' own clients rely
on it. :class:`ForeignLM` gives such an object dspex's request interface: each request is one call of the
object, its first completion the answer. What the object does is its own business: no client actor stands
behind it, so no limits, breaker, retries, cache or ledger apply (use ``dspex.LM`` or subclass
``dspex.BaseLM`` for those).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import MalformedResponse
from ..utils.callback import with_callbacks
from ..utils.syncify import caller_awaits, on_caller_loop
from .messages import Completion

LOCAL_OPTIONS = ("prompt_style", "rollout", "rollout_id", "run")  # dspex's own request options: never sent


class ForeignLM:
    """``ForeignLM(obj)``: ``request(messages, **options)`` calls ``obj(messages=messages, **options)``;
    every other attribute is the object's own. Its requests fire the LM callbacks, as dspex LMs' do."""

    _callback_kind = "lm"

    def __init__(self, lm: Any) -> None:
        self.__dict__["_lm"] = lm

    @with_callbacks
    def request(self, messages: Sequence[dict] | str, **options: Any) -> Completion:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        sent = {k: v for k, v in options.items() if k not in LOCAL_OPTIONS}
        acall = getattr(self._lm, "acall", None)
        if caller_awaits(acall):  # an ``await program.acall(...)``: the object's own async call, on that loop
            outputs = on_caller_loop(acall(messages=list(messages), **sent))
        else:
            outputs = self._lm(messages=list(messages), **sent)
        return self._completion(outputs)

    @with_callbacks
    async def arequest(self, messages: Sequence[dict] | str, **options: Any) -> Completion:
        """``request`` for async code: the object's own ``async def acall`` awaited, else its call on a thread."""
        import asyncio
        import inspect

        acall = getattr(self._lm, "acall", None)
        if not inspect.iscoroutinefunction(acall):
            # the request itself (its hooks fired here already)
            return await asyncio.to_thread(ForeignLM.request.__wrapped__, self, messages, **options)  # type: ignore[attr-defined]
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        sent = {k: v for k, v in options.items() if k not in LOCAL_OPTIONS}
        return self._completion(await acall(messages=list(messages), **sent))

    def _completion(self, outputs: Any) -> Completion:
        first = outputs[0] if isinstance(outputs, (list, tuple)) and outputs else outputs
        if not isinstance(first, (str, dict)):
            raise MalformedResponse(f"{type(self._lm).__name__}(messages=...) returned {type(outputs).__name__}: an "
                                    "LM object must return a list of completions (strings, or dicts with 'text')")
        return Completion.unbilled(first, str(getattr(self._lm, "model", "")))

    def __getattr__(self, name: str) -> Any:
        if name == "callbacks":  # the object's own callbacks fire on its own calls, not again here
            return []
        return getattr(self.__dict__["_lm"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._lm, name, value)

    def __repr__(self) -> str:
        return f"ForeignLM({self._lm!r})"


def is_dspex_lm(lm: Any) -> bool:
    """Whether ``lm``'s class is dspex's LM or a subclass (a mock with ``spec=LM`` only pretends)."""
    from .lm import LM

    return issubclass(type(lm), LM)


__all__ = ["ForeignLM", "is_dspex_lm"]
