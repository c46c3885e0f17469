"""How a typed username signs in, as real Keycloak 26 answered it (the lab IdP must agree).

Recorded against real Keycloak (``tests/keycloak/test_usernames_against_keycloak.py`` runs these
same rows there) and checked against the lab IdP (``tests/security/test_idp_parameter_battery.py``,
``test_a_typed_username_signs_in_as_keycloak_does``):

* the **login form** (username/password form authenticator) trims what Java's ``String.trim()``
  trims - every character up to U+0020, NUL and tab and CR LF included, but not U+00A0, U+0085
  or U+2003 - then looks the name up case-insensitively (usernames are stored lower-case), or as
  an email address;
* the **password grant** (direct grant ``ValidateUsername``) trims nothing: the same look-up
  on the name exactly as sent;
* either way the tokens carry the stored name (``preferred_username`` ``idjag-learner``), never
  what was typed.
"""

from __future__ import annotations

#: The stored name every accepted row signs in as.
CANONICAL = "idjag-learner"

#: (typed, accepted by the login form, accepted by the password grant).
USERNAME_CASES: list[tuple[str, bool, bool]] = [
    ("idjag-learner", True, True),
    ("IDJAG-Learner", True, True),
    ("IDJAG-LEARNER@EXAMPLE.COM", True, True),
    ("  idjag-learner  ", True, False),
    ("\tidjag-learner\r\n", True, False),
    ("\x0bidjag-learner", True, False),
    ("\x1fidjag-learner", True, False),
    ("idjag-learner\x00", True, False),
    (" idjag-learner@example.com ", True, False),
    ("idjag-learner\u00a0", False, False),
    ("\u2003idjag-learner", False, False),
    ("idjag-learner\x85", False, False),
    ("idjag learner", False, False),
    ("idjag-learner\u200b", False, False),
    ("\u0130djag-learner", False, False),
]


def case_id(typed: str) -> str:
    return ascii(typed)[1:-1] or "empty"
