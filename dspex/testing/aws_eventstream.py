"""AWS's event stream framing (``application/vnd.amazon.eventstream``), written the way Bedrock's
``ConverseStream`` writes it, so the simulator can stream Bedrock answers and the client reads them with
botocore's own decoder (``botocore.eventstream.EventStreamBuffer``), which checks both checksums.

A message: a prelude (total length, headers length: 4 bytes each, big-endian), the prelude's CRC32, the
headers (each: name length (1 byte), name, type 7 = string, value length (2 bytes), value), the payload
and the whole message's CRC32. A checksum, not cryptography: ``zlib.crc32``.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

STRING = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", STRING, len(raw_value)) + raw_value
    return out


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One framed message."""
    raw_headers = _headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return head + struct.pack(">I", zlib.crc32(head))


def event(kind: str, payload: Any) -> bytes:
    """A ConverseStream event (``messageStart``, ``contentBlockDelta``, ``metadata``, ...) with its JSON."""
    return message({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                   json.dumps(payload).encode())


def exception(kind: str, text: str) -> bytes:
    """An error in the middle of a stream (``throttlingException``, ...), as Bedrock sends one."""
    return message({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                   json.dumps({"message": text}).encode())


__all__ = ["message", "event", "exception"]
