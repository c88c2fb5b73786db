"""dspex.Type: annotation scanning, the marked serialization of content parts, and splitting a rendered
user message back into content parts."""

from __future__ import annotations

import json
from typing import Optional, Union

import pydantic
import pytest

from dspex.adapters.types import Image, Type, split_message_content_for_custom_types
from dspex.adapters.types.base_type import (CUSTOM_TYPE_END_IDENTIFIER, CUSTOM_TYPE_START_IDENTIFIER,
                                            wrap_content_parts)


class Sketch(Type):
    url: str

    def format(self):
        return [{"type": "image_url", "image_url": {"url": self.url}}]


class Label(Type):
    model_config = pydantic.ConfigDict(frozen=True)
    text: str

    def format(self):
        return f"label:{self.text}"


def part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


class TestExtract:
    @pytest.mark.parametrize("annotation, expected", [
        (Sketch, [Sketch]),
        (str, []),
        (list[Sketch], [Sketch]),
        (Optional[Sketch], [Sketch]),
        (Sketch | None, [Sketch]),
        (dict[Label, list[Sketch]], [Label, Sketch]),
        (list[dict[str, Union[Label, int]]], [Label]),
        (tuple[Sketch, Label, Sketch], [Sketch, Label, Sketch]),
    ])
    def test_finds_custom_types_at_any_depth_in_order(self, annotation, expected):
        assert Type.extract_custom_type_from_annotation(annotation) == expected

    def test_a_subclass_only_finds_its_own_kind(self):
        assert Image.extract_custom_type_from_annotation(list[Sketch | Image]) == [Image]

    def test_plain_pydantic_models_are_not_custom_types(self):
        class Plain(pydantic.BaseModel):
            x: int

        assert Type.extract_custom_type_from_annotation(list[Plain]) == []


class TestSerialization:
    def test_content_parts_serialize_to_a_marked_json_list(self):
        dumped = Sketch(url="https://e.com/a.png").model_dump()
        assert dumped == (f'{CUSTOM_TYPE_START_IDENTIFIER}[{{"type": "image_url", "image_url": {{"url": '
                          f'"https://e.com/a.png"}}}}]{CUSTOM_TYPE_END_IDENTIFIER}')
        assert dumped == wrap_content_parts([part("https://e.com/a.png")])

    def test_text_formats_serialize_as_themselves(self):
        assert Label(text="x").model_dump() == "label:x"
        assert Label(text="x").model_dump_json() == '"label:x"'

    def test_nested_in_a_model_the_marker_is_the_field_value(self):
        class Holder(pydantic.BaseModel):
            sketch: Sketch
            labels: list[Label]

        dumped = Holder(sketch=Sketch(url="https://e.com/a.png"), labels=[Label(text="a")]).model_dump()
        assert dumped["sketch"].startswith(CUSTOM_TYPE_START_IDENTIFIER)
        assert dumped["labels"] == ["label:a"]

    def test_format_must_be_implemented(self):
        class Bare(Type):
            x: int = 0

        with pytest.raises(NotImplementedError, match="Bare must implement format"):
            Bare().format()

    def test_hooks_have_neutral_defaults(self):
        sentinel = object()
        assert Type.description() == ""
        assert Type.is_streamable() is False
        assert Type.parse_stream_chunk(object()) is None
        assert Type.parse_lm_response({"x": 1}) is None
        assert Type.adapt_to_native_lm_feature(sentinel, "f", object(), {}) is sentinel


class TestSplit:
    def test_splits_user_text_around_each_block(self):
        a, b = Sketch(url="https://e.com/a.png"), Sketch(url="https://e.com/b.png")
        messages = [{"role": "user", "content": f"first {a.model_dump()} then {b.model_dump()} done"}]
        out = split_message_content_for_custom_types(messages)
        assert out is messages
        assert messages[0]["content"] == [
            {"type": "text", "text": "first "}, part("https://e.com/a.png"),
            {"type": "text", "text": " then "}, part("https://e.com/b.png"),
            {"type": "text", "text": " done"},
        ]

    def test_a_block_alone_leaves_no_empty_text_parts(self):
        messages = [{"role": "user", "content": Sketch(url="https://e.com/a.png").model_dump()}]
        assert split_message_content_for_custom_types(messages)[0]["content"] == [part("https://e.com/a.png")]

    def test_only_user_messages_with_blocks_change(self):
        marked = Sketch(url="https://e.com/a.png").model_dump()
        messages = [{"role": "system", "content": marked}, {"role": "assistant", "content": marked},
                    {"role": "user", "content": "no blocks here"}]
        before = json.loads(json.dumps(messages))
        assert split_message_content_for_custom_types(messages) == before

    def test_a_content_that_is_already_a_list_is_left_alone(self):
        messages = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
        assert split_message_content_for_custom_types(messages) == [{"role": "user",
                                                                     "content": [{"type": "text", "text": "x"}]}]

    def test_blocks_escaped_inside_json_strings_are_recovered(self):
        sketch = Sketch(url="https://e.com/a.png")

        class Holder(pydantic.BaseModel):
            items: list[Sketch]

        once = json.dumps([sketch.model_dump()])  # a list field: one level of escaping
        twice = json.dumps([Holder(items=[sketch]).model_dump_json()])  # a model inside a list: two levels
        for text in (once, twice):
            content = split_message_content_for_custom_types([{"role": "user", "content": text}])[0]["content"]
            assert [p for p in content if p["type"] == "image_url"] == [part("https://e.com/a.png")]

    def test_a_block_that_is_not_json_stays_text(self):
        text = f"a {CUSTOM_TYPE_START_IDENTIFIER} not json {CUSTOM_TYPE_END_IDENTIFIER} b"
        content = split_message_content_for_custom_types([{"role": "user", "content": text}])[0]["content"]
        assert content == [{"type": "text", "text": "a "}, {"type": "text", "text": "not json"},
                           {"type": "text", "text": " b"}]

    def test_an_empty_block_stays_text(self):
        text = f"{CUSTOM_TYPE_START_IDENTIFIER}[]{CUSTOM_TYPE_END_IDENTIFIER}"
        content = split_message_content_for_custom_types([{"role": "user", "content": text}])[0]["content"]
        assert content == [{"type": "text", "text": "[]"}]

    def test_multiline_blocks_and_text(self):
        parts = [{"type": "text", "text": "line1\nline2"}]
        text = f"before\n{wrap_content_parts(parts)}\nafter"
        content = split_message_content_for_custom_types([{"role": "user", "content": text}])[0]["content"]
        assert content == [{"type": "text", "text": "before\n"}, *parts, {"type": "text", "text": "\nafter"}]
