"""``dspex.streamify`` (also importable as ``dspex.streaming``, DSPy's ``dspy.streaming``): a program's
output fields as the provider writes them, over its real streaming, and status messages as it runs.

    stream = dspex.streamify(program, stream_listeners=[dspex.StreamListener("answer")])
    async for item in stream(question="..."):   # StatusMessage / StreamResponse items, then the Prediction
        ...

The LM requests inside go through the same client actor as any other (limiter, breaker, ledger, cache:
a cached answer arrives as one chunk); only the HTTP answer comes as server-sent events. A listener
follows one output field of one predictor (by default the first predictor whose signature has it) in the
Chat adapter's ``[[ ## field ## ]]`` format; with another adapter the field arrives as one chunk when the
predictor has parsed its answer. An attempt that fails after streaming some text is void: the listener
parses the retry from the start and shows only what it had not shown yet.

Status messages: the call runs with a callback (``dspex.utils.callback``) that asks the
``status_message_provider`` (a :class:`StatusMessageProvider`, the default one unless given) for a message
when a tool, a module or an LM call starts or ends, and puts each non-empty one in the stream as a
:class:`StatusMessage` when it happens. The stream of the call is ``dspex.settings.send_stream`` inside it:
``await dspex.settings.send_stream.send(item)`` (e.g. through ``anyio.from_thread.run`` from a sync
``forward``) puts any object of the program's own in the stream.

``async_streaming=False`` gives a plain generator (:func:`apply_sync_streaming` of the async one);
:func:`streaming_response` turns a stream into server-sent-event lines.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import json
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from ..clients.scope import StreamSink
from ..errors import ConfigError
from ..utils.callback import BaseCallback

MARKER = "[[ ##"


@dataclass
class StreamResponse:
    """A piece of one output field of one predictor (DSPy's shape)."""

    predict_name: str
    signature_field_name: str
    chunk: Any
    is_last_chunk: bool = False


@dataclass
class StatusMessage:
    """A progress note of the running program (a tool starts, a module ends ...)."""

    message: str


class StatusMessageProvider:
    """What status message each stage of a streamed call puts in the stream; subclass it and override the
    hooks you want. A hook returns the message, or None (or "") for none. By default only tool calls say
    something."""

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return f"Calling tool {instance.name}..."

    def tool_end_status_message(self, outputs: Any) -> str | None:
        return "Tool calling finished! Querying the LLM with tool calling results..."

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return None

    def module_end_status_message(self, outputs: Any) -> str | None:
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return None

    def lm_end_status_message(self, outputs: Any) -> str | None:
        return None


_PROVIDER_HOOKS = tuple(name for name in vars(StatusMessageProvider) if name.endswith("_status_message"))


class _Channel:
    """The stream of one call, read by the consumer's event loop: ``put`` from any thread (or the loop's
    own), ``await send(item)`` from any coroutine. Items keep the order they were put in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._items = loop, asyncio.Queue()
        self.closed = False

    def put(self, item: Any) -> None:
        if self.closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the consumer's loop is gone: nobody reads the stream any more
            self.closed = True

    send_nowait = put

    async def send(self, item: Any) -> None:
        self.put(item)

    async def get(self) -> Any:
        return await self._items.get()

    def __repr__(self) -> str:
        return "<dspex stream of a streamify call>"


class StatusStreamingCallback(BaseCallback):
    """The callback a streamed call runs with: each hook asks the provider for a message and puts it in
    the call's stream (``send_stream``); outside a streamed call it does nothing."""

    def __init__(self, status_message_provider: StatusMessageProvider | None = None) -> None:
        self.status_message_provider = status_message_provider or StatusMessageProvider()

    def _say(self, hook: str, *args: Any) -> None:
        from .settings import setting

        stream = setting("send_stream")
        if stream is None:
            return
        message = getattr(self.status_message_provider, hook)(*args)
        if message:
            _send(stream, StatusMessage(message))

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if getattr(instance, "name", None) != "finish":  # ReAct's own end of the loop is no tool call
            self._say("tool_start_status_message", instance, inputs)

    def on_tool_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        if not (isinstance(outputs, str) and outputs == "Completed."):
            self._say("tool_end_status_message", outputs)

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._say("module_start_status_message", instance, inputs)

    def on_module_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self._say("module_end_status_message", outputs)

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._say("lm_start_status_message", instance, inputs)

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self._say("lm_end_status_message", outputs)


def _send(stream: Any, item: Any) -> None:
    """Put ``item`` in ``stream`` from sync code: a streamify stream takes it at once; another object with
    an async ``send`` is sent to from a loop of its own in a helper thread."""
    if isinstance(stream, _Channel):
        stream.put(item)
        return
    done: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(stream.send(item))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            done.append(exc)

    worker = threading.Thread(target=run, name="dspex-stream-send", daemon=True)
    worker.start()
    worker.join()
    if done:
        raise done[0]


# The end markers of a field's value, per adapter: the listener holds back text that could become one.
_END_MARKERS = {
    "ChatAdapter": lambda field: ["[[ ##"],
    "JSONAdapter": lambda field: ['",', '" ', '"}', "}"],
    "XMLAdapter": lambda field: [f"</{field}>", "</"],
}


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

    def _could_form_end_identifier(self, text: str, adapter_name: str) -> bool:
        """Whether ``text`` (held back so far) could be, or become, where the field's value ends in the
        format of ``adapter_name`` ("ChatAdapter", "JSONAdapter", "XMLAdapter"): it holds an end marker's
        telltale, or it ends with the beginning of one."""
        markers = _END_MARKERS.get(adapter_name)
        if markers is None:
            raise ConfigError(f"streaming follows fields in the {', '.join(_END_MARKERS)} formats, "
                              f"not {adapter_name}")
        ends = markers(self.signature_field_name)
        telltale = ends[-1] if adapter_name != "ChatAdapter" else ends[0]
        if telltale in text:
            return True
        return any(text.endswith(end[:k]) for end in ends for k in range(1, len(end) + 1))

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
        self.streamed = False  # some listener showed a piece as the provider wrote it

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
                    if sent[field]:  # a second piece: streamed (a cached answer comes as one piece)
                        self.streamed = True
                    sent[field] = True
                    self.emit(StreamResponse(name, field, out))

        def finish(values: dict) -> None:
            for field in fields:
                if not sent[field] and field in values:  # not streamed in the Chat format: the whole value
                    self.emit(StreamResponse(name, field, _whole(values[field]), is_last_chunk=True))
                else:
                    self.emit(StreamResponse(name, field, "", is_last_chunk=True))

        return sink, finish


def _whole(value: Any) -> Any:
    """A field's value as one chunk: text as text; a value of a dspex type (e.g. Citations) as itself."""
    if isinstance(value, str):
        return value
    from ..adapters.types import Type

    return value if isinstance(value, Type) else str(value)


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


@dataclass(frozen=True)
class _End:
    """The call's end in its stream: its result or its error."""

    result: Any = None
    error: BaseException | None = None


def _enter_call(session: _Session, channel: _Channel, callbacks: list, listeners: list) -> None:
    """In the call's own context: its session, its stream and its callbacks as the settings in force
    (``send_stream`` and ``stream_listeners`` are set here only: ``dspex.context`` refuses them)."""
    from .settings import _CONTEXT

    _SESSION.set(session)
    _CONTEXT.set({**_CONTEXT.get(), "send_stream": channel, "callbacks": callbacks, "stream_listeners": listeners})


def streamify(program: Any, status_message_provider: StatusMessageProvider | None = None,
              stream_listeners: Sequence[StreamListener] | None = None,
              include_final_prediction_in_output_stream: bool = True, is_async_program: bool = False,
              async_streaming: bool = True, **unknown: Any) -> Callable[..., Any]:
    """``program`` as a function whose call streams: StatusMessage and StreamResponse items (and whatever
    the program sends itself) as they happen, then the final Prediction. ``is_async_program``: call
    ``program.acall`` (an async function is awaited as it is; another program runs in a worker thread).
    With ``include_final_prediction_in_output_stream=False`` the Prediction is left out when a listener
    streamed its field (it is kept when none did: no listener, or answers from the cache)."""
    if unknown:
        raise ConfigError(f"streamify does not take {', '.join(sorted(unknown))}= (it takes status_message_provider=, "
                          "stream_listeners=, include_final_prediction_in_output_stream=, is_async_program=, "
                          "async_streaming=)")
    if status_message_provider is not None and not all(callable(getattr(status_message_provider, hook, None))
                                                       for hook in _PROVIDER_HOOKS):
        raise ConfigError(f"streamify does not take status_message_provider={type(status_message_provider).__name__}: "
                          "give a dspex.streaming.StatusMessageProvider (subclass it to choose the messages)")
    listeners = list(stream_listeners or [])
    for listener in listeners:
        if not isinstance(listener, StreamListener):
            raise ConfigError(f"stream_listeners must be dspex.StreamListener values, got {type(listener).__name__}")
    names = {id(p): n for n, p in program.named_predictors()} if hasattr(program, "named_predictors") else {}
    for listener in listeners:
        if listener.predict is not None and id(listener.predict) not in names:
            raise ConfigError(f"{listener!r} follows a predictor that is not part of the program")
    status = StatusStreamingCallback(status_message_provider)

    if is_async_program:
        call: Callable[..., Any] = program.acall
    elif inspect.iscoroutinefunction(program) or inspect.iscoroutinefunction(getattr(program, "__call__", None)):
        call = program
    else:
        from ..utils.asyncify import asyncify

        call = asyncify(program)

    async def async_stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        from .settings import setting

        channel = _Channel(asyncio.get_running_loop())
        session = _Session(listeners, channel.put)
        callbacks = list(setting("callbacks") or [])
        if not any(isinstance(c, StatusStreamingCallback) for c in callbacks):
            callbacks.append(status)
        context = contextvars.copy_context()  # the caller's dspex.context / runtime go with the call
        context.run(_enter_call, session, channel, callbacks, listeners)

        async def run() -> None:
            try:
                channel.put(_End(result=await call(*args, **kwargs)))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
                channel.put(_End(error=exc))
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise

        # the task runs in a copy of ``context`` (create_task takes it as it is created; Python 3.10 has no
        # create_task(context=...))
        task = context.run(asyncio.get_running_loop().create_task, run())
        try:
            while True:
                item = await channel.get()
                if not isinstance(item, _End):
                    yield item
                    continue
                if item.error is not None:
                    raise item.error
                if include_final_prediction_in_output_stream or not listeners or not session.streamed:
                    yield item.result
                return
        finally:
            channel.closed = True
            if not task.done():  # the consumer stopped early: a sync program's thread runs out on its own
                task.cancel()

    if async_streaming:
        return async_stream

    def sync_stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
        return apply_sync_streaming(async_stream(*args, **kwargs))

    return sync_stream


_STOP = object()


def apply_sync_streaming(async_generator: Any) -> Iterator[Any]:
    """The items of ``async_generator`` as a plain generator: it runs on an event loop of its own in a
    helper thread (in a copy of the caller's context); an error it raises is raised here."""
    items: queue.Queue = queue.Queue()
    context = contextvars.copy_context()

    async def pump() -> None:
        try:
            async for item in async_generator:
                items.put(item)
            items.put(_STOP)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            items.put(_End(error=exc))

    threading.Thread(target=context.run, args=(asyncio.run, pump()), name="dspex-sync-stream", daemon=True).start()
    while True:
        item = items.get()
        if item is _STOP:
            return
        if isinstance(item, _End) and item.error is not None:
            raise item.error
        yield item


def _event(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'), default=_jsonable)}\n\n"


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


async def streaming_response(streamer: Any) -> AsyncIterator[str]:
    """A program's stream as server-sent-event lines for an HTTP response (OpenAI-style ``data:`` lines,
    then ``data: [DONE]``): the Prediction as ``{"prediction": {...}}``, a field's piece as
    ``{"chunk": {...}}``, a status message as ``{"status_message": "..."}``; a ``data:`` line as it is."""
    from ..primitives import Prediction

    async for value in streamer:
        if isinstance(value, Prediction):
            yield _event({"prediction": {k: v for k, v in value.items() if not str(k).startswith("dspy_")}})
        elif isinstance(value, StreamResponse):
            yield _event({"chunk": dataclasses.asdict(value)})
        elif isinstance(value, StatusMessage):
            yield _event({"status_message": value.message})
        elif isinstance(value, str) and value.startswith("data:"):
            yield value
        else:
            raise ValueError(f"streaming_response cannot write a {type(value).__name__} as an event: {value!r}")
    yield "data: [DONE]\n\n"


__all__ = ["streamify", "StreamListener", "StreamResponse", "StatusMessage", "StatusMessageProvider",
           "StatusStreamingCallback", "streaming_response", "apply_sync_streaming", "current_session"]
