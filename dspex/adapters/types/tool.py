"""Tool calls as field values: ``ToolCalls`` (what an LM asks to run) and ``ToolCallResults`` (what came
back).

``ToolCalls`` is the output type of a signature whose LM picks tools: the LM's answer may be DSPy's shape
(``{"tool_calls": [{"name", "args"}]}``), a bare call or list of calls, or a provider's native shape
(``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``); all validate to the same
value. A call's ``id`` (the provider's) is kept but neither shown to the LM nor in the JSON schema.

``Tool`` wraps a Python function for an agent (``dspex.Tool``, also ``dspex.programs.Tool``, as DSPy's
``dspy.adapters.types.tool.Tool``): its name, description and per-argument JSON schemas come from the
function; a call validates the arguments into their annotated types. :meth:`ToolCalls.ToolCall.execute`
takes any objects with a ``name`` and a ``func`` (or plain functions).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import pydantic
from pydantic import TypeAdapter
from pydantic_core import SchemaSerializer, core_schema

from ...errors import ConfigError, ExampleError
from ...utils.callback import with_callbacks
from ...utils.syncify import run_async
from .base_type import Type, schema_without_docstring

_TYPE_MAPPING = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}


def _hide_from_schema(schema: dict[str, Any], name: str) -> dict[str, Any]:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        properties.pop(name, None)
    required = schema.get("required")
    if isinstance(required, list):
        schema["required"] = [field for field in required if field != name]
    return schema


@dataclass(frozen=True)
class Tool:
    """A callable the agent may use. ``dspex.Tool(func)`` reads from the function what DSPy's ``Tool`` does:
    ``name``, ``desc`` (its docstring), ``args`` (argument name -> JSON schema, with ``default`` and, from
    ``arg_desc``, ``description``), ``arg_types`` (argument name -> annotation, ``Any`` when none) and
    ``has_kwargs`` (it takes ``**kwargs``); what is passed explicitly is kept as given.

    A call (``tool(**kwargs)`` or ``await tool.acall(**kwargs)``) refuses an argument the tool does not take
    and validates each one into its annotated type (pydantic models and nested generics included); an
    invalid one raises ConfigError (a ValueError). An ``async`` function is awaited by ``acall`` and run to
    completion by a plain call."""

    func: Callable[..., Any]
    name: str | None = None
    desc: str | None = None
    args: dict[str, Any] | None = None
    arg_types: dict[str, Any] | None = None
    arg_desc: dict[str, str] | None = None
    has_kwargs: bool = field(default=False, init=False)
    _callback_kind: ClassVar[str] = "tool"  # its calls fire the tool hooks (dspex.utils.callback)

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise ConfigError(f"a tool must be callable, got {self.func!r}")
        params = _parameters(self.func)
        hints = _type_hints(self.func)
        name = self.name or getattr(self.func, "__name__", None) or type(self.func).__name__
        object.__setattr__(self, "name", name)
        if self.desc is None:
            object.__setattr__(self, "desc", _docstring(self.func))
        if self.arg_types is None:
            object.__setattr__(self, "arg_types", {n: hints.get(n, Any) for n, p in params.items()
                                                   if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)})
        if self.args is None:
            arg_desc = self.arg_desc or {}
            schemas: dict[str, Any] = {}
            for n, p in params.items():
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                schema = _schema(hints.get(n, Any))
                if p.default is not inspect.Parameter.empty:
                    schema["default"] = p.default
                if n in arg_desc:
                    schema["description"] = arg_desc[n]
                schemas[n] = schema
            object.__setattr__(self, "args", schemas)
        object.__setattr__(self, "has_kwargs", any(p.kind == p.VAR_KEYWORD for p in params.values()))

    @classmethod
    def from_callable(cls, func: Callable[..., Any]) -> "Tool":
        return func if isinstance(func, Tool) else cls(func)

    @classmethod
    def from_actor(cls, ref: Any, name: str, desc: str, args: dict | None = None, timeout: float = 30.0,
                   child: str | None = None) -> "Tool":
        """A stateful tool living under supervision: each use is ``ref.call(args_dict)``. With ``child``,
        ``ref`` is its supervisor and every use calls the child's current incarnation (after a restart too)."""
        def use(**kwargs: Any) -> Any:
            target = ref.child(child) if child is not None else ref
            if target is None:
                raise ConfigError(f"the tool actor {child!r} is restarting; try again")
            return target.call(kwargs, timeout)

        return cls(use, name, desc, args or {})

    def _parse_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` checked against the tool's arguments and validated into their annotated types."""
        known = self.args or {}
        types = self.arg_types or {}
        parsed: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key not in known and key not in types and not self.has_kwargs:
                raise ConfigError(f"Arg {key} is not in the tool's args (tool {self.name} takes: "
                                  f"{', '.join(known) or 'no arguments'}).")
            annotation = types.get(key, Any)
            if annotation is Any or annotation is inspect.Parameter.empty:
                parsed[key] = value
                continue
            try:
                parsed[key] = _type_adapter(annotation).validate_python(value)
            except pydantic.ValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
                where = ".".join(str(p) for p in first.get("loc", ()))
                raise ConfigError(f"Arg {key} is invalid: {first['msg']}" + (f" (at {where})" if where else "")
                                  + f" (tool {self.name})") from None
            except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError):
                parsed[key] = value  # an annotation pydantic cannot check: passed as given
        return parsed

    @with_callbacks
    def __call__(self, **kwargs: Any) -> Any:
        result = self.func(**self._parse_args(kwargs))
        if inspect.isawaitable(result):  # an async tool in a sync call: run it to completion here
            return _run_sync(result)
        return result

    @with_callbacks
    async def acall(self, **kwargs: Any) -> Any:
        """The async call: an async function is awaited, a sync one runs in a worker thread (the event loop
        stays free; the caller's context goes along)."""
        parsed = self._parse_args(kwargs)
        if inspect.iscoroutinefunction(self.func) or inspect.iscoroutinefunction(getattr(self.func, "__call__", None)):
            return await self.func(**parsed)
        result = await asyncio.to_thread(self.func, **parsed)
        if inspect.isawaitable(result):
            return await result
        return result

    def format(self) -> str:
        return str(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """As a pydantic value (a ``list[dspex.Tool]`` input field): a Tool, or a callable made one; dumped
        as its text (``format()``), as DSPy's Tool is."""
        def validate(value: Any) -> "Tool":
            if isinstance(value, cls) or callable(value):
                return cls.from_callable(value)
            raise ValueError(f"expected a dspex.Tool or a callable, got {type(value).__name__}")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda tool: tool.format()))

    def format_as_litellm_function_call(self) -> dict[str, Any]:
        """The tool as a chat-completions ``tools`` entry (arguments with a default are not required)."""
        args = self.args or {}
        return {"type": "function", "function": {
            "name": self.name, "description": self.desc,
            "parameters": {"type": "object", "properties": args,
                           "required": [k for k, v in args.items() if not (isinstance(v, dict) and "default" in v)]}}}

    def describe(self) -> str:
        return str(self)

    def __str__(self) -> str:
        about = f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ") if self.desc else "."
        return f"{self.name}{about} It takes arguments {self.args}."

    def __repr__(self) -> str:
        return f"Tool(name={self.name}, desc={self.desc}, args={self.args})"


# pydantic dumps a Tool met inside any value (a list of tools in a prompt) as its text, as DSPy's Tool does
Tool.__pydantic_serializer__ = SchemaSerializer(core_schema.any_schema(  # type: ignore[attr-defined]
    serialization=core_schema.plain_serializer_function_ser_schema(lambda tool: tool.format())))


def _call_target(func: Callable[..., Any]) -> Any:
    """Where a callable's annotations and docstring live: the function itself, else its ``__call__``."""
    if inspect.isfunction(func) or inspect.ismethod(func):
        return func
    return getattr(func, "__call__", func)


def _parameters(func: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return {}


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    target = _call_target(func)
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError, AttributeError, SyntaxError):  # unresolvable forward references: the raw ones
        hints = {}
        for name, param in _parameters(func).items():
            if param.annotation is not inspect.Parameter.empty and not isinstance(param.annotation, str):
                hints[name] = param.annotation
        return hints


def _docstring(func: Callable[..., Any]) -> str:
    doc = getattr(func, "__doc__", None) or getattr(_call_target(func), "__doc__", None)
    return inspect.cleandoc(doc) if doc else ""


def _type_adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def _schema(annotation: Any) -> dict[str, Any]:
    try:
        return _resolve_json_schema_reference(TypeAdapter(annotation).json_schema())
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError):
        return {}


def _run_sync(awaitable: Any) -> Any:
    """Run an awaitable to completion from sync code (also while this thread's event loop runs)."""
    async def wait() -> Any:
        return await awaitable

    return run_async(wait())


class ToolCalls(Type):
    """The tool calls an LM asked for: ``tool_calls``, each a :class:`ToolCalls.ToolCall`. A program that ran
    them may attach ``tool_call_results`` (kept in ``model_dump``, never shown to the LM)."""

    class ToolCall(Type):
        """One call: the tool's ``name`` and its ``args``; ``id`` is the provider's call id, if any."""

        id: str | None = None
        name: str
        args: dict[str, Any] = pydantic.Field(json_schema_extra={"additionalProperties": True})

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            schema = handler.resolve_ref_schema(super().__get_pydantic_json_schema__(core_schema, handler))
            schema_without_docstring(schema)
            return _hide_from_schema(schema, "id")

        def format(self) -> dict[str, Any]:
            return {"name": self.name, "args": self.args}

        def execute(self, functions: dict[str, Any] | list[Any] | None = None) -> Any:
            """Run the call and return what the tool returns.

            ``functions``: a ``{name: callable}`` dict; a list of tools (objects with ``name`` and ``func``,
            like ``dspex.Tool``) or plain functions (matched by ``__name__``); or None to look the name up in
            the caller's local, then global, variables. A name found nowhere raises ConfigError (a
            ValueError); an exception inside the tool is re-raised as RuntimeError naming the tool.
            """
            func = None
            if functions is None:
                frame = inspect.currentframe()
                caller = frame.f_back if frame is not None else None
                try:
                    if caller is not None:
                        func = caller.f_locals.get(self.name) or caller.f_globals.get(self.name)
                finally:
                    del frame, caller
            elif isinstance(functions, dict):
                func = functions.get(self.name)
            else:
                for tool in functions:
                    if getattr(tool, "name", None) == self.name:
                        func = getattr(tool, "func", tool)
                        break
                    if getattr(tool, "name", None) is None and getattr(tool, "__name__", None) == self.name:
                        func = tool
                        break
            if func is None or not callable(func):
                raise ConfigError(f"Tool function '{self.name}' not found. Please pass the tool functions to the "
                                  "`execute` method (a {name: function} dict or a list of tools).")
            try:
                return func(**(self.args or {}))
            except Exception as exc:
                raise RuntimeError(f"Error executing tool '{self.name}': {exc}") from exc

    tool_calls: list[ToolCall]
    tool_call_results: Any | None = None

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(super().__get_pydantic_json_schema__(core_schema, handler))
        schema_without_docstring(schema)
        return _hide_from_schema(schema, "tool_call_results")

    @classmethod
    def from_dict_list(cls, tool_calls_dicts: list[dict[str, Any]]) -> "ToolCalls":
        """``[{"name": "search", "args": {...}}, ...]`` (or provider-shaped calls) as ToolCalls."""
        return cls(tool_calls=[cls.ToolCall(**_normalize_tool_call_dict(item)) for item in tool_calls_dicts])

    @classmethod
    def description(cls) -> str:
        return ("Tool calls must be a JSON object with `tool_calls`, a list of calls. Each call must include `name` "
                'and `args`. Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}')

    def format(self) -> dict[str, Any]:
        return {"tool_calls": [call.format() for call in self.tool_calls]}

    @pydantic.model_serializer()
    def serialize_model(self) -> dict[str, Any]:
        dumped = self.format()
        if self.tool_call_results is not None:
            results = self.tool_call_results
            dumped["tool_call_results"] = TypeAdapter(type(results)).dump_python(results, mode="json")
        return dumped

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list) and all(isinstance(item, cls.ToolCall)
                                          or (isinstance(item, dict) and _is_tool_call_dict(item)) for item in data):
            return {"tool_calls": [_as_call(cls, item) for item in data]}
        if isinstance(data, dict):
            if isinstance(data.get("tool_calls"), list):
                normalized: dict[str, Any] = {"tool_calls": [_as_call(cls, item) for item in data["tool_calls"]]}
                if "tool_call_results" in data:
                    normalized["tool_call_results"] = data["tool_call_results"]
                return normalized
            if "tool_calls" not in data and _is_tool_call_dict(data):
                return {"tool_calls": [_as_call(cls, data)]}
        shown = repr(data) if len(repr(data)) <= 200 else repr(data)[:200] + "..."
        raise ExampleError(f"Received invalid value for `dspex.ToolCalls`: {shown} (expected "
                           '{"tool_calls": [{"name": ..., "args": {...}}]}, one such call, or a list of them)')


def _as_call(cls: type[ToolCalls], item: Any) -> Any:
    return cls.ToolCall(**_normalize_tool_call_dict(item)) if isinstance(item, dict) else item


class ToolCallResults(pydantic.BaseModel):
    """What the tools returned: one :class:`ToolCallResults.ToolCallResult` per call (``call_id`` ties it to
    the call's ``id``; ``is_error`` marks a value that is an error message)."""

    class ToolCallResult(pydantic.BaseModel):
        call_id: str | None = None
        name: str
        value: Any
        is_error: bool = False

    tool_call_results: list[ToolCallResult]

    @classmethod
    def from_tool_calls_and_values(cls, tool_calls: list[ToolCalls.ToolCall] | ToolCalls, values: list[Any],
                                   is_errors: list[bool] | None = None) -> "ToolCallResults":
        """Pair each call with its value (and error flag), in order; the lengths must agree."""
        calls = tool_calls.tool_calls if isinstance(tool_calls, ToolCalls) else list(tool_calls)
        if len(calls) != len(values):
            raise ExampleError(f"`tool_calls` and `values` must have the same length ({len(calls)} calls, "
                               f"{len(values)} values).")
        if is_errors is None:
            is_errors = [False] * len(calls)
        elif len(is_errors) != len(calls):
            raise ExampleError(f"`is_errors` must have the same length as `tool_calls` when provided ({len(calls)} "
                               f"calls, {len(is_errors)} flags).")
        return cls(tool_call_results=[
            cls.ToolCallResult(call_id=call.id, name=call.name, value=value, is_error=bool(error))
            for call, value, error in zip(calls, values, is_errors)])

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list):
            return {"tool_call_results": data}
        if isinstance(data, dict):
            if "tool_call_results" in data:
                return data
            if {"name", "value"} <= set(data):
                return {"tool_call_results": [data]}
        raise ExampleError(f"Received invalid value for `dspex.ToolCallResults`: {data!r}")


def _is_tool_call_dict(data: dict[str, Any]) -> bool:
    return ("name" in data and ("args" in data or "arguments" in data)) or "function" in data


def _parse_arguments(text: str, name: Any) -> dict[str, Any]:
    """A call's arguments sent as a string (providers send JSON text): JSON, else a Python literal."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise ExampleError(f"the arguments of the tool call {name!r} are not valid JSON: {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise ExampleError(f"the arguments of the tool call {name!r} must be a JSON object, got {text[:200]!r}")
    return value


def _normalize_tool_call_dict(data: Any) -> dict[str, Any]:
    """``{"id", "name", "args"}`` from DSPy's shape (``args`` or ``arguments``) or a provider's
    (``{"id", "function": {"name", "arguments"}}``)."""
    if not isinstance(data, dict):
        raise ExampleError(f"Received invalid tool call value for `dspex.ToolCalls`: {data!r}")
    if "function" in data:
        function = data.get("function") or {}
        if not isinstance(function, dict):
            raise ExampleError(f"Received invalid function value for `dspex.ToolCalls`: {function!r} (expected "
                               '{"name": ..., "arguments": ...})')
        name = function.get("name") or data.get("name")
        arguments = function.get("arguments", {})
    else:
        name = data.get("name")
        arguments = data.get("args", data.get("arguments", {}))
    if isinstance(arguments, str):
        arguments = _parse_arguments(arguments, name)
    elif not isinstance(arguments, dict):
        arguments = {}
    return {"id": data.get("id") or data.get("call_id"), "name": name, "args": arguments}


def _resolve_json_schema_reference(schema: dict) -> dict:
    """``schema`` with every ``$ref`` into its ``$defs`` replaced by the definition (``$defs`` dropped)."""
    definitions = schema.get("$defs", schema.get("definitions"))
    if not definitions:
        return schema

    def inline(node: Any, seen: tuple[str, ...] = ()) -> Any:
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            key = ref.rsplit("/", 1)[-1]
            if key in seen or key not in definitions:  # a recursive model: leave the reference
                return node
            extra = {k: inline(v, seen) for k, v in node.items() if k != "$ref"}
            return {**inline(definitions[key], (*seen, key)), **extra}
        return {k: inline(v, seen) for k, v in node.items()}

    return inline({k: v for k, v in schema.items() if k not in ("$defs", "definitions")})


def convert_input_schema_to_tool_args(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """A tool's JSON input schema (MCP, LangChain) as ``(args, arg_types, arg_desc)``: each property's
    schema (references inlined), its Python type (``Any`` when not a simple JSON type) and its description
    (``"No description provided."`` when none; `` (Required)`` appended for required ones)."""
    args: dict[str, Any] = {}
    arg_types: dict[str, Any] = {}
    arg_desc: dict[str, str] = {}
    properties = schema.get("properties")
    if not properties:
        return args, arg_types, arg_desc
    required = set(schema.get("required", []))
    definitions = schema.get("$defs", {})
    for name, prop in properties.items():
        if definitions:
            prop = _resolve_json_schema_reference({"$defs": definitions, **prop})
        args[name] = prop
        arg_types[name] = _TYPE_MAPPING.get(prop.get("type"), Any)
        arg_desc[name] = prop.get("description", "No description provided.") + (" (Required)" if name in required
                                                                               else "")
    return args, arg_types, arg_desc
