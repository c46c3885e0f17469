"""Every query word and predicate, on hand-made outcomes and real signed JWTs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.oauth.jose import SigningKey
from lab.steps.model import Query
from lab.steps.predicates import check
from lab.steps.queries import Outcome, QueryError, evaluate, jsonpath

DATA = {"docs": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "my-field": {"x": 1}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", (True, DATA)),
        ("$.docs[0].name", (True, "a")),
        ("$.docs[-1].id", (True, 2)),
        ("$.docs[*].name", (True, ["a", "b"])),
        ("$.docs.length()", (True, 2)),
        ("$.docs[*].id.length()", (True, 2)),
        ("$['my-field'].x", (True, 1)),
        ("$.my-field.x", (True, 1)),
        ("$.docs[5]", (False, None)),
        ("$.missing", (False, None)),
    ],
)
def test_jsonpath_subset(path: str, expected: tuple) -> None:
    assert jsonpath(DATA, path) == expected


def test_jsonpath_must_start_with_dollar() -> None:
    with pytest.raises(QueryError, match="must start with"):
        jsonpath(DATA, "docs")


@pytest.fixture
def token(tmp_path: Path) -> str:
    key = SigningKey.load_or_create(tmp_path / "k.pem")
    return key.sign(
        {"sub": "human.idjag-learner", "act": {"sub": "mcp.api-mcp"}, "scope": "docs-getter"},
        typ="at+jwt",
    )


def outcome(token: str) -> Outcome:
    return Outcome(
        status=200,
        headers={"www-authenticate": 'Bearer realm="api"'},
        text=json.dumps({"access_token": token, "docs": [1, 2]}),
        result={"status": 200, "is_error": False, "data": {"docs": [{"name": "n"}]}},
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query("status", True), (True, 200)),
        (Query("header", "WWW-Authenticate"), (True, 'Bearer realm="api"')),
        (Query("header", "X-Absent"), (False, None)),
        (Query("json", "$.docs.length()"), (True, 2)),
        (Query("result", "is_error"), (True, False)),
        (Query("result", "data.docs[0].name"), (True, "n")),
        (Query("capture", "seen"), (True, "before")),
        (Query("capture", "unseen"), (False, None)),
        (Query("token", "$.access_token", claim="act.sub"), (True, "mcp.api-mcp")),
        (Query("token", "$.access_token", token_header="typ"), (True, "at+jwt")),
        (Query("token", "$.absent", claim="sub"), (False, None)),
    ],
)
def test_each_query_reads_its_part(token: str, query: Query, expected: tuple) -> None:
    assert evaluate(query, outcome(token), {"seen": "before"}) == expected


def test_token_query_accepts_the_token_itself(token: str) -> None:
    assert evaluate(Query("token", token, claim="sub"), Outcome(), {}) == (
        True,
        "human.idjag-learner",
    )


def test_body_query_reads_raw_text(token: str) -> None:
    found, text = evaluate(Query("body", True), outcome(token), {})
    assert found and text.startswith('{"access_token"')


def test_token_query_on_a_non_jwt_is_a_query_error() -> None:
    with pytest.raises(QueryError, match="not a JWT"):
        evaluate(Query("token", "not-a-jwt", claim="sub"), Outcome(), {})


@pytest.mark.parametrize(
    ("predicate", "actual", "expected", "passed"),
    [
        ("equals", 401, 401, True),
        ("equals", 401, "401", False),
        ("equals", True, 1, False),
        ("not_equals", 200, 401, True),
        ("contains", "docs-getter mcp-accessor", "mcp-accessor", True),
        ("contains", ["a", "b"], "b", True),
        ("contains", ["a", "b"], "c", False),
        ("not_contains", "Bearer realm", "error=", True),
        ("startswith", "Bearer x", "Bearer ", True),
        ("startswith", 5, "5", False),
        ("matches", "invalid_grant", "^invalid_(grant|request)$", True),
        ("in", 400, [400, 401], True),
        ("in", 500, [400, 401], False),
        ("gte", 3, 2, True),
        ("gte", "3", 2, False),
        ("lte", 2, 2, True),
        ("length", [1, 2], 2, True),
        ("length", "abc", 2, False),
    ],
)
def test_predicates(predicate: str, actual: object, expected: object, passed: bool) -> None:
    assert check(predicate, True, actual, expected) is passed


def test_missing_value_satisfies_only_exists_false_and_negations() -> None:
    assert check("exists", False, None, False) is True
    assert check("exists", False, None, True) is False
    assert check("exists", True, "x", True) is True
    assert check("not_contains", False, None, "x") is True
    assert check("equals", False, None, None) is False
