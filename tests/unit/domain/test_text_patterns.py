"""Tests of the prefiltered pattern sets (processor.domain.text_patterns) behind the classifier."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.smtp_provider_rules import PROVIDER_TEXT_RULES
from processor.domain.smtp_rules import COMMON_TEXT_RULES, WEAK_TEXT_RULES
from processor.domain.text_patterns import PatternSet, required_literal

RULE_SETS = [
    (patterns, PatternSet(patterns))
    for _, _, patterns in PROVIDER_TEXT_RULES + COMMON_TEXT_RULES + WEAK_TEXT_RULES
]
ALL_PATTERNS = [
    pattern
    for _, _, patterns in PROVIDER_TEXT_RULES + COMMON_TEXT_RULES + WEAK_TEXT_RULES
    for pattern in patterns
]


@pytest.mark.parametrize(
    ("pattern", "literal", "pure"),
    [
        ("user unknown", "user unknown", True),
        (r"user ?unknown", "unknown", False),
        (r"\bspamhaus\b", "spamhaus", False),
        (r"gr[ae]y-?list", "list", False),
        (r"\(s3\d{3}\)", "(s3", False),
        (r"resolver\.adr\.(?:ex)?recip(?:ient)?notfound", "resolver.adr.", False),
        (r"(?<!not )listed (?:at|in)\b", "listed ", False),
        (r"bo[iî]te du destinataire pleine", "te du destinataire pleine", False),
        (r"doesn't have an? (?:yahoo|aol)\S* account", "doesn't have a", False),
    ],
)
def test_the_required_literal_is_the_longest_run_every_match_contains(
    pattern: str, literal: str, *, pure: bool
) -> None:
    """Groups, classes, escapes and quantified characters end a run; plain text is pure."""
    assert required_literal(pattern) == (literal, pure)


def test_a_top_level_alternation_is_refused() -> None:
    """Alternatives are given one by one: a top-level '|' would make the literal wrong."""
    with pytest.raises(ValueError, match="top-level"):
        required_literal("a|b")


def test_an_upper_case_pattern_is_refused() -> None:
    """Text is lower-cased before matching: an upper-case pattern could never match."""
    with pytest.raises(ValueError, match="upper-case"):
        PatternSet(("User unknown",))


FRAGMENTS = st.sampled_from(
    [
        *[required_literal(pattern)[0] for pattern in ALL_PATTERNS],
        "550 5.1.1 ",
        " ",
        "user",
        "not ",
        "s3150",
        "(s3150)",
        "yahoo.com",
        "has been ",
        "-",
        "\n",
        "İ",
        "K",
    ]
)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=12))
def test_the_prefilter_never_changes_whether_a_pattern_matches(parts: list[str]) -> None:
    """Each pattern set finds exactly what its regexes alone find, in any lower-cased text."""
    lowered = "".join(parts).lower()
    for patterns, pattern_set in RULE_SETS:
        expected = any(re.search(pattern, lowered) for pattern in patterns)
        assert pattern_set.search(lowered) is expected
