"""Tool calls as field values: ``ToolCalls`` (what an LM asks to run) and ``ToolCallResults`` (what came
back).

``ToolCalls`` is the output type of a signature whose LM picks tools: the LM's answer may be DSPy's shape
(``{"tool_calls": [{"name", "args"}]}``), a bare call or list of calls, or a provider's native shape
(``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``); all validate to the same
value. A call's ``id`` (the provider's) is kept but neither shown to the LM nor in the JSON schema.

The ``Tool`` wrapper of a Python function is ``dspex.Tool`` (``dspex.programs``, a higher layer):
:meth:`ToolCalls.ToolCall.execute` takes any objects with a ``name`` and a ``func`` (or plain
functions), so it needs nothing from there.
"""

from __future__ import annotations

import ast
import inspect
import json
from typing import Any

import pydantic
from pydantic import TypeAdapter

from ...errors import ConfigError, ExampleError
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
