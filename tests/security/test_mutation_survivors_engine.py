"""Policy engine behaviours a mutant of ``lab/policy/engine.py`` changed without a test noticing
(docs/dev/mutation.md): the length bound is inclusive, ``**`` is one star, a segment never
matches past the end of the text, and the reasons name the policy and the held roles."""

from __future__ import annotations

from lab.policy.engine import MAX_NAME_LENGTH, Assertion, _segment_at, decide, glob_match


def test_an_assertion_names_its_policy_only_when_it_has_one() -> None:
    assert Assertion("api:role.r", "api:docs", "get").describe() == (
        "ALLOW get on api:docs for api:role.r"
    )
    assert Assertion("api:role.r", "api:docs", "get", "deny", "api:policy.p").describe() == (
        "DENY get on api:docs for api:role.r in api:policy.p"
    )


def test_names_of_exactly_the_maximum_length_are_still_evaluated() -> None:
    longest = "a" * MAX_NAME_LENGTH
    assert glob_match("*", longest) is True
    assert glob_match(longest, longest) is True
    assert glob_match(longest + "a", longest + "a") is False
    assert glob_match("*", longest + "a") is False


def test_a_double_star_is_one_star_and_later_segments_still_count() -> None:
    assert glob_match("*a**b*", "xab") is True
    assert glob_match("*a**b*", "xa") is False
    assert glob_match("x**", "xyz") is True


def test_a_segment_running_past_the_end_of_the_text_never_matches() -> None:
    assert _segment_at("ab", "xab", 1) is True
    assert _segment_at("abc", "xab", 1) is False
    assert _segment_at("a", "xab", 3) is False
    # The same with "?" (matched character by character, not by startswith).
    assert _segment_at("a?", "xab", 1) is True
    assert _segment_at("a?c", "xab", 1) is False
    assert _segment_at("?", "xab", 3) is False
    assert _segment_at("?b", "xab", 0) is False


def test_no_match_names_every_held_role() -> None:
    decision = decide([], ["api:role.a", "api:role.b"], "get", "api:docs")
    assert decision.reason == "no assertion allows get on api:docs for api:role.a, api:role.b"
