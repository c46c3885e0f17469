"""The login page: a plain HTML form a person can use in a browser, and a script can fill in.

Every value placed in the page goes through :func:`html.escape` (attribute context included).
The form posts to ``login-actions/authenticate`` with an opaque ``tab_id`` in the URL; the
IdP also requires the ``AUTH_SESSION_ID`` cookie set with the page, so another site cannot
post a login into this browser (login CSRF).
"""

from __future__ import annotations

from html import escape

INVALID_CREDENTIALS = "Invalid username or password."

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;
box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin-top:1rem}
input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.5rem;width:100%;padding:.6rem;font-size:1rem}
.error{background:#fdecea;color:#8a1c1c;padding:.6rem;border-radius:4px}
.hint{color:#666;font-size:.85rem;margin-top:1.5rem}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def login_page(
    realm_display: str, action: str, username: str = "", error: str | None = None
) -> str:
    """Keycloak's ``kc-form-login``: username, password, and the message on failure."""
    message = f'<p class="error" id="input-error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        f'<h1 id="kc-page-title">Sign in to {escape(realm_display)}</h1>{message}'
        f'<form id="kc-form-login" action="{escape(action, quote=True)}" method="post">'
        '<label for="username">Username or email</label>'
        f'<input id="username" name="username" type="text" value="{escape(username, quote=True)}" '
        'autocomplete="username" autofocus required>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<input type="hidden" id="id-hidden-input" name="credentialId" value="">'
        '<button type="submit" id="kc-login" name="login">Sign In</button></form>'
        '<p class="hint">ID-JAG lab identity provider (Keycloak-compatible). '
        "Learner: <code>idjag-learner</code> / <code>password</code>.</p>"
    )
    return _page(f"Sign in to {realm_display}", body)


def error_page(message: str) -> str:
    """Keycloak's "We are sorry..." page, shown when it cannot safely redirect back."""
    body = f'<h1>We are sorry...</h1><p id="kc-error-message" class="error">{escape(message)}</p>'
    return _page("We are sorry...", body)


def logged_out_page() -> str:
    return _page("Signing out", "<h1>You are logged out</h1>")
