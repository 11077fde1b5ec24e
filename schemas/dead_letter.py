"""Dead-letter records: rejected input with its origin and the reason it was rejected.

A dead letter is bounded whatever it rejects (an excerpt, the length and the sha256 of the
original), so publishing one can never fail for its size and stall the stream behind it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from typing import TYPE_CHECKING, Literal

from pydantic import Base64Bytes, Field

from schemas.base import OutputMessage, UtcDatetime

if TYPE_CHECKING:
    from datetime import datetime

ORIGINAL_EXCERPT_BYTES = 16 * 1024
"""How much of a rejected value a dead letter carries: its first 16 KiB."""
KEY_EXCERPT_BYTES = 1024
"""How much of a rejected record's key a dead letter carries (keys are `tenant:campaign`)."""
REASON_MAX_CHARS = 2048
"""Reasons longer than this are cut in the middle (they name fields; an exception text or a
webhook's list of rejections may be long)."""
MAX_DEAD_LETTER_BYTES = 40 * 1024
"""No dead letter's JSON is longer: the excerpts in base64 (23 KiB), the reason escaped (at most
12 KiB) and the fixed fields; far below the producers' request limit."""


def dead_letter_id(*coordinates: str | int | None) -> str:
    """A stable 32-hex id of where the rejected record came from."""
    text = "\x1f".join("" if part is None else str(part) for part in ("dead-letter", *coordinates))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DeadLetter(OutputMessage):
    """One rejected input message. Kafka key: the source message's key (its first 1 KiB).

    Schema version 1 grew `dead_letter_id` and the `original_*` fields; the older fields keep
    their meaning, except that `original` is cut to its first 16 KiB
    (`original_truncated`). A rejection published twice (a crash before the worker committed
    the source offset) carries the same `dead_letter_id` both times: drop the repeats.
    """

    schema_version: Literal[1] = 1
    dead_letter_id: str = Field(
        description=(
            "Deterministic id of the rejection, from its source coordinates (topic, partition, "
            "offset): a re-publish after a crash carries the same id and can be dropped."
        )
    )
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: Base64Bytes | None = Field(
        description="Original key bytes (at most the first 1 KiB), base64."
    )
    original: Base64Bytes = Field(
        description=(
            "The original value's first 16 KiB (all of it if shorter), base64; see "
            "`original_truncated`."
        )
    )
    original_size: int = Field(ge=0, description="Length of the whole original value in bytes.")
    original_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the whole original value, hex."
    )
    original_truncated: bool = Field(
        description="True when `original` holds only the first 16 KiB of the value."
    )
    error_type: str = Field(description="Short machine-readable class, e.g. 'invalid_json'.")
    error: str = Field(
        description="Human-readable reason naming the offending field (at most 2048 characters)."
    )
    failed_at: UtcDatetime = Field(description="Wall-clock time of the rejection.")

    @classmethod
    def of_rejected(
        cls,
        *,
        source_topic: str,
        source_partition: int | None,
        source_offset: int | None,
        key: bytes | None,
        value: bytes | None,
        error_type: str,
        error: str,
        failed_at: datetime,
        id_parts: tuple[str | int | None, ...] | None = None,
    ) -> DeadLetter:
        """The bounded dead letter of a rejected value.

        Its id is from `id_parts`, which default to the source coordinates (topic, partition,
        offset).
        """
        original = value or b""
        excerpt = original[:ORIGINAL_EXCERPT_BYTES]
        parts = id_parts or (source_topic, source_partition, source_offset)
        if failed_at.tzinfo is None:
            msg = "failed_at must be timezone-aware"
            raise ValueError(msg)
        # Built without validation: every value is made right here, and validating `original`
        # (decoding 21 KB of base64 back) cost twice the rest of a dead letter with 5% poison.
        # tests/unit/services/test_dead_letters.py reads every kind back through the model.
        return cls.model_construct(
            schema_version=1,
            dead_letter_id=dead_letter_id(*parts),
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            source_key=key[:KEY_EXCERPT_BYTES] if key is not None else None,
            original=excerpt,
            original_size=len(original),
            original_sha256=hashlib.sha256(original).hexdigest(),
            original_truncated=len(excerpt) < len(original),
            error_type=error_type[:64],
            error=_bounded(error),
            failed_at=failed_at.astimezone(UTC),
        )


_REASON_TAIL_CHARS = 256
"""A cut reason keeps its end too: summaries end with what they left out ("and 19900 more")."""


def _bounded(reason: str) -> str:
    if len(reason) <= REASON_MAX_CHARS:
        return reason
    marker, head = "", 0
    for _ in range(3):  # the count's own digits change the room left: let it settle
        head = REASON_MAX_CHARS - _REASON_TAIL_CHARS - len(marker)
        marker = f" ... ({len(reason) - head - _REASON_TAIL_CHARS} characters cut) ... "
    return reason[:head] + marker + reason[-_REASON_TAIL_CHARS:]
