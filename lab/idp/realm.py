"""The realm file, read the way Keycloak's ``--import-realm`` reads it, but never trusted.

``keycloak/realm-idjag.json`` is a Keycloak realm export. Keycloak imports it unchanged; the
embedded IdP reads the same file into frozen dataclasses. An unknown field is logged and
ignored (Keycloak has hundreds; the lab uses a few). A malformed file, a missing required field
or a value of the wrong type is a :class:`RealmFileError` naming the file and the field — the
CLI prints it as one line, never as a traceback.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lab.idp.bruteforce import BruteForcePolicy
from lab.oauth.usernames import normalize_username

log = logging.getLogger("lab.idp")

#: Keycloak's defaults for a new realm (seconds), used when the file leaves them out.
DEFAULT_ACCESS_TOKEN_LIFESPAN = 300
DEFAULT_ACCESS_CODE_LIFESPAN = 60
DEFAULT_SSO_SESSION_IDLE = 1800
DEFAULT_SSO_SESSION_MAX = 36000

#: The client scopes a Keycloak 26 realm gives every new client.
DEFAULT_CLIENT_SCOPES = ("web-origins", "acr", "profile", "roles", "basic", "email")
OPTIONAL_CLIENT_SCOPES = ("address", "phone", "offline_access", "microprofile-jwt", "organization")

# Fields the embedded IdP reads, or knows Keycloak accepts and deliberately ignores. Anything
# else is reported once as "unknown" so a typo (``accesTokenLifespan``) does not pass silently.
_REALM_FIELDS = frozenset(
    {
        "realm",
        "id",
        "displayName",
        "displayNameHtml",
        "enabled",
        "sslRequired",
        "accessTokenLifespan",
        "accessCodeLifespan",
        "accessCodeLifespanLogin",
        "accessCodeLifespanUserAction",
        "ssoSessionIdleTimeout",
        "ssoSessionMaxLifespan",
        "offlineSessionIdleTimeout",
        "registrationAllowed",
        "registrationEmailAsUsername",
        "loginWithEmailAllowed",
        "duplicateEmailsAllowed",
        "resetPasswordAllowed",
        "editUsernameAllowed",
        "rememberMe",
        "verifyEmail",
        "bruteForceProtected",
        "permanentLockout",
        "maxTemporaryLockouts",
        "maxFailureWaitSeconds",
        "minimumQuickLoginWaitSeconds",
        "waitIncrementSeconds",
        "quickLoginCheckMilliSeconds",
        "maxDeltaTimeSeconds",
        "failureFactor",
        "clients",
        "users",
        "roles",
        "groups",
        "clientScopes",
        "defaultDefaultClientScopes",
        "defaultOptionalClientScopes",
        "defaultRole",
        "attributes",
        "loginTheme",
        "accountTheme",
        "internationalizationEnabled",
        "revokeRefreshToken",
        "refreshTokenMaxReuse",
        "notBefore",
        "defaultSignatureAlgorithm",
        "requiredActions",
        "smtpServer",
        "eventsEnabled",
        "adminEventsEnabled",
        "components",
        "identityProviders",
    }
)
_CLIENT_FIELDS = frozenset(
    {
        "clientId",
        "id",
        "name",
        "description",
        "enabled",
        "protocol",
        "publicClient",
        "clientAuthenticatorType",
        "secret",
        "standardFlowEnabled",
        "implicitFlowEnabled",
        "directAccessGrantsEnabled",
        "serviceAccountsEnabled",
        "redirectUris",
        "webOrigins",
        "attributes",
        "defaultClientScopes",
        "optionalClientScopes",
        "rootUrl",
        "baseUrl",
        "adminUrl",
        "bearerOnly",
        "consentRequired",
        "frontchannelLogout",
        "fullScopeAllowed",
        "protocolMappers",
        "alwaysDisplayInConsole",
        "surrogateAuthRequired",
        "notBefore",
        "nodeReRegistrationTimeout",
        "authorizationServicesEnabled",
    }
)
_USER_FIELDS = frozenset(
    {
        "id",
        "username",
        "email",
        "emailVerified",
        "firstName",
        "lastName",
        "enabled",
        "credentials",
        "realmRoles",
        "clientRoles",
        "groups",
        "attributes",
        "requiredActions",
        "createdTimestamp",
        "totp",
        "notBefore",
        "serviceAccountClientId",
        "federationLink",
        "disableableCredentialTypes",
    }
)


class RealmFileError(ValueError):
    """The realm file cannot be used; the message names the file and the field."""

    def __init__(self, path: Path, field: str, problem: str) -> None:
        where = f" field {field!r}" if field else ""
        super().__init__(f"realm file {path}:{where} {problem}")
        self.path = path
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str | None
    email_verified: bool
    first_name: str | None
    last_name: str | None
    enabled: bool
    password: str | None
    realm_roles: tuple[str, ...]

    @property
    def name(self) -> str | None:
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or None


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str | None
    public_client: bool
    enabled: bool
    standard_flow: bool
    direct_access_grants: bool
    service_accounts: bool
    redirect_uris: tuple[str, ...]
    web_origins: tuple[str, ...]
    pkce_method: str | None
    default_scopes: tuple[str, ...]
    optional_scopes: tuple[str, ...]
    #: Keycloak client attributes (strings), e.g. the ``id.jag.*`` ones of lab/idp/id_jag.py.
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        return next((value for key, value in self.attributes if key == name), None)

    @property
    def service_account_id(self) -> str:
        """A stable id for the client's service-account user (Keycloak stores a random one)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"service-account:{self.client_id}"))


@dataclass(frozen=True)
class Realm:
    name: str
    display_name: str
    access_token_lifespan: int
    access_code_lifespan: int
    sso_session_idle: int
    sso_session_max: int
    clients: tuple[Client, ...]
    users: tuple[User, ...]
    source: Path
    #: Keycloak's brute-force detection; None when ``bruteForceProtected`` is off (default).
    brute_force: BruteForcePolicy | None = None

    def client(self, client_id: str) -> Client | None:
        return self._clients_by_id.get(client_id)

    def user_by_username(self, username: str) -> User | None:
        # Keycloak stores usernames lower-cased and also accepts the email when
        # loginWithEmailAllowed is on (its default).
        # NFKC + casefold; a name that normalization would change is nobody's (issue #16).
        wanted = normalize_username(username)
        if wanted is None:
            return None
        return self._users_by_login.get(wanted)

    def user_by_id(self, user_id: str) -> User | None:
        return self._users_by_id.get(user_id)

    # The realm never changes once read, so its look-ups are indexed once per process instead
    # of scanned (and every user's email normalized again) on each sign-in and token request.
    # Each index keeps the first entry in file order, as the scans it replaces returned.

    @cached_property
    def _clients_by_id(self) -> dict[str, Client]:
        index: dict[str, Client] = {}
        for client in self.clients:
            index.setdefault(client.client_id, client)
        return index

    @cached_property
    def _users_by_id(self) -> dict[str, User]:
        index: dict[str, User] = {}
        for user in self.users:
            index.setdefault(user.id, user)
        return index

    @cached_property
    def _users_by_login(self) -> dict[str, User]:
        """Username or (normalized) email -> the first user in file order that has it."""
        index: dict[str, User] = {}
        for user in self.users:
            index.setdefault(user.username, user)
            email = normalize_username(user.email) if user.email else None
            if email is not None:
                index.setdefault(email, user)
        return index


def load_realm(path: Path) -> Realm:
    """Read and validate a realm export; raise :class:`RealmFileError` on anything unusable."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RealmFileError(path, "", f"cannot be read: {exc.strerror or exc}") from None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise RealmFileError(path, "", f"is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RealmFileError(path, "", "must be a JSON object (a Keycloak realm export)")
    return _parse_realm(_Reader(path, document, "", _REALM_FIELDS))


def _parse_realm(r: _Reader) -> Realm:
    name = r.text("realm")
    default_scopes = r.string_list("defaultDefaultClientScopes", DEFAULT_CLIENT_SCOPES)
    optional_scopes = r.string_list("defaultOptionalClientScopes", OPTIONAL_CLIENT_SCOPES)
    clients = tuple(
        _parse_client(child, default_scopes, optional_scopes)
        for child in r.objects("clients", _CLIENT_FIELDS, required=True)
    )
    users = tuple(_parse_user(child) for child in r.objects("users", _USER_FIELDS, required=False))
    _refuse_duplicates(r, "clients", [c.client_id for c in clients])
    _refuse_duplicates(r, "users", [u.username for u in users])
    _refuse_duplicates(r, "users", [u.id for u in users])
    return Realm(
        name=name,
        display_name=r.optional_text("displayName") or name,
        access_token_lifespan=r.positive_int("accessTokenLifespan", DEFAULT_ACCESS_TOKEN_LIFESPAN),
        access_code_lifespan=r.positive_int("accessCodeLifespan", DEFAULT_ACCESS_CODE_LIFESPAN),
        sso_session_idle=r.positive_int("ssoSessionIdleTimeout", DEFAULT_SSO_SESSION_IDLE),
        sso_session_max=r.positive_int("ssoSessionMaxLifespan", DEFAULT_SSO_SESSION_MAX),
        clients=clients,
        users=users,
        source=r.path,
        brute_force=_brute_force(r),
    )


def _brute_force(r: _Reader) -> BruteForcePolicy | None:
    if not r.flag("bruteForceProtected", False):
        return None
    defaults = BruteForcePolicy()
    return BruteForcePolicy(
        failure_factor=r.positive_int("failureFactor", defaults.failure_factor),
        wait_increment_s=r.positive_int("waitIncrementSeconds", defaults.wait_increment_s),
        max_wait_s=r.positive_int("maxFailureWaitSeconds", defaults.max_wait_s),
        max_delta_s=r.positive_int("maxDeltaTimeSeconds", defaults.max_delta_s),
        permanent_lockout=r.flag("permanentLockout", False),
    )


def _parse_client(
    r: _Reader, default_scopes: tuple[str, ...], optional_scopes: tuple[str, ...]
) -> Client:
    public = r.flag("publicClient", False)
    secret = r.optional_text("secret")
    if not public and not secret:
        # A confidential client with no secret could never authenticate: say so at load time.
        raise RealmFileError(
            r.path,
            r.field("secret"),
            "is required for a confidential client (publicClient is false)",
        )
    attributes = r.mapping("attributes")
    pkce = attributes.get("pkce.code.challenge.method") or None
    if pkce not in (None, "S256", "plain"):
        raise RealmFileError(
            r.path,
            r.field("attributes.pkce.code.challenge.method"),
            f"must be 'S256' or 'plain', not {pkce!r}",
        )
    return Client(
        client_id=r.text("clientId"),
        secret=secret,
        public_client=public,
        enabled=r.flag("enabled", True),
        standard_flow=r.flag("standardFlowEnabled", True),
        direct_access_grants=r.flag("directAccessGrantsEnabled", False),
        service_accounts=r.flag("serviceAccountsEnabled", False),
        redirect_uris=r.string_list("redirectUris", ()),
        web_origins=r.string_list("webOrigins", ()),
        pkce_method=str(pkce) if pkce else None,
        default_scopes=r.string_list("defaultClientScopes", default_scopes),
        optional_scopes=r.string_list("optionalClientScopes", optional_scopes),
        attributes=tuple(
            (str(key), value) for key, value in attributes.items() if isinstance(value, str)
        ),
    )


def _parse_user(r: _Reader) -> User:
    username = r.text("username")
    user_id = r.optional_text("id")
    if user_id is None:
        # Keycloak would invent a random id; the lab needs `sub` stable across restarts.
        raise RealmFileError(
            r.path, r.field("id"), "is required (the user's stable UUID, the ID token `sub`)"
        )
    try:
        uuid.UUID(user_id)
    except ValueError:
        raise RealmFileError(r.path, r.field("id"), f"must be a UUID, not {user_id!r}") from None
    normalized = normalize_username(username)
    if normalized is None:
        raise RealmFileError(
            r.path,
            r.field("username"),
            "is not a plain name (surrounding spaces, control characters, or a change under "
            "NFKC normalization); use a plain name",
        )
    return User(
        id=user_id,
        username=normalized,
        email=r.optional_text("email"),
        email_verified=r.flag("emailVerified", False),
        first_name=r.optional_text("firstName"),
        last_name=r.optional_text("lastName"),
        enabled=r.flag("enabled", True),
        password=_password_of(r),
        realm_roles=r.string_list("realmRoles", ()),
    )


def _password_of(r: _Reader) -> str | None:
    for index, credential in enumerate(r.list_of_dicts("credentials")):
        if credential.get("type") == "password":
            value = credential.get("value")
            if not isinstance(value, str) or not value:
                raise RealmFileError(
                    r.path,
                    r.field(f"credentials[{index}].value"),
                    "must be the password as a non-empty string",
                )
            return value
    return None


def _refuse_duplicates(r: _Reader, field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise RealmFileError(r.path, field, f"has {value!r} twice")
        seen.add(value)


class _Reader:
    """Typed access to one JSON object of the realm file, with the dotted path for messages."""

    def __init__(
        self, path: Path, data: Mapping[str, Any], prefix: str, known: frozenset[str]
    ) -> None:
        self.path = path
        self.data = data
        self.prefix = prefix
        for key in data:
            if key not in known:
                log.warning("realm file %s: ignoring unknown field %r", path, self.field(key))

    def field(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def _fail(self, name: str, problem: str) -> RealmFileError:
        return RealmFileError(self.path, self.field(name), problem)

    def text(self, name: str) -> str:
        value = self.data.get(name)
        if value is None:
            raise self._fail(name, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self._fail(name, f"must be a non-empty string, not {value!r}")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(name, f"must be a string, not {value!r}")
        return value or None

    def flag(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self._fail(name, f"must be true or false, not {value!r}")
        return value

    def positive_int(self, name: str, default: int) -> int:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self._fail(name, f"must be a positive number of seconds, not {value!r}")
        return value

    def string_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(name, "must be a list of strings")
        return tuple(value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self._fail(name, "must be an object")
        return value

    def list_of_dicts(self, name: str) -> list[dict[str, Any]]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(name, "must be a list of objects")
        return value

    def objects(self, name: str, known: frozenset[str], *, required: bool) -> list[_Reader]:
        if name not in self.data and required:
            raise self._fail(name, "is required")
        return [
            _Reader(self.path, item, f"{self.field(name)}[{index}]", known)
            for index, item in enumerate(self.list_of_dicts(name))
        ]
