"""dspex.Audio: sources, the input_audio part, refusals and serializations (offline: downloads are stubbed)."""

from __future__ import annotations

import base64
import io
import json
import pickle
import wave

import pydantic
import pytest

from dspex.adapters.types import Audio, split_message_content_for_custom_types
from dspex.adapters.types import audio as audio_module
from dspex.adapters.types.audio import _normalize_audio_format, encode_audio
from dspex.errors import ExampleError

WAV_HEADER = b"RIFF\x24\x00\x00\x00WAVEfmt "


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


class FakeResponse:
    def __init__(self, content: bytes, content_type: str | None) -> None:
        self.content = content
        self.headers = {"Content-Type": content_type} if content_type else {}

    def raise_for_status(self) -> None:
        pass


@pytest.mark.parametrize("given, expected", [("wav", "wav"), ("x-wav", "wav"), ("x-flac", "flac"),
                                             ("my-x-format", "my-x-format"), ("x-my-format", "my-format"),
                                             ("", ""), ("x-", "")])
def test_normalize_audio_format(given, expected):
    assert _normalize_audio_format(given) == expected


class TestConstruction:
    def test_from_a_data_uri(self):
        audio = Audio("data:audio/x-wav;base64,UklGRg==")
        assert (audio.data, audio.audio_format) == ("UklGRg==", "wav")

    def test_from_keywords(self):
        audio = Audio(data="AAAA", audio_format="mp3")
        assert (audio.data, audio.audio_format) == ("AAAA", "mp3")

    def test_from_a_dict_and_another_audio(self):
        audio = Audio({"data": "AAAA", "audio_format": "ogg"})
        assert Audio(audio) == audio
        assert Audio.model_validate({"data": "AAAA", "audio_format": "ogg"}) == audio

    def test_bytes_with_a_format(self):
        assert Audio(b"\x00\x01", audio_format="mp3") == Audio(data=b64(b"\x00\x01"), audio_format="mp3")

    @pytest.mark.parametrize("payload, fmt", [(WAV_HEADER, "wav"), (b"fLaC\x00", "flac"), (b"OggS\x00", "ogg"),
                                              (b"ID3\x04", "mp3"), (b"\x00\x01\x02\x03", "wav")])
    def test_bytes_without_a_format_are_recognised_or_wav(self, payload, fmt):
        assert Audio(payload).audio_format == fmt

    def test_an_array_is_encoded_as_wav(self):
        np = pytest.importorskip("numpy")
        samples = np.sin(np.linspace(0, 6.28, 800)).astype(np.float32)
        audio = Audio(samples, sampling_rate=8000)
        assert audio.audio_format == "wav"
        with wave.open(io.BytesIO(base64.b64decode(audio.data))) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 2, 8000, 800)

    def test_from_array_stereo_int16(self):
        np = pytest.importorskip("numpy")
        audio = Audio.from_array(np.zeros((100, 2), dtype=np.int16), sampling_rate=16000)
        with wave.open(io.BytesIO(base64.b64decode(audio.data))) as wav:
            assert (wav.getnchannels(), wav.getnframes()) == (2, 100)

    def test_from_path(self, tmp_path):
        path = tmp_path / "clip.wav"
        path.write_bytes(WAV_HEADER)
        audio = Audio.from_path(str(path))
        assert (audio.data, audio.audio_format) == (b64(WAV_HEADER), "wav")

    def test_from_file_is_a_deprecated_alias(self, tmp_path):
        path = tmp_path / "clip.wav"
        path.write_bytes(WAV_HEADER)
        with pytest.warns(DeprecationWarning, match="Audio.from_file is deprecated"):
            assert Audio.from_file(str(path)) == Audio.from_path(str(path))

    def test_from_url(self, monkeypatch):
        seen = []
        monkeypatch.setattr(audio_module.requests, "get",
                            lambda url, **kw: seen.append((url, kw)) or FakeResponse(b"abc", "audio/x-wav"))
        audio = Audio.from_url("https://example.com/a.wav", timeout=3)
        assert (audio.data, audio.audio_format) == (b64(b"abc"), "wav")
        assert seen == [("https://example.com/a.wav", {"verify": True, "timeout": 3})]


class TestRefusals:
    def test_a_string_that_is_no_data_uri(self, tmp_path):
        with pytest.raises(ValueError, match=r"Audio\.from_path"):
            Audio(str(tmp_path / "clip.wav"))

    def test_a_malformed_data_uri(self):
        with pytest.raises(ExampleError, match="Malformed audio data URI"):
            Audio("data:audio/;base64")

    def test_audio_format_with_a_value_that_has_one(self):
        with pytest.raises(TypeError, match="already carries its format"):
            Audio("data:audio/wav;base64,AAAA", audio_format="mp3")

    def test_sampling_rate_for_non_arrays(self):
        with pytest.raises(TypeError, match="sampling_rate"):
            Audio(b"abc", sampling_rate=8000)

    def test_two_positionals_or_data_twice(self):
        with pytest.raises(TypeError, match="at most 1"):
            Audio(b"a", b"b")
        with pytest.raises(TypeError, match="both a positional and keyword"):
            Audio(b"a", data="AAAA")

    def test_an_incomplete_dict(self):
        with pytest.raises(ValueError, match="'data' and 'audio_format'"):
            Audio(data="AAAA")

    def test_an_unsupported_value(self):
        with pytest.raises(ExampleError, match="Unsupported type"):
            encode_audio(3.5)

    def test_from_path_checks(self, tmp_path):
        with pytest.raises(ValueError, match="File not found"):
            Audio.from_path(str(tmp_path / "missing.wav"))
        text = tmp_path / "notes.txt"
        text.write_text("x")
        with pytest.raises(ExampleError, match="Unsupported MIME type"):
            Audio.from_path(str(text))

    def test_from_url_checks(self, monkeypatch):
        with pytest.raises(ValueError, match="HTTP"):
            Audio.from_url("file:///tmp/a.wav")
        monkeypatch.setattr(audio_module.requests, "get", lambda url, **kw: FakeResponse(b"<html>", "text/html"))
        with pytest.raises(ExampleError, match="Unsupported MIME type"):
            Audio.from_url("https://example.com/a")

    def test_frozen(self):
        with pytest.raises(pydantic.ValidationError):
            Audio(data="AAAA", audio_format="wav").audio_format = "mp3"


class TestFormatAndRoundTrips:
    def test_format(self):
        assert Audio(data="AAAA", audio_format="wav").format() == [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]

    def test_repr_hides_the_data(self):
        expected = "Audio(data=<AUDIO_BASE_64_ENCODED(4)>, audio_format='wav')"
        assert repr(Audio(data="AAAA", audio_format="wav")) == expected

    def test_serializations(self):
        audio = Audio(data="AAAA", audio_format="wav")
        assert str(audio) == audio.model_dump() == json.loads(audio.model_dump_json())
        content = split_message_content_for_custom_types([{"role": "user", "content": f"hear {audio}"}])[0]["content"]
        assert content == [{"type": "text", "text": "hear "}, *audio.format()]
        assert Audio.model_validate({"data": audio.data, "audio_format": audio.audio_format}) == audio
        assert pickle.loads(pickle.dumps(audio)) == audio
