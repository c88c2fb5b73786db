"""XMLAdapter: each field in its own ``<name>...</name>`` element (DSPy's ``dspy.XMLAdapter``).

Structured outputs (lists, dicts, TypedDicts, pydantic models) are nested XML, not JSON: ``<items><item>...
</item></items>``, a model's fields as child elements (their Python names, not aliases), a dict key that is
not a valid tag as ``<entry key="...">``. The system message and the last user message show the nested
structure. Parsing reads the whole answer as XML (a malformed answer is an AdapterParseError) and maps the
elements back onto the field's JSON schema; a JSON value inside an output element is accepted too.
"""

from __future__ import annotations

import inspect
import types
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any, Mapping, Union, get_args, get_origin
from xml.sax.saxutils import quoteattr

import pydantic

from ..signature import SignatureMeta
from .base import FieldInfoWithName, ParseFailure
from .chat_adapter import ChatAdapter
from .utils import (_adapter_for, apply_output_field_defaults, field_kind, format_field_value, is_typeddict,
                    parse_value, serialize_for_json, translate_field_type)

_ROOT = "dspex-xml-answer"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _valid_tag(name: str) -> bool:
    return (name[:1] + name[1:].replace("-", "_").replace(".", "_")).isidentifier()


class XMLAdapter(ChatAdapter):
    """Fields as XML elements; structured outputs as nested XML."""

    # --- rendering ---------------------------------------------------------------------------------------

    def format_field_with_value(self, fields_with_values: Mapping[FieldInfoWithName, Any]) -> str:
        blocks = []
        for field, value in fields_with_values.items():
            is_output = field_kind(field.info) == "output"
            annotation = getattr(field.info, "annotation", None)
            data = serialize_for_json(value)
            if is_output and self._uses_nested_xml(annotation) and isinstance(data, (dict, list)):
                blocks.append(self._value_to_xml(data, field.name))
                continue
            text = format_field_value(field.info, value)
            if is_output and annotation is str:
                text = _escape(text)
            blocks.append(f"<{field.name}>\n{text}\n</{field.name}>")
        return "\n\n".join(blocks).strip()

    def format_field_structure(self, signature: SignatureMeta) -> str:
        def placeholder(name: str, info: Any) -> str:
            if field_kind(info) == "output" and self._uses_nested_xml(info.annotation):
                return self._xml_schema(name, info.annotation)
            return self.format_field_with_value({FieldInfoWithName(name, info): translate_field_type(name, info)})

        groups = ("\n\n".join(placeholder(n, f) for n, f in fields.items())
                  for fields in (signature.input_fields, signature.output_fields))
        return "\n\n".join(("All interactions will be structured in the following way, with the appropriate values "
                            "filled in.", *groups))

    def format_user_message_content(self, signature: SignatureMeta, inputs: Mapping[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        given = {FieldInfoWithName(n, f): inputs[n] for n, f in signature.input_fields.items() if n in inputs}
        parts = [prefix, self.format_field_with_value(given)]
        if main_request:
            parts.append(self.user_message_output_requirements(signature))
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def format_assistant_message_content(self, signature: SignatureMeta, outputs: Mapping[str, Any],
                                         missing_field_message: str | None = None) -> str:
        return self.format_field_with_value({FieldInfoWithName(n, f): outputs.get(n, missing_field_message)
                                             for n, f in signature.output_fields.items()})

    def user_message_output_requirements(self, signature: SignatureMeta) -> str:
        tags = ", then ".join(f"`<{name}>`" for name in signature.output_fields)
        nested = [self._xml_schema(n, f.annotation) for n, f in signature.output_fields.items()
                  if self._uses_nested_xml(f.annotation)]
        text = f"Respond with the corresponding output fields wrapped in XML tags {tags}."
        return text + (f" Use this nested XML structure: {' '.join(nested)}" if nested else "")

    @classmethod
    def _value_to_xml(cls, value: Any, tag: str, key: str | None = None) -> str:
        attrs = f" key={quoteattr(key)}" if key is not None else ""
        if isinstance(value, list):
            inner = "".join(cls._value_to_xml(item, "item") for item in value)
        elif isinstance(value, dict):
            inner = "".join(cls._value_to_xml(child, str(name)) if _valid_tag(str(name))
                            else cls._value_to_xml(child, "entry", str(name)) for name, child in value.items())
            return f"<{tag}{attrs}>{inner}</{tag}>"
        elif value is None:
            inner = ""
        else:
            return f"<{tag}{attrs}>{_escape(str(value))}</{tag}>"
        return f"<{tag}{attrs}>{inner}</{tag}>" if inner else f"<{tag}{attrs} />"

    @classmethod
    def _xml_schema(cls, tag: str, annotation: Any) -> str:
        """The nested-XML skeleton of a type: ``<tag><field>...</field><list><item>...</item></list></tag>``."""
        schema = _adapter_for(annotation).json_schema(by_alias=False)
        return cls._schema_to_xml(tag, schema, schema.get("$defs", {}), frozenset())

    @classmethod
    def _schema_to_xml(cls, tag: str, schema: dict, defs: dict, seen: frozenset) -> str:
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name in seen:  # a recursive model: stop here
                return f"<{tag}>...</{tag}>"
            return cls._schema_to_xml(tag, defs[name], defs, seen | {name})
        choices = schema.get("anyOf")
        if choices:
            chosen = next((c for c in choices if c.get("type") != "null"), choices[0])
            return cls._schema_to_xml(tag, chosen, defs, seen)
        if schema.get("type") == "array":
            return f"<{tag}>{cls._schema_to_xml('item', schema.get('items', {}), defs, seen)}</{tag}>"
        inner = "".join(cls._schema_to_xml(name, sub, defs, seen) for name, sub in schema.get("properties", {}).items())
        return f"<{tag}>{inner or '...'}</{tag}>"

    @staticmethod
    def _uses_nested_xml(annotation: Any) -> bool:
        """Lists, dicts, TypedDicts and pydantic models (other than dspex's own types) render as nested XML."""
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
        origin = get_origin(annotation)
        item = get_args(annotation)[0] if origin is list and get_args(annotation) else annotation
        if inspect.isclass(item) and issubclass(item, pydantic.BaseModel) and item.__module__.startswith("dspex."):
            return False
        return origin in (list, dict) or is_typeddict(annotation) or (
            inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel))

    # --- parsing -----------------------------------------------------------------------------------------

    def parse(self, signature: SignatureMeta, completion: str) -> dict[str, Any]:
        try:
            root = ET.fromstring(f"<{_ROOT}>{completion}</{_ROOT}>")
        except ET.ParseError as exc:
            raise ParseFailure(self.name(), signature, completion, f"Failed to parse XML: {exc}") from None
        elements = self._group_children(root)
        fields: dict[str, Any] = {}
        for name, field in signature.output_fields.items():
            if name not in elements:
                continue
            adapter = _adapter_for(field.annotation)
            schema = adapter.json_schema(by_alias=False)
            defs = schema.get("$defs", {})
            value, error = None, None
            for candidate in (schema, *schema.get("anyOf", [])):  # the whole type, then each branch of a union
                try:
                    value = self._elements_to_value(elements[name], candidate, defs)
                    try:
                        fields[name] = parse_value(value, field.annotation)
                    except pydantic.ValidationError:
                        fields[name] = adapter.validate_python(value, by_name=True)
                    break
                except Exception as exc:  # noqa: BLE001 - try the next branch; report the last reason
                    error = exc
            else:
                raise ParseFailure(self.name(), signature, completion,
                                   f"Failed to parse field {name} with value {value!r}: {error}") from None
        fields = apply_output_field_defaults(signature, fields)
        if fields.keys() != signature.output_fields.keys():
            raise ParseFailure(self.name(), signature, completion, parsed_result=fields)
        return fields

    @staticmethod
    def _group_children(element: ET.Element) -> dict[str, list[ET.Element]]:
        children: dict[str, list[ET.Element]] = defaultdict(list)
        for child in element:
            name = child.attrib.get("key", child.tag) if child.tag == "entry" else child.tag
            children[name].append(child)
        return children

    @staticmethod
    def _is_empty(element: ET.Element) -> bool:
        return not list(element) and not (element.text or "").strip()

    @classmethod
    def _elements_to_value(cls, elements: list[ET.Element], schema: dict, defs: dict) -> Any:
        """Plain data from the elements of one name, read against (a branch of) the field's JSON schema."""
        ref = schema.get("$ref", "")
        schema = defs.get(ref.rsplit("/", 1)[-1], schema) if ref else schema
        choices = schema.get("anyOf")
        if choices:
            if {"type": "null"} in choices and cls._is_empty(elements[0]):
                return None
            choices = [c for c in choices if c.get("type") != "null"]
            schema = choices[0]
            if list(elements[0]):  # element children: prefer a structured branch
                schema = next((c for c in choices if c.get("type") != "string"), schema)
            ref = schema.get("$ref", "")
            schema = defs.get(ref.rsplit("/", 1)[-1], schema) if ref else schema
        if schema.get("type") == "array":
            if len(elements) == 1 and not list(elements[0]):
                text = (elements[0].text or "").strip()
                if not text:
                    return []
                if text.startswith("["):
                    return text  # a JSON list inside the element
            if len(elements) == 1:
                items = cls._group_children(elements[0]).get("item")
                if items:
                    elements = items
            return [cls._elements_to_value([e], schema.get("items", {}), defs) for e in elements]
        element = elements[0]
        if schema.get("type") == "string" and list(element):  # markup inside a text field: keep it as text
            return (element.text or "") + "".join(ET.tostring(child, encoding="unicode") for child in element)
        children = cls._group_children(element)
        if not children:
            if schema.get("type") == "object" and not (element.text or "").strip():
                return {}
            texts = [(e.text or "").strip() for e in elements]
            return texts[0] if len(texts) == 1 else texts
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", {})
        extra = extra if isinstance(extra, dict) else {}
        return {name: cls._elements_to_value(items, properties.get(name, extra), defs)
                for name, items in children.items()}


__all__ = ["XMLAdapter"]
