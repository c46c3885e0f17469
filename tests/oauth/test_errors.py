from lab.oauth.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
    MissingToken,
)


def test_token_endpoint_errors_carry_both_dialects():
    body = InvalidGrant("bad", athenz_message="Invalid assertion token: bad").body()
    assert body == {
        "error": "invalid_grant",
        "error_description": "bad",
        "code": 400,
        "message": "Invalid assertion token: bad",
    }


def test_invalid_client_challenges_only_on_401():
    assert "WWW-Authenticate" in InvalidClient("no").headers()
    assert "WWW-Authenticate" not in InvalidClient("no", status=400).headers()


def test_missing_token_challenge_has_no_error_code():
    challenge = MissingToken(
        "no token", resource_metadata="http://x/.well-known/oauth-protected-resource/mcp"
    ).challenge()
    assert challenge.startswith("Bearer ")
    assert "error=" not in challenge
    assert 'resource_metadata="http://x/.well-known/oauth-protected-resource/mcp"' in challenge


def test_invalid_token_and_insufficient_scope_challenges():
    assert 'error="invalid_token"' in InvalidToken("expired").challenge()
    err = InsufficientScope("need access on mcp:mcp", scope="mcp:role.mcp-accessor")
    assert err.status_code == 403 and 'error="insufficient_scope"' in err.challenge()
