"""Lower-case pattern alternatives searched in lower-cased text, with a literal prefilter each.

Python's `re` tries every alternative at every position; a substring check in C first (the
longest literal every match must contain) leaves the regex for the few texts that could match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MIN_LITERAL: Final = 3
"""Shorter required literals filter too little: such patterns always run their regex."""
_META: Final = frozenset(".^$*+?{}[]\\|()")
_QUANTIFIERS: Final = frozenset("?*+{")


def _skip_class(pattern: str, start: int) -> int:
    """The index after the character class opening at `start`."""
    index = start + 1
    while pattern[index] != "]":
        index += 2 if pattern[index] == "\\" else 1
    return index + 1


def _skip_group(pattern: str, start: int) -> int:
    """The index after the group opening at `start` (nested groups and classes included)."""
    depth, index = 0, start
    while True:
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index = _skip_class(pattern, index)
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        index += 1
        if depth == 0:
            return index


def required_literal(pattern: str) -> tuple[str, bool]:
    """The longest literal every match of `pattern` contains; whether it is the whole pattern.

    Conservative: groups, classes, escapes (word boundaries...) and quantified characters end a
    literal run, so the result is always a substring of any match. Top-level `|` is not
    allowed: give each alternative on its own.
    """
    runs: list[str] = []
    run: list[str] = []
    pure = True
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "|":
            raise ValueError(f"top-level '|' in {pattern!r}: give alternatives separately")
        if char == "\\" and pattern[index + 1 : index + 2] in _META | {" ", "'", '"', "-", "/"}:
            run.append(pattern[index + 1])
            index += 2
            pure = False
            continue
        if char in _META:
            pure = False
            if char in _QUANTIFIERS and run:
                run.pop()  # the character before a quantifier may be absent or repeated
            runs.append("".join(run))
            run = []
            if char == "\\":
                index += 2
            elif char == "(":
                index = _skip_group(pattern, index)
            elif char == "[":
                index = _skip_class(pattern, index)
            elif char == "{":
                index = pattern.index("}", index) + 1
            else:
                index += 1
            continue
        run.append(char)
        index += 1
    runs.append("".join(run))
    return max(runs, key=len), pure


_ESCAPE: Final = re.compile(r"\\.")


@dataclass(frozen=True, slots=True)
class _Alternative:
    literal: str | None
    """Looked for first; None: too short to filter."""
    regex: re.Pattern[str] | None
    """None when the alternative is a plain literal (the substring check is the match)."""


class PatternSet:
    """Any of several lower-case regular expressions, searched in lower-cased text.

    Matching lower-cased text (rather than IGNORECASE) keeps the prefilter exact: whatever the
    regex matches in the text contains the literal in the same text.
    """

    __slots__ = ("_alternatives",)

    def __init__(self, patterns: tuple[str, ...]) -> None:
        alternatives: list[_Alternative] = []
        for pattern in patterns:
            if _ESCAPE.sub("", pattern) != _ESCAPE.sub("", pattern).lower():
                raise ValueError(f"{pattern!r} has upper-case letters: it would never match")
            literal, pure = required_literal(pattern)
            if pure:
                alternatives.append(_Alternative(literal, None))
                continue
            usable = literal if len(literal) >= MIN_LITERAL else None
            alternatives.append(_Alternative(usable, re.compile(pattern)))
        self._alternatives = tuple(alternatives)

    def search(self, lowered: str) -> bool:
        """Whether any pattern is found in `lowered` (a text after `str.lower()`)."""
        for alternative in self._alternatives:
            if alternative.literal is not None and alternative.literal not in lowered:
                continue
            if alternative.regex is None or alternative.regex.search(lowered):
                return True
        return False
