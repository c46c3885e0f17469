"""``GET /healthz/policy``: which signed policy data a resource server decides with (issue #21:
a step that changes the policy polls it instead of sleeping past the refresh interval)."""

from __future__ import annotations

import time

import httpx

from lab.config import Settings
from lab.docapi.app import API_DOMAIN
from lab.oauth.jose import JwksCache
from lab.oauth.resource_server import PolicyCache
from lab.policy.signed import verify_signed_policy_data
from tests.docapi.conftest import DocApi
from tests.docapi.zts_standin import ZtsStandIn


def test_the_protected_port_reports_the_version_it_holds_and_a_new_one_after_a_change(
    docapi: DocApi,
) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    first = httpx.get(f"{docapi.protected}/healthz/policy")
    assert first.status_code == 200
    held = first.json()
    assert held["part"] == "docapi" and held["domain"] == "api"
    assert held["version"].startswith('"') and held["refresh_s"] == 0.0
    assert abs(held["fetched_at"] - time.time()) < 60 and held["age_s"] >= 0

    docapi.zts.allow("api:role.docs-poster", "post")
    after = httpx.get(f"{docapi.protected}/healthz/policy").json()
    assert after["version"] != held["version"]  # refresh_s = 0 in tests: fetched again
    assert after["fetched_at"] >= held["fetched_at"]


def test_the_unprotected_port_decides_nothing_and_has_no_policy_to_report(docapi: DocApi) -> None:
    assert httpx.get(f"{docapi.unprotected}/healthz/policy").status_code == 404


def test_a_fresh_copy_is_reported_as_held_not_as_the_pdps_latest(
    lab_settings: Settings, zts: ZtsStandIn
) -> None:
    zts.allow("api:role.docs-getter", "get")
    endpoints = lab_settings.endpoints
    cache = PolicyCache(
        endpoints.zts,
        API_DOMAIN,
        JwksCache(endpoints.zts_jwks),
        verify=verify_signed_policy_data,
        refresh_s=60.0,
    )
    assert cache.held()["version"] is None and cache.held()["fetched_at"] is None
    cache.current()
    held = cache.held()
    zts.allow("api:role.docs-poster", "post")
    cache.current()  # within refresh_s: the copy is kept, and says so
    again = cache.held()
    assert again["version"] == held["version"] and again["fetched_at"] == held["fetched_at"]
    assert again["age_s"] >= held["age_s"]
