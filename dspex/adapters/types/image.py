"""``dspex.Image``: an image (or any document a vision model reads by URL) as a signature field.

The value is one string, ``url``: a remote reference (``http``, ``https``, ``gs``) or a ``data:`` URI.
Building an Image never reads a file or the network: ``Image.from_path`` reads a local file and
``Image.from_url`` downloads, each only when called. It is shown to the LM as one content part,
``{"type": "image_url", "image_url": {"url": ...}}``.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import warnings
from typing import Any
from urllib.parse import urlparse

import pydantic
import requests

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring

try:  # optional: PIL images as values, and image formats the signatures below do not know
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    PIL_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    PILImage = None
    UnidentifiedImageError = OSError
    PIL_AVAILABLE = False

_UNSET: Any = object()

# leading bytes -> MIME type, for raw image bytes (kept as they are: no re-encoding, no loss)
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
)


class Image(Type):
    """An image input: ``Image("https://...")``, ``Image("data:image/png;base64,...")``,
    ``Image(png_bytes)``, ``Image(pil_image)``, ``Image(url=...)``, ``Image.from_path(path)``,
    ``Image.from_url(url)`` (downloads it into a data URI)."""

    url: str

    model_config = pydantic.ConfigDict(frozen=True, str_strip_whitespace=True, validate_assignment=True,
                                       extra="forbid", json_schema_extra=schema_without_docstring)

    def __init__(self, source: Any = None, /, *, download: Any = _UNSET, verify: Any = _UNSET, **data: Any) -> None:
        legacy = download is not _UNSET or verify is not _UNSET
        if legacy and source is None:
            # only a developer's positional call may download: data validated into an Image (an LM's
            # answer, a loaded file) must never make this process fetch a URL it names
            raise TypeError("`download` and `verify` are only accepted with a positional image source; "
                            "use Image.from_url(url, verify=...) to download an image")
        if legacy:
            warnings.warn("The `download` and `verify` arguments of Image() are deprecated: use "
                          "Image.from_url(url, verify=...) to download, Image.from_path(path) for a local file",
                          DeprecationWarning, stacklevel=2)
        if source is not None:
            if "url" in data:
                raise TypeError("Image received both `source` and `url`; provide only one image source")
            is_url_dict = isinstance(source, dict) and set(source) == {"url"}
            data["url"] = source["url"] if is_url_dict else source
        if "url" in data:
            url = data["url"]
            if download is not _UNSET and download and isinstance(url, str) and _is_http_url(url):
                data["url"] = _download_as_data_uri(url, verify=True if verify is _UNSET else verify)
            else:
                data["url"] = encode_image(url)
        super().__init__(**data)

    def format(self) -> list[dict[str, Any]]:
        try:
            url = encode_image(self.url)
        except ExampleError as exc:
            raise ExampleError(f"cannot format the image for the LM: {exc}") from None
        return [{"type": "image_url", "image_url": {"url": url}}]

    @classmethod
    def from_url(cls, url: str, verify: bool = True, timeout: float | None = 30.0) -> "Image":
        """Download ``url`` (HTTP/HTTPS only) now and keep it as a data URI (MIME type from the response's
        Content-Type, else from the URL). The caller vouches for the URL: no host filtering is done."""
        if not _is_http_url(url):
            raise ExampleError(f"Image.from_url requires an HTTP(S) URL, received: {url!r}")
        return cls(_download_as_data_uri(url, verify=verify, timeout=timeout))

    @classmethod
    def from_path(cls, file_path: str | os.PathLike) -> "Image":
        """Read a local file into a data URI (MIME type from its extension)."""
        path = os.fspath(file_path)
        if not os.path.isfile(path):
            raise ExampleError(f"File not found: {path}")
        mime, _ = mimetypes.guess_type(path)
        if mime is None:
            raise ExampleError(f"Could not determine the MIME type of {path} from its extension; "
                               "rename it (.png, .jpg, ...) or pass Image(data_uri)")
        with open(path, "rb") as fh:
            return cls(_data_uri(mime, fh.read()))

    @classmethod
    def from_file(cls, file_path: str | os.PathLike) -> "Image":
        """Deprecated spelling of :meth:`from_path`."""
        warnings.warn("Image.from_file is deprecated; use Image.from_path instead.", DeprecationWarning,
                      stacklevel=2)
        return cls.from_path(file_path)

    @classmethod
    def from_PIL(cls, pil_image: Any) -> "Image":  # noqa: N802 - DSPy's spelling
        """Deprecated spelling of ``Image(pil_image)``."""
        warnings.warn("Image.from_PIL is deprecated; use Image(pil_image) instead.", DeprecationWarning,
                      stacklevel=2)
        return cls(pil_image)

    def __str__(self) -> str:
        return self.serialize_model()

    def __repr__(self) -> str:
        if self.url.startswith("data:") and "base64," in self.url:
            header, _, payload = self.url.partition("base64,")
            subtype = header.split(";")[0].split("/")[-1]
            return f"Image(url=data:image/{subtype};base64,<IMAGE_BASE_64_ENCODED({len(payload)})>)"
        return f"Image(url='{self.url}')"


def is_url(text: str) -> bool:
    """An ``http``/``https``/``gs`` URL with a host."""
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https", "gs") and bool(parsed.netloc)


def _is_http_url(text: str) -> bool:
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def is_image(value: Any) -> bool:
    """A value an Image can be built from without reading anything: a PIL image, a data URI, a URL."""
    if PIL_AVAILABLE and isinstance(value, PILImage.Image):
        return True
    return isinstance(value, str) and (value.startswith("data:") or is_url(value))


def encode_image(image: Any) -> str:
    """The ``url`` an Image keeps for ``image``: a data URI or remote URL string as it is, raw bytes or a
    PIL image as a base64 data URI, an ``Image`` or ``{"url": ...}`` as its URL. Never reads a file or
    the network: a local path is refused (use ``Image.from_path``). Bad input raises ExampleError."""
    if isinstance(image, Image):
        return image.url
    if isinstance(image, dict) and "url" in image:
        return encode_image(image["url"])
    if isinstance(image, str):
        if image.startswith("data:") or is_url(image):
            return image
        shown = image if len(image) <= 100 else image[:100] + "..."
        raise ExampleError(f"Unrecognized image string: {shown!r}: expected an http(s)/gs URL or a data URI. "
                           "Local files must be loaded with Image.from_path().")
    if PIL_AVAILABLE and isinstance(image, PILImage.Image):
        return _encode_pil(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _encode_bytes(bytes(image))
    raise ExampleError(f"Unsupported image type: {type(image).__name__} (pass a URL, a data URI, bytes, a PIL "
                       "image, or use Image.from_path)")


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _sniff_image(payload: bytes) -> str | None:
    for prefix, mime in _SIGNATURES:
        if payload.startswith(prefix):
            return mime
    if payload[:4] == b"RIFF" and payload[8:12] == b"WEBP":
        return "image/webp"
    if payload[4:8] == b"ftyp" and payload[8:12] in (b"avif", b"avis"):
        return "image/avif"
    if payload[4:8] == b"ftyp" and payload[8:12] in (b"heic", b"heix", b"mif1"):
        return "image/heic"
    return None


def _encode_bytes(payload: bytes) -> str:
    mime = _sniff_image(payload)
    if mime is not None:
        return _data_uri(mime, payload)
    if PIL_AVAILABLE:  # a format only PIL knows: let it identify (and re-save) the image
        try:
            return _encode_pil(PILImage.open(io.BytesIO(payload)))
        except (UnidentifiedImageError, OSError) as exc:
            raise ExampleError(f"Bytes could not be identified as an image: {exc}") from None
    raise ExampleError("Bytes could not be identified as an image (not PNG, JPEG, GIF, WebP, BMP, TIFF, ICO, "
                       "AVIF or HEIC; install Pillow for other formats)")


def _encode_pil(image: Any) -> str:
    fmt = image.format or "PNG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    mime = PILImage.MIME.get(fmt.upper()) or mimetypes.guess_type(f"x.{fmt.lower()}")[0]
    if mime is None:
        raise ExampleError(f"Could not determine the MIME type of image format {fmt!r}")
    return _data_uri(mime, buffer.getvalue())


def _download_as_data_uri(url: str, verify: bool = True, timeout: float | None = 30.0) -> str:
    response = requests.get(url, verify=verify, timeout=timeout)
    response.raise_for_status()
    mime = response.headers.get("Content-Type", "").split(";")[0].strip() or mimetypes.guess_type(url)[0]
    if not mime:
        raise ExampleError(f"Could not determine the MIME type of {url} (no Content-Type, no known extension)")
    return _data_uri(mime, response.content)
