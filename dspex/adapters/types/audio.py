"""``dspex.Audio``: audio as a signature field, shown to the LM as one ``input_audio`` content part.

The value is base64 ``data`` plus its ``audio_format`` (``wav``, ``mp3``, ...). It is built from values in
memory only (a ``data:audio/...`` URI, raw bytes, a numpy-like array, a ``{"data", "audio_format"}`` dict,
another Audio); ``Audio.from_path`` reads a file and ``Audio.from_url`` downloads, each only when called.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import warnings
from typing import Any

import pydantic
import requests

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring

try:  # optional: arrays in formats other than WAV
    import soundfile as sf

    SF_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    sf = None
    SF_AVAILABLE = False

DEFAULT_SAMPLING_RATE = 16000


def _normalize_audio_format(audio_format: str) -> str:
    """``x-wav`` -> ``wav``: drop the ``x-`` prefix of unregistered MIME subtypes (only at the start)."""
    return audio_format[2:] if audio_format.startswith("x-") else audio_format


class Audio(Type):
    """An audio input: ``Audio("data:audio/wav;base64,...")``, ``Audio(raw_bytes, audio_format="mp3")``,
    ``Audio(array, sampling_rate=16000)``, ``Audio(data=b64, audio_format="wav")``,
    ``Audio.from_path(path)``, ``Audio.from_url(url)``, ``Audio.from_array(array, sampling_rate)``."""

    data: str
    audio_format: str

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", json_schema_extra=schema_without_docstring)

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"Audio expected at most 1 positional argument, received {len(args)}")
        if args:
            if "data" in data:
                raise TypeError("Audio received data as both a positional and keyword argument")
            value = args[0]
            sampling_rate = data.pop("sampling_rate", None)
            audio_format = data.pop("audio_format", None)
            if audio_format is not None and _carries_own_format(value):
                raise TypeError("Audio received audio_format alongside an input that already carries its format; "
                                "provide only one")
            if sampling_rate is not None and not hasattr(value, "shape"):
                raise TypeError("Audio received sampling_rate for a non-array input; it only applies to array data")
            data = {**encode_audio(value, sampling_rate=sampling_rate or DEFAULT_SAMPLING_RATE,
                                   format=audio_format), **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, values: Any) -> Any:
        return encode_audio(values)

    def format(self) -> list[dict[str, Any]]:
        return [{"type": "input_audio", "input_audio": {"data": self.data, "format": self.audio_format}}]

    @classmethod
    def from_url(cls, url: str, verify: bool = True, timeout: float | None = 30.0) -> "Audio":
        """Download ``url`` (HTTP/HTTPS only) now; the response's Content-Type must be ``audio/*``. The caller
        vouches for the URL: no host filtering is done."""
        from urllib.parse import urlparse

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ExampleError(f"Audio.from_url requires an HTTP(S) URL, received: {url!r}")
        response = requests.get(url, verify=verify, timeout=timeout)
        response.raise_for_status()
        mime = response.headers.get("Content-Type", "audio/wav").split(";")[0].strip()
        if not mime.startswith("audio/"):
            raise ExampleError(f"Unsupported MIME type for audio: {mime} (from {url})")
        return cls(data=_b64(response.content), audio_format=_normalize_audio_format(mime.split("/", 1)[1]))

    @classmethod
    def from_path(cls, file_path: str | os.PathLike) -> "Audio":
        """Read a local audio file (its format from its extension)."""
        path = os.fspath(file_path)
        if not os.path.isfile(path):
            raise ExampleError(f"File not found: {path}")
        mime, _ = mimetypes.guess_type(path)
        if not mime or not mime.startswith("audio/"):
            raise ExampleError(f"Unsupported MIME type for audio: {mime} (from the extension of {path})")
        with open(path, "rb") as fh:
            payload = fh.read()
        return cls(data=_b64(payload), audio_format=_normalize_audio_format(mime.split("/", 1)[1]))

    @classmethod
    def from_file(cls, file_path: str | os.PathLike) -> "Audio":
        """Deprecated spelling of :meth:`from_path`."""
        warnings.warn("Audio.from_file is deprecated; use Audio.from_path instead.", DeprecationWarning,
                      stacklevel=2)
        return cls.from_path(file_path)

    @classmethod
    def from_array(cls, array: Any, sampling_rate: int, format: str = "wav") -> "Audio":  # noqa: A002
        """Encode samples (``(frames,)`` or ``(frames, channels)``; floats in [-1, 1] or int16) as 16-bit
        PCM in ``format``. WAV needs only the standard library; other formats need ``soundfile``."""
        if SF_AVAILABLE:
            buffer = io.BytesIO()
            sf.write(buffer, array, sampling_rate, format=format.upper(), subtype="PCM_16")
            payload = buffer.getvalue()
        elif format.lower() == "wav":
            payload = _wav_pcm16(array, sampling_rate)
        else:
            raise ImportError(f"soundfile is required to encode audio arrays as {format!r} (WAV needs nothing)")
        return cls(data=_b64(payload), audio_format=format)

    def __str__(self) -> str:
        return self.serialize_model()

    def __repr__(self) -> str:
        return f"Audio(data=<AUDIO_BASE_64_ENCODED({len(self.data)})>, audio_format='{self.audio_format}')"


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def _carries_own_format(value: Any) -> bool:
    return (isinstance(value, Audio) or (isinstance(value, dict) and "audio_format" in value)
            or (isinstance(value, str) and value.startswith("data:audio/")))


def _sniff_audio(payload: bytes) -> str | None:
    if payload[:4] == b"RIFF" and payload[8:12] == b"WAVE":
        return "wav"
    if payload[:4] == b"fLaC":
        return "flac"
    if payload[:4] == b"OggS":
        return "ogg"
    if payload[:3] == b"ID3" or (len(payload) > 1 and payload[0] == 0xFF and payload[1] & 0xE0 == 0xE0
                                 and payload[1] & 0x06):
        return "mp3"
    if payload[4:8] == b"ftyp":
        return "m4a"
    return None


def encode_audio(audio: Any, sampling_rate: int = DEFAULT_SAMPLING_RATE,
                 format: str | None = None) -> dict:  # noqa: A002 - DSPy's keyword
    """``{"data": base64, "audio_format": ...}`` for an in-memory audio value: a ``data:audio/...`` URI, an
    Audio, such a dict, a numpy-like array (encoded at ``sampling_rate`` as ``format``, WAV by default) or
    raw bytes (``format`` when given, else recognised from the bytes' header, else WAV). A string that is
    not a data URI (a path, a URL) raises ExampleError: use ``Audio.from_path`` / ``Audio.from_url``."""
    if isinstance(audio, Audio):
        return {"data": audio.data, "audio_format": audio.audio_format}
    if isinstance(audio, dict):
        if "data" in audio and "audio_format" in audio:
            return audio
        raise ExampleError(f"an Audio given as a dict needs both 'data' and 'audio_format' keys; got keys "
                           f"{sorted(map(str, audio))}")
    if isinstance(audio, str):
        if audio.startswith("data:audio/"):
            header, comma, payload = audio.partition(",")
            mime = header[len("data:"):].split(";", 1)[0]
            _, slash, subtype = mime.partition("/")
            if not comma or not slash or not subtype:
                raise ExampleError("Malformed audio data URI: expected data:audio/<format>;base64,<data>")
            return {"data": payload, "audio_format": _normalize_audio_format(subtype)}
        raise ExampleError("String audio inputs must be data URIs (data:audio/<format>;base64,...). "
                           "Load local files with Audio.from_path() and remote resources with Audio.from_url().")
    if hasattr(audio, "shape") and not isinstance(audio, (bytes, bytearray)):
        encoded = Audio.from_array(audio, sampling_rate=sampling_rate, format=format or "wav")
        return {"data": encoded.data, "audio_format": encoded.audio_format}
    if isinstance(audio, (bytes, bytearray, memoryview)):
        payload = bytes(audio)
        return {"data": _b64(payload), "audio_format": format or _sniff_audio(payload) or "wav"}
    raise ExampleError(f"Unsupported type for an Audio value: {type(audio).__name__} (pass a data URI, bytes, "
                       "an array, or use Audio.from_path / Audio.from_url)")


def _wav_pcm16(array: Any, sampling_rate: int) -> bytes:
    import wave

    import numpy as np

    samples = np.asarray(array)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise ExampleError(f"audio samples must be shaped (frames,) or (frames, channels), got {samples.shape}")
    if np.issubdtype(samples.dtype, np.floating):
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    elif np.issubdtype(samples.dtype, np.integer) and samples.dtype.itemsize <= 2:
        pcm = samples.astype("<i2")
    elif np.issubdtype(samples.dtype, np.integer):  # wider integers: keep the top 16 bits
        pcm = (samples >> (8 * samples.dtype.itemsize - 16)).astype("<i2")
    else:
        raise ExampleError(f"audio samples must be numbers, got dtype {samples.dtype}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sampling_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
