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


def normalize_username(value: object) -> str | None:
    """The comparable form of ``value`` (NFKC + casefold), or ``None`` when it is unusable."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_USERNAME_LENGTH:
        return None
    if unicodedata.normalize("NFKC", text) != text:
        return None  # compatibility characters (Kelvin sign, full-width letters, ligatures)
    folded = text.casefold()
    if folded != text.lower():
        return None  # case folding changes more than case (ß → ss)
    if any(unicodedata.category(char).startswith("C") for char in folded):
        return None  # control and format characters (zero-width joiners, bidi overrides)
    return folded
