"""dspex.ToolCalls / ToolCallResults, and the JSON-schema helpers for tool arguments."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pydantic
import pytest
from pydantic import TypeAdapter

from dspex.adapters.types import History, ToolCallResults, ToolCalls
from dspex.adapters.types.tool import _resolve_json_schema_reference, convert_input_schema_to_tool_args
from dspex.errors import ConfigError, ExampleError

Call = ToolCalls.ToolCall


class TestShapes:
    @pytest.mark.parametrize("data", [
        {"name": "search", "args": {"q": "cats"}},
        {"name": "search", "arguments": {"q": "cats"}},
        [{"name": "search", "args": {"q": "cats"}}],
        {"tool_calls": [{"name": "search", "args": {"q": "cats"}}]},
        {"tool_calls": [{"name": "search", "arguments": {"q": "cats"}}]},
        {"type": "function", "function": {"name": "search", "arguments": {"q": "cats"}}},
        {"type": "function", "function": {"name": "search", "arguments": '{"q": "cats"}'}},
        {"tool_calls": [Call(name="search", args={"q": "cats"})]},
        [Call(name="search", args={"q": "cats"})],
    ])
    def test_every_shape_validates_to_the_same_calls(self, data):
        calls = ToolCalls.model_validate(data)
        assert calls.format() == {"tool_calls": [{"name": "search", "args": {"q": "cats"}}]}

    def test_provider_ids_are_kept_but_not_shown(self):
        calls = ToolCalls.from_dict_list([
            {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"call_id": "call_2", "name": "b", "args": {}},
            {"name": "c", "args": {}},
        ])
        assert [c.id for c in calls.tool_calls] == ["call_1", "call_2", None]
        assert all("id" not in c for c in calls.format()["tool_calls"])

    def test_empty_or_python_literal_arguments(self):
        assert ToolCalls.from_dict_list([{"function": {"name": "now", "arguments": ""}}]).tool_calls[0].args == {}
        calls = ToolCalls.from_dict_list([{"name": "f", "arguments": "{'a': 1}"}])
        assert calls.tool_calls[0].args == {"a": 1}

    @pytest.mark.parametrize("data", [{"foo": "bar"}, [{"foo": "bar"}], "search", 3, {"tool_calls": "x"}])
    def test_refusals(self, data):
        with pytest.raises(ValueError):
            ToolCalls.model_validate(data)

    def test_bad_function_or_arguments(self):
        with pytest.raises(ExampleError, match="function value"):
            ToolCalls.from_dict_list([{"function": "bad"}])
        with pytest.raises(ExampleError, match="not valid JSON"):
            ToolCalls.from_dict_list([{"name": "f", "arguments": "{oops"}])
        with pytest.raises(ExampleError, match="JSON object"):
            ToolCalls.from_dict_list([{"name": "f", "arguments": "[1, 2]"}])


class TestFormatSchemaAndDump:
    def test_format(self):
        assert ToolCalls(tool_calls=[]).format() == {"tool_calls": []}
        calls = ToolCalls(tool_calls=[Call(name="t", args={"x": 1}), Call(name="u", args={})])
        assert calls.format() == {"tool_calls": [{"name": "t", "args": {"x": 1}}, {"name": "u", "args": {}}]}
        assert calls.model_dump() == calls.format()  # a dict: no content-part markers
        assert "tool_calls" in ToolCalls.description()

    def test_json_schema_hides_internal_fields(self):
        schema = TypeAdapter(ToolCalls).json_schema()
        assert "tool_call_results" not in schema["properties"] and schema["required"] == ["tool_calls"]
        call = schema["$defs"]["ToolCall"]
        assert "id" not in call["properties"] and call["required"] == ["name", "args"]
        assert call["properties"]["args"]["additionalProperties"] is True
        assert "description" not in schema and "description" not in call

    def test_results_ride_along_in_dumps_only(self):
        call = Call(id="call_1", name="search", args={"q": "x"})
        results = ToolCallResults.from_tool_calls_and_values([call], [{"hits": 2}])
        calls = ToolCalls(tool_calls=[call], tool_call_results=results)
        assert "tool_call_results" not in calls.format()
        dumped = calls.model_dump(mode="json")
        assert dumped["tool_call_results"] == {"tool_call_results": [
            {"call_id": "call_1", "name": "search", "value": {"hits": 2}, "is_error": False}]}
        restored = ToolCalls.model_validate(json.loads(calls.model_dump_json()))
        assert restored.format() == calls.format()
        assert ToolCallResults.model_validate(restored.tool_call_results) == results

    def test_in_a_history(self):
        call = Call(id="c", name="f", args={})
        results = ToolCallResults.from_tool_calls_and_values(ToolCalls(tool_calls=[call]), [1])
        calls = ToolCalls(tool_calls=[call], tool_call_results=results)
        dumped = History(messages=[{"tool_calls": calls}]).model_dump(mode="json")
        assert History.model_validate(dumped).messages == dumped["messages"]


class TestResults:
    def test_pairs_calls_and_values(self):
        calls = [Call(id="1", name="a", args={}), Call(id="2", name="b", args={})]
        results = ToolCallResults.from_tool_calls_and_values(calls, ["ok", "boom"], is_errors=[False, True])
        assert [(r.call_id, r.name, r.value, r.is_error) for r in results.tool_call_results] == [
            ("1", "a", "ok", False), ("2", "b", "boom", True)]

    def test_length_mismatches(self):
        calls = [Call(name="a", args={})]
        with pytest.raises(ValueError, match="same length"):
            ToolCallResults.from_tool_calls_and_values(calls, [1, 2])
        with pytest.raises(ExampleError, match="is_errors"):
            ToolCallResults.from_tool_calls_and_values(calls, [1], is_errors=[True, False])

    def test_shapes(self):
        one = {"name": "a", "value": 1}
        expected = ToolCallResults(tool_call_results=[ToolCallResults.ToolCallResult(name="a", value=1)])
        assert ToolCallResults.model_validate(one) == expected
        assert ToolCallResults.model_validate([one]) == expected
        assert ToolCallResults.model_validate({"tool_call_results": [one]}) == expected
        with pytest.raises(ValueError):
            ToolCallResults.model_validate({"nope": 1})


def add(a: int, b: int) -> int:
    return a + b


class TestExecute:
    def test_from_a_dict_of_functions(self):
        assert Call(name="add", args={"a": 2, "b": 3}).execute({"add": add}) == 5

    def test_from_a_list_of_tools_or_functions(self):
        tool = SimpleNamespace(name="add", func=add)
        assert Call(name="add", args={"a": 1, "b": 1}).execute([tool]) == 2
        assert Call(name="add", args={"a": 1, "b": 2}).execute([add]) == 3

    def test_from_the_callers_variables_locals_first(self):
        def add(a, b):  # noqa: F811 - shadows the module's on purpose
            return 100 + a + b

        assert Call(name="add", args={"a": 1, "b": 1}).execute() == 102

    def test_from_the_callers_globals(self):
        assert Call(name="add", args={"a": 4, "b": 4}).execute() == 8

    def test_a_missing_tool(self):
        with pytest.raises(ConfigError, match="not found"):
            Call(name="nope", args={}).execute({"add": add})
        with pytest.raises(ValueError, match="not found"):
            Call(name="nope_anywhere", args={}).execute()

    def test_a_failing_tool(self):
        def broken():
            raise KeyError("x")

        with pytest.raises(RuntimeError, match="Error executing tool 'broken'") as info:
            Call(name="broken", args={}).execute({"broken": broken})
        assert isinstance(info.value.__cause__, KeyError)


class TestSchemaHelpers:
    def test_convert_input_schema(self):
        args, types, desc = convert_input_schema_to_tool_args({
            "type": "object",
            "properties": {"bar": {"type": "string", "description": "The bar."}, "baz": {"type": "integer"},
                           "blob": {}},
            "required": ["baz"],
        })
        assert args == {"bar": {"type": "string", "description": "The bar."}, "baz": {"type": "integer"}, "blob": {}}
        assert types["bar"] is str and types["baz"] is int
        assert desc == {"bar": "The bar.", "baz": "No description provided. (Required)",
                        "blob": "No description provided."}
        assert convert_input_schema_to_tool_args({"properties": {}}) == ({}, {}, {})

    def test_references_are_inlined(self):
        class Point(pydantic.BaseModel):
            x: int

        class Shape(pydantic.BaseModel):
            points: list[Point]
            definitions: str  # a property may be called "definitions"

        resolved = _resolve_json_schema_reference(Shape.model_json_schema())
        assert "$defs" not in resolved and "definitions" in resolved["properties"]
        assert resolved["properties"]["points"]["items"]["properties"] == {"x": {"title": "X", "type": "integer"}}
        args, _, _ = convert_input_schema_to_tool_args(Shape.model_json_schema())
        assert args["points"]["items"]["properties"]["x"]["type"] == "integer"

    def test_recursive_references_stop(self):
        class Node(pydantic.BaseModel):
            children: list["Node"] = []

        resolved = _resolve_json_schema_reference(Node.model_json_schema())
        assert json.dumps(resolved)  # finite
