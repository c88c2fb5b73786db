"""dspex.Image: every source, the content part it becomes, what it refuses, and its serializations.
Nothing here touches the network: downloads go through a stub of ``requests.get``."""

from __future__ import annotations

import base64
import builtins
import io
import json
import pickle
import struct
import warnings
import zlib

import pydantic
import pytest

from dspex.adapters.types import Image, split_message_content_for_custom_types
from dspex.adapters.types import image as image_module
from dspex.adapters.types.image import PIL_AVAILABLE, encode_image, is_image, is_url
from dspex.errors import ExampleError

needs_pil = pytest.mark.skipif(not PIL_AVAILABLE, reason="Pillow is not installed in this environment")

URL = "https://example.com/dog.jpg"


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


def data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


class FakeResponse:
    def __init__(self, content: bytes, content_type: str | None) -> None:
        self.content = content
        self.headers = {"Content-Type": content_type} if content_type is not None else {}

    def raise_for_status(self) -> None:
        pass


@pytest.fixture
def fake_get(monkeypatch):
    calls = []

    def install(content: bytes = b"imgbytes", content_type: str | None = "image/png"):
        def get(url, **kwargs):
            calls.append((url, kwargs))
            return FakeResponse(content, content_type)

        monkeypatch.setattr(image_module.requests, "get", get)
        return calls

    return install


class TestConstruction:
    @pytest.mark.parametrize("source", [URL, "http://example.com/a.png", "gs://bucket/a.png",
                                        "data:image/png;base64,iVBORw0KGgo="])
    def test_urls_and_data_uris_are_kept_as_they_are(self, source):
        assert Image(source).url == source
        assert Image(url=source).url == source
        assert Image({"url": source}).url == source

    def test_surrounding_whitespace_is_stripped(self):
        assert Image(url=f"  {URL} ").url == URL

    def test_from_another_image(self):
        assert Image(Image(URL)).url == URL

    def test_raw_bytes_become_a_data_uri_of_the_sniffed_type(self):
        png = tiny_png()
        assert Image(png).url == data_uri("image/png", png)
        for payload, mime in [(b"\xff\xd8\xff\xe0rest", "image/jpeg"), (b"GIF89a....", "image/gif"),
                              (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"), (b"BM\x00\x00", "image/bmp")]:
            assert Image(payload).url == data_uri(mime, payload)

    def test_bytearray_too(self):
        assert Image(bytearray(tiny_png())).url == data_uri("image/png", tiny_png())

    def test_validation_accepts_a_dict_and_a_string(self):
        class Holder(pydantic.BaseModel):
            image: Image

        assert Holder(image={"url": URL}).image == Image(URL)
        assert Holder.model_validate({"image": Image(URL)}).image.url == URL


class TestRefusals:
    def test_a_local_path_is_refused_without_touching_the_filesystem(self, tmp_path, monkeypatch):
        path = tmp_path / "photo.png"
        path.write_bytes(tiny_png())

        def no_open(*args, **kwargs):
            raise AssertionError("Image(path) opened a file")

        monkeypatch.setattr(builtins, "open", no_open)
        with pytest.raises(ExampleError, match=r"Image\.from_path"):
            Image(str(path))

    def test_an_unrecognized_string(self):
        with pytest.raises(ValueError, match="Unrecognized image string"):
            Image("not a url")

    def test_an_unsupported_value(self):
        with pytest.raises(ExampleError, match="Unsupported image type: int"):
            Image(42)

    def test_bytes_that_are_no_image(self):
        with pytest.raises(ExampleError, match="could not be identified as an image"):
            Image(b"not an image at all")

    def test_source_and_url_together(self):
        with pytest.raises(TypeError, match="both `source` and `url`"):
            Image(URL, url=URL)

    def test_source_is_positional_only(self):
        with pytest.raises(pydantic.ValidationError, match="source"):
            Image(source=URL)

    def test_unknown_fields_are_refused(self):
        with pytest.raises(pydantic.ValidationError, match="extra"):
            Image(url=URL, caption="x")

    def test_download_needs_a_positional_source(self, fake_get):
        calls = fake_get()
        with pytest.raises(TypeError, match="positional image source"):
            Image(url=URL, download=True)
        assert calls == []

    def test_validated_data_never_downloads(self, fake_get):
        calls = fake_get()
        with pytest.raises((TypeError, pydantic.ValidationError)):  # pydantic routes the dict into __init__
            Image.model_validate({"url": URL, "download": True})
        assert calls == []

    def test_it_is_frozen(self):
        image = Image(URL)
        with pytest.raises(pydantic.ValidationError):
            image.url = "https://example.com/other.png"


class TestFactories:
    def test_from_path_reads_a_data_uri(self, tmp_path):
        path = tmp_path / "dot.png"
        path.write_bytes(tiny_png())
        assert Image.from_path(str(path)).url == data_uri("image/png", tiny_png())
        assert Image.from_path(path).url == data_uri("image/png", tiny_png())  # a PathLike too

    def test_from_path_keeps_any_typed_file(self, tmp_path):
        path = tmp_path / "doc.pdf"
        path.write_bytes(b"%PDF-1.4 ...")
        assert Image.from_path(str(path)).url.startswith("data:application/pdf;base64,")

    def test_from_path_missing_file(self):
        with pytest.raises(ValueError, match="File not found"):
            Image.from_path("/nonexistent/image.png")

    def test_from_path_unknown_extension(self, tmp_path):
        path = tmp_path / "blob.unknownext"
        path.write_bytes(b"x")
        with pytest.raises(ExampleError, match="MIME type"):
            Image.from_path(str(path))

    def test_from_path_does_not_warn(self, tmp_path):
        path = tmp_path / "dot.png"
        path.write_bytes(tiny_png())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Image.from_path(str(path))

    def test_from_file_is_a_deprecated_alias(self, tmp_path):
        path = tmp_path / "dot.png"
        path.write_bytes(tiny_png())
        with pytest.warns(DeprecationWarning, match="Image.from_file is deprecated"):
            assert Image.from_file(str(path)).url == data_uri("image/png", tiny_png())

    def test_from_url_downloads_with_the_response_type(self, fake_get):
        calls = fake_get(b"pngdata", "image/png; charset=binary")
        image = Image.from_url(URL, verify=False, timeout=5)
        assert image.url == data_uri("image/png", b"pngdata")
        assert calls == [(URL, {"verify": False, "timeout": 5})]

    def test_from_url_guesses_the_type_from_the_url_without_a_header(self, fake_get):
        fake_get(b"jpgdata", None)
        assert Image.from_url(URL).url == data_uri("image/jpeg", b"jpgdata")

    def test_from_url_without_any_type(self, fake_get):
        fake_get(b"x", None)
        with pytest.raises(ExampleError, match="MIME type"):
            Image.from_url("https://example.com/blob")

    @pytest.mark.parametrize("url", ["ftp://example.com/a.png", "gs://bucket/a.png", "/local/a.png"])
    def test_from_url_requires_http(self, url, fake_get):
        calls = fake_get()
        with pytest.raises(ValueError, match="HTTP"):
            Image.from_url(url)
        assert calls == []

    def test_legacy_download_true_fetches_with_a_warning(self, fake_get):
        fake_get(b"pngdata", "image/png")
        with pytest.warns(DeprecationWarning, match="`download` and `verify`"):
            image = Image(URL, download=True)
        assert base64.b64decode(image.url.split(",", 1)[1]) == b"pngdata"

    @pytest.mark.parametrize("kwargs", [{"download": False}, {"verify": False}])
    def test_legacy_arguments_without_download_keep_the_url(self, kwargs, fake_get):
        calls = fake_get()
        with pytest.warns(DeprecationWarning, match="`download` and `verify`"):
            assert Image(URL, **kwargs).url == URL
        assert calls == []


class TestFormat:
    def test_one_image_url_part(self):
        assert Image(URL).format() == [{"type": "image_url", "image_url": {"url": URL}}]

    def test_str_is_the_marked_block(self):
        assert str(Image(URL)) == ('<<CUSTOM-TYPE-START-IDENTIFIER>>[{"type": "image_url", "image_url": {"url": '
                                   '"https://example.com/dog.jpg"}}]<<CUSTOM-TYPE-END-IDENTIFIER>>')

    def test_repr(self):
        assert repr(Image(URL)) == "Image(url='https://example.com/dog.jpg')"
        encoded = Image(tiny_png())
        payload = encoded.url.split("base64,")[1]
        assert repr(encoded) == f"Image(url=data:image/png;base64,<IMAGE_BASE_64_ENCODED({len(payload)})>)"

    def test_rendered_message_splits_back_into_the_part(self):
        messages = [{"role": "user", "content": f"[[ ## image ## ]]\n{Image(URL)}\n\nRespond."}]
        content = split_message_content_for_custom_types(messages)[0]["content"]
        assert content[1] == Image(URL).format()[0]
        assert [p["type"] for p in content] == ["text", "image_url", "text"]


class TestRoundTrips:
    def test_model_dump_is_the_marked_block_and_the_fields_round_trip(self):
        image = Image(tiny_png())
        assert image.model_dump() == str(image)
        assert json.loads(image.model_dump_json()) == str(image)
        assert Image.model_validate({"url": image.url}) == image
        assert Image(**{"url": image.url}) == image

    def test_inside_a_model_through_json(self):
        class Holder(pydantic.BaseModel):
            images: list[Image]

        holder = Holder(images=[Image(URL), Image(tiny_png())])
        dumped = holder.model_dump_json()
        parts = split_message_content_for_custom_types([{"role": "user", "content": dumped}])[0]["content"]
        assert [p for p in parts if p["type"] == "image_url"] == [*Image(URL).format(),
                                                                   *Image(tiny_png()).format()]

    def test_pickle(self):
        image = Image(tiny_png())
        assert pickle.loads(pickle.dumps(image)) == image

    def test_hashable_as_frozen(self):
        assert len({Image(URL), Image(URL)}) == 1


class TestHelpers:
    def test_encode_image(self):
        assert encode_image(URL) == URL
        assert encode_image({"url": URL}) == URL
        assert encode_image(Image(URL)) == URL
        assert encode_image(tiny_png()) == data_uri("image/png", tiny_png())

    def test_is_url_and_is_image(self):
        assert is_url(URL) and is_url("gs://b/k") and not is_url("file:///x") and not is_url("dog.jpg")
        assert is_image(URL) and is_image("data:image/png;base64,AA==") and not is_image("dog.jpg")


@needs_pil
class TestPIL:
    def test_a_pil_image_becomes_a_png_data_uri(self):
        from PIL import Image as PILImage

        image = Image(PILImage.new("RGB", (6, 3), color="red"))
        assert image.url.startswith("data:image/png;base64,")
        decoded = PILImage.open(io.BytesIO(base64.b64decode(image.url.split(",", 1)[1])))
        assert decoded.size == (6, 3)

    def test_a_pil_image_keeps_its_format(self):
        from PIL import Image as PILImage

        buffer = io.BytesIO()
        PILImage.new("RGB", (4, 4), color="blue").save(buffer, format="JPEG")
        opened = PILImage.open(io.BytesIO(buffer.getvalue()))
        assert Image(opened).url.startswith("data:image/jpeg;base64,")
        assert is_image(opened)

    def test_from_pil_is_a_deprecated_alias(self):
        from PIL import Image as PILImage

        with pytest.warns(DeprecationWarning, match="from_PIL"):
            assert Image.from_PIL(PILImage.new("RGB", (2, 2))).url.startswith("data:image/png")

    def test_formats_only_pil_knows(self):
        from PIL import Image as PILImage

        buffer = io.BytesIO()
        PILImage.new("RGB", (2, 2)).save(buffer, format="PPM")
        assert Image(buffer.getvalue()).url.startswith("data:image/")

    def test_unidentifiable_bytes(self):
        with pytest.raises(ValueError, match="could not be identified as an image"):
            Image(b"still not an image")
