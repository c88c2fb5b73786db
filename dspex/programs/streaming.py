"""``dspex.streamify``: a program's output fields as the provider writes them, over its real streaming.

    stream = dspex.streamify(program, stream_listeners=[dspex.StreamListener("answer")])
    async for item in stream(question="..."):   # StreamResponse chunks, then the final Prediction
        ...

The LM requests inside go through the same client actor as any other (limiter, breaker, ledger, cache:
a cached answer arrives as one chunk); only the HTTP answer comes as server-sent events. A listener
follows one output field of one predictor (by default the first predictor whose signature has it) in the
Chat adapter's ``[[ ## field ## ]]`` format; with another adapter the field arrives as one chunk when the
predictor has parsed its answer. An attempt that fails after streaming some text is void: the listener
parses the retry from the start and shows only what it had not shown yet. ``async_streaming=False`` gives a plain generator.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from ..clients.scope import StreamSink
from ..errors import ConfigError

MARKER = "[[ ##"


@dataclass(frozen=True)
class StreamResponse:
    """A piece of one output field of one predictor (DSPy's shape)."""

    predict_name: str
    signature_field_name: str
    chunk: str
    is_last_chunk: bool = False


class StreamListener:
    """Follow ``signature_field_name`` of ``predict`` (a predictor of the program), or of the predictor
    named ``predict_name``, or of the first predictor whose signature has that output field."""

    def __init__(self, signature_field_name: str, predict: Any = None, predict_name: str | None = None,
                 allow_reuse: bool = False) -> None:
        if not isinstance(signature_field_name, str) or not signature_field_name:
            raise ConfigError("StreamListener needs the output field to follow, e.g. StreamListener('answer')")
        self.signature_field_name, self.predict, self.predict_name = signature_field_name, predict, predict_name
        self.allow_reuse = allow_reuse

    def follows(self, predictor: Any, name: str) -> bool:
        if self.predict is not None:
            return predictor is self.predict
        if self.predict_name is not None:
            return name == self.predict_name
        return self.signature_field_name in predictor.signature.output_fields

    def __repr__(self) -> str:
        return f"StreamListener({self.signature_field_name!r})"


class _FieldText:
    """The text of one field in a Chat-adapter answer, as it streams: held back while it could still be
    the start of the next field's marker or trailing whitespace."""

    def __init__(self, field: str) -> None:
        self.start = f"[[ ## {field} ## ]]"
        self.shown = ""  # what the consumer has seen (it cannot be taken back)
        self.reset()

    def reset(self) -> None:
        """The attempt failed: parse the retry from the start, without showing again what was shown."""
        self.buffer, self.inside, self.done, self.sent = "", False, False, False
        self.skip = self.shown

    def feed(self, piece: str) -> str:
        out = self._parse(piece)
        if self.skip:  # a retry repeating what the failed attempt showed (a diverging one shows the rest)
            if out.startswith(self.skip):
                out, self.skip = out[len(self.skip):], ""
            elif self.skip.startswith(out):
                out, self.skip = "", self.skip[len(out):]
            else:
                self.skip = ""
        self.shown += out
        return out

    def _parse(self, piece: str) -> str:
        if self.done:
            return ""
        self.buffer += piece
        if not self.inside:
            at = self.buffer.find(self.start)
            if at < 0:
                self.buffer = self.buffer[-(len(self.start) - 1):]
                return ""
            self.buffer, self.inside = self.buffer[at + len(self.start):], True
        if not self.sent:
            self.buffer = self.buffer.lstrip()
        end = self.buffer.find(MARKER)
        if end >= 0:
            out, self.done = self.buffer[:end].rstrip(), True
        else:
            keep = next((k for k in range(len(MARKER) - 1, 0, -1) if self.buffer.endswith(MARKER[:k])), 0)
            body = self.buffer[:len(self.buffer) - keep]
            out = body.rstrip()
            self.buffer = self.buffer[len(out):]
        self.sent = self.sent or bool(out)
        return out


class _Session:
    """One streamed call: which listeners follow which predictor call, and where the chunks go."""

    def __init__(self, listeners: Sequence[StreamListener], emit: Callable[[StreamResponse], None]) -> None:
        self.listeners, self.emit = list(listeners), emit
        self.used: set[int] = set()
        self.lock = threading.Lock()

    def sink_for(self, predictor: Any, name: str) -> tuple[StreamSink | None, Callable[[dict], None]]:
        """The sink for one predictor call and what to do with its parsed values when it is done."""
        with self.lock:
            mine = [listener for listener in self.listeners if listener.follows(predictor, name)
                    and (listener.allow_reuse or id(listener) not in self.used)]
            self.used.update(id(listener) for listener in mine)
        if not mine:
            return None, lambda values: None
        fields = {listener.signature_field_name: _FieldText(listener.signature_field_name) for listener in mine}
        sent = {field: False for field in fields}

        def sink(piece: str | None) -> None:
            for field, parser in fields.items():
                if piece is None:
                    parser.reset()
                    continue
                out = parser.feed(piece)
                if out:
                    sent[field] = True
                    self.emit(StreamResponse(name, field, out))

        def finish(values: dict) -> None:
            for field in fields:
                if not sent[field] and field in values:  # not streamed in the Chat format: the whole value
                    self.emit(StreamResponse(name, field, str(values[field]), is_last_chunk=True))
                else:
                    self.emit(StreamResponse(name, field, "", is_last_chunk=True))

        return sink, finish


_SESSION: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("dspex_stream_session", default=None)


def current_session() -> _Session | None:
    return _SESSION.get()


@contextmanager
def _session(session: _Session) -> Iterator[None]:
    token = _SESSION.set(session)
    try:
        yield
    finally:
        _SESSION.reset(token)


def streamify(program: Any, stream_listeners: Sequence[StreamListener] = (),
              include_final_prediction_in_output_stream: bool = True, async_streaming: bool = True,
              **unknown: Any) -> Callable[..., Any]:
    """``program`` as a function whose call streams: StreamResponse chunks, then the final Prediction."""
    if unknown:
        raise ConfigError(f"streamify does not take {', '.join(sorted(unknown))}= (it takes stream_listeners=, "
                          "include_final_prediction_in_output_stream=, async_streaming=)")
    listeners = list(stream_listeners)
    for listener in listeners:
        if not isinstance(listener, StreamListener):
            raise ConfigError(f"stream_listeners must be dspex.StreamListener values, got {type(listener).__name__}")
    names = {id(p): n for n, p in program.named_predictors()} if hasattr(program, "named_predictors") else {}
    for listener in listeners:
        if listener.predict is not None and id(listener.predict) not in names:
            raise ConfigError(f"{listener!r} follows a predictor that is not part of the program")

    def start(inputs: dict) -> queue.Queue:
        items: queue.Queue = queue.Queue()
        session = _Session(listeners, lambda chunk: items.put(("chunk", chunk)))

        def work() -> None:
            try:
                with _session(session):
                    items.put(("done", program(**inputs)))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
                items.put(("error", exc))

        context = contextvars.copy_context()  # the caller's dspex.context / runtime go with the call
        threading.Thread(target=context.run, args=(work,), name="dspex-stream", daemon=True).start()
        return items

    def taken(entry: tuple[str, Any]) -> tuple[bool, list]:
        """One queue entry → (finished, what to yield)."""
        kind, item = entry
        if kind == "error":
            raise item
        if kind == "chunk":
            return False, [item]
        return True, [item] if include_final_prediction_in_output_stream else []

    def sync_stream(**inputs: Any) -> Iterator[Any]:
        items = start(inputs)
        finished = False
        while not finished:
            finished, out = taken(items.get())
            yield from out

    async def async_stream(**inputs: Any) -> AsyncIterator[Any]:
        items, loop = start(inputs), asyncio.get_running_loop()
        finished = False
        while not finished:
            finished, out = taken(await loop.run_in_executor(None, items.get))
            for item in out:
                yield item

    return async_stream if async_streaming else sync_stream


__all__ = ["streamify", "StreamListener", "StreamResponse", "current_session"]
