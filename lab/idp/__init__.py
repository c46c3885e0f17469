"""The embedded, Keycloak-compatible identity provider (issue 4).

Modules: ``realm`` (the realm file, validated), ``app`` (``create_app`` and the routes),
``authorize`` (authorization endpoint and login form handling), ``login`` (the HTML),
``grants`` (token endpoint grants), ``clients`` (client authentication, redirect URIs),
``tokens`` (Keycloak-shaped JWTs), ``pkce`` (RFC 7636), ``store`` (sessions and codes in memory).
Other parts talk to it over HTTP only.
"""
