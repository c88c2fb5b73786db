"""dspex.experimental: Citations and Document."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pydantic
import pytest

from dspex.adapters.types import split_message_content_for_custom_types
from dspex.experimental import Citations, Document

ONE = {"cited_text": "The sky is blue", "document_index": 0, "document_title": "Weather", "start_char_index": 0,
       "end_char_index": 15, "supported_text": "Blue sky."}


class TestDocument:
    def test_format(self):
        doc = Document(data="The sky is blue.", title="Colors", context="a guide")
        assert doc.format() == [{"type": "document",
                                 "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
                                 "citations": {"enabled": True}, "title": "Colors", "context": "a guide"}]
        assert Document(data="x").format()[0].keys() == {"type", "source", "citations"}

    def test_sources_and_refusals(self):
        assert Document.model_validate("plain text").data == "plain text"
        assert Document(data="x", media_type="application/pdf").media_type == "application/pdf"
        with pytest.raises(pydantic.ValidationError):
            Document(data=123)
        with pytest.raises(pydantic.ValidationError):
            Document(data="x", media_type="image/png")
        with pytest.raises(ValueError):
            Document.model_validate(3)

    def test_str_and_round_trip(self):
        doc = Document(data="abc", title="T")
        assert str(doc) == "Document('T': 3 chars)" and str(Document(data="abcd")) == "Document(4 chars)"
        content = split_message_content_for_custom_types([{"role": "user", "content": doc.model_dump()}])[0]["content"]
        assert content == doc.format()
        assert Document.model_validate({"data": "abc", "title": "T"}) == doc
        assert pickle.loads(pickle.dumps(doc)) == doc


class TestCitations:
    def test_citation_fields_and_format(self):
        citation = Citations.Citation(**ONE)
        assert citation.type == "char_location"
        assert citation.format() == {"type": "char_location", **ONE}
        bare = Citations.Citation(cited_text="x", document_index=1, start_char_index=0, end_char_index=1)
        assert "document_title" not in bare.format() and "supported_text" not in bare.format()
        with pytest.raises(pydantic.ValidationError):
            Citations.Citation(cited_text="text")

    def test_shapes(self):
        expected = Citations(citations=[Citations.Citation(**ONE)])
        assert Citations.from_dict_list([ONE]) == expected
        assert Citations.model_validate([ONE]) == expected
        assert Citations.model_validate({"citations": [ONE]}) == expected
        assert Citations.model_validate(ONE) == expected
        with pytest.raises(ValueError):
            Citations.model_validate({"nothing": 1})

    def test_list_like(self):
        citations = Citations.from_dict_list([ONE, {**ONE, "document_index": 1}])
        assert len(citations) == 2 and citations[1].document_index == 1
        assert [c.document_index for c in citations] == [0, 1]
        assert citations.format()[1]["document_index"] == 1

    def test_nested_and_pickled(self):
        class Wrapper(pydantic.BaseModel):
            citations: Citations

        wrapper = Wrapper(citations=Citations.from_dict_list([ONE]))
        assert wrapper.citations[0].cited_text == "The sky is blue"
        assert pickle.loads(pickle.dumps(wrapper.citations)) == wrapper.citations

    def test_native_hooks(self):
        class Sig:
            def delete(self, name):
                return ("without", name)

        assert Citations.adapt_to_native_lm_feature(Sig(), "citations", SimpleNamespace(model="anthropic/claude"),
                                                    {}) == ("without", "citations")
        sig = Sig()
        assert Citations.adapt_to_native_lm_feature(sig, "citations", SimpleNamespace(model="openai/gpt"), {}) is sig
        assert Citations.parse_lm_response({"citations": [ONE]}) == Citations.from_dict_list([ONE])
        assert Citations.parse_lm_response({"text": "x"}) is None and Citations.parse_lm_response("x") is None
        delta = SimpleNamespace(provider_specific_fields={"citation": ONE})
        assert Citations.parse_stream_chunk(SimpleNamespace(choices=[SimpleNamespace(delta=delta)])) == \
            Citations.from_dict_list([ONE])
        assert Citations.parse_stream_chunk(SimpleNamespace(choices=[])) is None
        assert Citations.is_streamable()
