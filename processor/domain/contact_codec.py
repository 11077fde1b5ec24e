"""The compact binary codec of contact states, as Redis stores them; reads earlier versions.

Pure. The Lua merge in adapters/redis_contacts.py writes the same bytes.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from processor.domain.contact_state import MAX_COUNTED_SENDS, ContactState, stored_seconds
from schemas.audience import ConsentState

# Codec, version 3, big-endian: a 14-byte head, then the recent sends.
#   B version | B flags | I last send (epoch s, 0 = None) | I last engaged (same)
#   | I unsubscribed stated at (same)
#   then `recent_sends`, newest first, each an unsigned LEB128 varint of its seconds before the
#   previous one (the first: before the last send); the value's length says how many. Sends
#   days apart take 3 bytes each: 16 unengaged sends fit the 64 bytes up to which Redis keeps
#   a small hash compact (listpack).
# flags: bits 0-1 consent (0 unknown, 1 granted, 2 revoked), 2 unsubscribed, 3 deleted,
#        4 hard bounced, 5 complained, 6 ever engaged, 7 reserved (0).
# Versions 1 (12 bytes) and 2 (16) are still read, as migrated: they held a count of sends
# since the engagement, uint16, after the last engaged time (and v2 then the statement time).
# The count becomes that many distinct seconds back from the last send, all after the last
# engagement: the latest times they can have, so a late engagement clears no more of them than
# it would have cleared of the real ones. Version 1 has no statement time.
_CODEC_VERSION = 3
_HEAD = struct.Struct(">BBIII")
_LEGACY = {1: struct.Struct(">BBIIH"), 2: struct.Struct(">BBIIHI")}
_MAX_VARINT_BYTES = 5
"""A uint32 in LEB128."""
_MORE = 0x80
"""A LEB128 byte with this bit set is followed by more of its number (7 bits per byte)."""
_LOW7 = 0x7F

_CONSENT_CODE: dict[ConsentState | None, int] = {
    None: 0,
    ConsentState.GRANTED: 1,
    ConsentState.REVOKED: 2,
}
_CONSENT_BY_CODE = {code: consent for consent, code in _CONSENT_CODE.items()}
_CONSENT_MASK = 0b11
_UNSUBSCRIBED = 1 << 2
_DELETED = 1 << 3
_HARD_BOUNCED = 1 << 4
_COMPLAINED = 1 << 5
_EVER_ENGAGED = 1 << 6
_RESERVED = 1 << 7


def _encode_instant(moment: datetime | None) -> int:
    return 0 if moment is None else stored_seconds(moment)


def _decode_instant(seconds: int) -> datetime | None:
    return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= _MORE:
        out.append(value & _LOW7 | _MORE)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_contact(state: ContactState) -> bytes:
    """`state` as stored (head and recent sends); times are stored as by `stored_instant`."""
    flags = _CONSENT_CODE[state.consent]
    for bit, on in (
        (_UNSUBSCRIBED, state.unsubscribed),
        (_DELETED, state.deleted),
        (_HARD_BOUNCED, state.hard_bounced),
        (_COMPLAINED, state.complained),
        (_EVER_ENGAGED, state.ever_engaged),
    ):
        if on:
            flags |= bit
    last_send = _encode_instant(state.last_marketing_send_at)
    parts = [
        _HEAD.pack(
            _CODEC_VERSION,
            flags,
            last_send,
            _encode_instant(state.last_engaged_at),
            _encode_instant(state.unsubscribed_stated_at),
        )
    ]
    previous = last_send
    for sent_at in state.recent_sends:
        seconds = _encode_instant(sent_at)
        parts.append(_varint(previous - seconds))
        previous = seconds
    return b"".join(parts)


def _decode_sends(data: bytes, last_send: int) -> list[int]:
    """The epoch seconds of the recent sends a version 3 value holds after its head."""
    sends: list[int] = []
    previous, value, shift, size = last_send, 0, 0, 0
    for byte in data[_HEAD.size :]:
        value |= (byte & _LOW7) << shift
        shift, size = shift + 7, size + 1
        if size > _MAX_VARINT_BYTES:
            raise ValueError("contact state send time does not fit 32 bits")
        if byte < _MORE:
            previous -= value
            if previous < 1 or (sends and value == 0):
                raise ValueError("contact state send times must be distinct, after 1970")
            sends.append(previous)
            value, shift, size = 0, 0, 0
    if size:
        raise ValueError("contact state ends inside a send time")
    return sends


def _legacy_sends(count: int, last_send: int, last_engaged: int) -> list[int]:
    """Version 1 and 2's count of sends since the engagement as the latest times they can have."""
    stop = max(last_send - min(count, MAX_COUNTED_SENDS), last_engaged)
    return list(range(last_send, stop, -1))


def decode_contact(data: bytes | None) -> ContactState:
    """The state `encode_contact` wrote (or an earlier version did); None is the empty state.

    Raises:
        ValueError: `data` is not a contact state this version can read.
    """
    if data is None:
        return ContactState.empty()
    version = data[0] if data else None
    if version == _CODEC_VERSION and len(data) >= _HEAD.size:
        _, flags, sent, engaged, stated = _HEAD.unpack_from(data)
        sends = _decode_sends(data, sent)
    elif version in _LEGACY and len(data) == _LEGACY[version].size:
        _, flags, sent, engaged, count, *rest = _LEGACY[version].unpack(data)
        stated = rest[0] if rest else 0
        sends = _legacy_sends(count, sent, engaged)
    elif version in {*_LEGACY, _CODEC_VERSION}:
        raise ValueError(f"contact state v{version} cannot be {len(data)} bytes")
    else:
        raise ValueError(f"unsupported contact state version {version} (expected 1 to 3)")
    consent_code = flags & _CONSENT_MASK
    if consent_code not in _CONSENT_BY_CODE or flags & _RESERVED:
        raise ValueError(f"invalid contact state flags {flags:#010b}")
    return ContactState(
        consent=_CONSENT_BY_CODE[consent_code],
        unsubscribed=bool(flags & _UNSUBSCRIBED),
        deleted=bool(flags & _DELETED),
        hard_bounced=bool(flags & _HARD_BOUNCED),
        complained=bool(flags & _COMPLAINED),
        last_marketing_send_at=_decode_instant(sent),
        last_engaged_at=_decode_instant(engaged),
        recent_sends=tuple(datetime.fromtimestamp(seconds, UTC) for seconds in sends),
        unsubscribed_stated_at=_decode_instant(stated),
        ever_engaged=bool(flags & _EVER_ENGAGED),
    )
