"""dspex.File: sources, the file part, refusals and serializations."""

from __future__ import annotations

import base64
import json
import os
import pickle

import pydantic
import pytest

from dspex.adapters.types import File, split_message_content_for_custom_types
from dspex.adapters.types.file import encode_file_to_dict
from dspex.errors import ExampleError

TEXT_URI = "data:text/plain;base64,aGVsbG8="


class TestConstruction:
    def test_from_path(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("hello")
        file = File.from_path(str(path))
        assert file.file_data == "data:text/plain;base64," + base64.b64encode(b"hello").decode()
        assert file.filename == "notes.txt" and file.file_id is None

    def test_from_path_overrides(self, tmp_path):
        path = tmp_path / "blob"
        path.write_bytes(b"\x00")
        assert File.from_path(path).file_data.startswith("data:application/octet-stream;base64,")
        file = File.from_path(str(path), filename="named.bin", mime_type="application/x-custom")
        assert file.filename == "named.bin" and file.file_data.startswith("data:application/x-custom;base64,")

    def test_from_bytes(self):
        file = File.from_bytes(b"pdf!", filename="a.pdf", mime_type="application/pdf")
        assert file.file_data == "data:application/pdf;base64," + base64.b64encode(b"pdf!").decode()
        assert File.from_bytes(b"x").file_data.startswith("data:application/octet-stream;base64,")
        assert File.from_bytes(b"x").filename is None

    def test_from_file_id(self):
        file = File.from_file_id("file-abc", filename="doc.pdf")
        assert (file.file_id, file.filename, file.file_data) == ("file-abc", "doc.pdf", None)

    def test_positional_sources(self):
        assert File(b"raw", filename="r.txt").file_data.startswith("data:application/octet-stream;base64,")
        assert File(TEXT_URI).file_data == TEXT_URI
        assert File({"file_id": "file-1"}).file_id == "file-1"
        assert File(File.from_file_id("file-2")).file_id == "file-2"

    def test_keywords_and_validation(self):
        file = File(file_data=TEXT_URI, file_id="file-1", filename="t.txt")
        assert File.model_validate({"file_data": TEXT_URI, "file_id": "file-1", "filename": "t.txt"}) == file
        assert File.model_validate(b"raw").file_data.startswith("data:application/octet-stream")


class TestRefusals:
    def test_a_path_string(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("x")
        with pytest.raises(ValueError, match=r"File\.from_path"):
            encode_file_to_dict(str(path))
        with pytest.raises(ValueError, match=r"File\.from_path"):
            File(str(path))

    def test_a_dict_without_any_field(self):
        with pytest.raises(ValueError, match="must contain at least one"):
            File(invalid="dict")
        with pytest.raises(ExampleError, match="must contain at least one"):
            encode_file_to_dict({"name": "x"})

    def test_a_conflicting_keyword(self):
        with pytest.raises(TypeError, match="file_data"):
            File(b"raw", file_data=TEXT_URI)

    def test_unsupported_values(self):
        with pytest.raises(ExampleError, match="Unsupported file input type: int"):
            encode_file_to_dict(3)
        with pytest.raises(ExampleError, match="expects bytes"):
            File.from_bytes("text")

    def test_missing_file(self):
        with pytest.raises(ValueError, match="File not found"):
            File.from_path("/nonexistent/path/file.txt")

    def test_frozen(self):
        with pytest.raises(pydantic.ValidationError):
            File.from_bytes(b"x").file_data = TEXT_URI


class TestFormatAndRoundTrips:
    def test_format_keeps_only_the_set_fields(self):
        assert File.from_file_id("file-1").format() == [{"type": "file", "file": {"file_id": "file-1"}}]
        file = File(file_data=TEXT_URI, file_id="file-1", filename="t.txt")
        assert file.format() == [{"type": "file", "file": {"file_data": TEXT_URI, "file_id": "file-1",
                                                            "filename": "t.txt"}}]

    def test_repr(self):
        assert repr(File.from_bytes(b"Test content", filename="t.txt")) == \
            "File(file_data=<DATA_URI(application/octet-stream, 16 chars)>, filename='t.txt')"
        assert repr(File.from_file_id("file-abc", filename="doc.pdf")) == "File(file_id='file-abc', filename='doc.pdf')"

    def test_serializations(self):
        files = [File.from_bytes(b"one", filename="1.txt"), File.from_file_id("file-2")]
        rendered = json.dumps([f.model_dump() for f in files])
        content = split_message_content_for_custom_types([{"role": "user", "content": rendered}])[0]["content"]
        assert [p for p in content if p["type"] == "file"] == [*files[0].format(), *files[1].format()]
        for file in files:
            assert str(file) == file.model_dump()
            fields = {k: v for k, v in file.format()[0]["file"].items()}
            assert File(**fields) == file
            assert pickle.loads(pickle.dumps(file)) == file

    def test_file_name_from_path_is_the_base_name(self, tmp_path):
        path = tmp_path / "sub"
        path.mkdir()
        (path / "x.md").write_text("# x")
        assert File.from_path(os.path.join(str(path), "x.md")).filename == "x.md"
