"""Reading `replay`'s SOURCE: JSON lines, plain or gzip, a UTF-8 BOM tolerated, checked first.

What is plainly not JSON lines of events (binary data, one pretty-printed JSON document) is
refused before anything runs, with what to do instead.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from typing import BinaryIO, Final

from processor.adapters.providers import Provider
from processor.errors import SendguardError

PROVIDER_HINT: Final = "if it holds a provider's webhook payloads, add --provider " + "|".join(
    p.value for p in Provider
)
_GZIP_MAGIC: Final = b"\x1f\x8b"
_BOM: Final = codecs.BOM_UTF8
_HEAD: Final = 64 * 1024
"""How much of SOURCE is looked at before the replay starts."""
_OPENERS: Final = ("{", "[")


class UnusableSourceError(Exception):
    """SOURCE is plainly not what `replay` reads; the message says why and what to do."""


class UnreadableSourceError(SendguardError):
    """SOURCE broke off while being read (a corrupt gzip stream)."""


def open_source(stream: BinaryIO, name: str, *, provider: bool) -> BinaryIO:
    """`stream` as plain bytes: gunzipped if it is gzip, without a UTF-8 BOM, checked.

    Raises UnusableSourceError when the start of SOURCE shows it cannot be JSON lines (or, with
    `provider`, JSON): binary data, or (without `provider`) one JSON document over many lines.
    """
    head = _read_head(stream)
    if head.startswith(_GZIP_MAGIC):
        gunzip = gzip.GzipFile(fileobj=io.BufferedReader(_Prefixed(head, stream)), mode="rb")
        stream = io.BufferedReader(_Guarded(gunzip, name))
        head = _read_head(stream)
    head = head.removeprefix(_BOM)
    _check_text(head, name)
    if not provider:
        _check_lines(head, name)
    return io.BufferedReader(_Prefixed(head, stream))


def _read_head(stream: BinaryIO) -> bytes:
    """Up to _HEAD bytes, without waiting for more than one read (stdin may be a terminal)."""
    read1 = getattr(stream, "read1", None)
    chunk: bytes = read1(_HEAD) if read1 is not None else stream.read(_HEAD)
    return chunk


def _check_text(head: bytes, name: str) -> None:
    try:
        # Not final: the head may end in the middle of a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        binary = True
    else:
        binary = b"\x00" in head
    if binary:
        raise UnusableSourceError(
            f"{name} is not text: replay reads UTF-8 JSON lines of delivery events "
            "(or their gzip), one event per line"
        )


def _check_lines(head: bytes, name: str) -> None:
    """Refuse one JSON document spread over lines: its first line is not a whole value."""
    first = next((line.strip() for line in head.splitlines() if line.strip()), b"")
    text = first.decode(errors="replace")
    pretty = text in {"{", "[", "[{"} or (text[:1] in _OPENERS and text[-1:] in {",", "{", "["})
    if pretty:
        raise UnusableSourceError(
            f"{name} holds one JSON document over several lines, not JSON lines (one event "
            f"per line, as `sendguard normalize` prints them); {PROVIDER_HINT}"
        )


class _Prefixed(io.RawIOBase):
    """`head`, then the rest of `stream`: the bytes looked at are not lost."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        """It is."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # RawIOBase's
        """From the head while it lasts, then one read of the stream."""
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size], self._head = self._head[:size], self._head[size:]
            return size
        read1 = getattr(self._stream, "read1", None)
        data: bytes = read1(len(buffer)) if read1 is not None else self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Guarded(io.RawIOBase):
    """A gzip stream whose corruption is reported as UnreadableSourceError, naming SOURCE."""

    def __init__(self, stream: gzip.GzipFile, name: str) -> None:
        self._stream = stream
        self._name = name

    def readable(self) -> bool:
        """It is."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # RawIOBase's
        """Decompressed bytes; a corrupt or truncated stream raises UnreadableSourceError."""
        try:
            data = self._stream.read1(len(buffer))
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableSourceError(f"{self._name}: corrupt gzip data: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)
