"""One rule for turning a username into the name the lab compares and builds principals from.

``str.lower()`` is not enough: the Kelvin sign (U+212A) lower-cases to an ASCII ``k``, so
``\u212aim`` would land on the principal of an existing ``kim``. Like Keycloak, which stores
usernames normalized and refuses ones that do not survive normalization, a name is NFKC
normalized and case-folded, and a name that normalization would change in any way other than
plain lower-casing is refused (``None``) rather than silently mapped onto someone else.
"""

from __future__ import annotations

import unicodedata

MAX_USERNAME_LENGTH = 255


#: What Java's ``String.trim()`` removes: every character up to U+0020 (controls included,
#: NUL too), and nothing above it (not U+00A0, U+0085 or U+2003).
_JAVA_TRIMMED = "".join(chr(code) for code in range(0x21))


def login_form_username(typed: str) -> str:
    """The username field of the login form as Keycloak reads it: trimmed the way Java's
    ``String.trim()`` trims (its username/password form authenticator does, before the look-up).

    Shown on real Keycloak 26 (``tests/keycloak/test_usernames_against_keycloak.py``): the form
    signs ``"  IDJAG-Learner\\r\\n"`` and ``"idjag-learner\\x00"`` in as ``idjag-learner``, and
    refuses ``"idjag-learner\\u00a0"``. The password grant trims nothing (see there).
    """
    return typed.strip(_JAVA_TRIMMED)


def normalize_username(value: object) -> str | None:
    """The comparable form of ``value`` (NFKC + casefold), or ``None`` when it is unusable.

    Nothing is trimmed: a name with surrounding whitespace is nobody's, as at Keycloak's
    password grant (the login form trims first, :func:`login_form_username`).
    """
    if not isinstance(value, str):
        return None
    text = value
    if not text or text != text.strip() or len(text) > MAX_USERNAME_LENGTH:
        return None
    if unicodedata.normalize("NFKC", text) != text:
        return None  # compatibility characters (Kelvin sign, full-width letters, ligatures)
    folded = text.casefold()
    if folded != text.lower():
        return None  # case folding changes more than case (ß → ss)
    if any(unicodedata.category(char).startswith("C") for char in folded):
        return None  # control and format characters (zero-width joiners, bidi overrides)
    return folded
