"""Token-type, grant-type and JWT ``typ`` constants (one spelling for the whole lab)."""

from __future__ import annotations

# Grant types (RFC 6749, RFC 8693 §2.1, RFC 7523 §2.1)
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_PASSWORD = "password"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# Token type identifiers (RFC 8693 §3, ID-JAG draft -04 §4.3)
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"

# Client assertion type (RFC 7523 §2.2)
CLIENT_ASSERTION_TYPE_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Grant profile advertised by a resource authorization server (ID-JAG draft -04 §7)
GRANT_PROFILE_ID_JAG = "urn:ietf:params:oauth:grant-profile:id-jag"

# JWT header "typ" values (RFC 8725 §3.11 explicit typing)
TYP_ACCESS_TOKEN = "at+jwt"  # RFC 9068 §2.1
TYP_ID_JAG = "oauth-id-jag+jwt"  # ID-JAG draft -04 §3.1
TYP_JWT = "JWT"

# The "typ" claim Keycloak puts inside its tokens (not the header)
KEYCLOAK_TYP_ID = "ID"
KEYCLOAK_TYP_BEARER = "Bearer"
KEYCLOAK_TYP_REFRESH = "Refresh"

# MCP extension both sides declare in initialize capabilities (SEP-990, "Enterprise-Managed
# Authorization"; active only when client and server both declare it)
MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION = (
    "io.modelcontextprotocol/enterprise-managed-authorization"
)
