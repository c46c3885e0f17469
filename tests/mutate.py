"""Mutation testing one security-critical module at a time (``make mutate``, never in CI).

mutmut reads its test selection from ``[tool.mutmut]`` in ``pyproject.toml`` only; that
selection (every test of five parts) makes its coverage pass and its slow mutants take hours
on a 2-core machine. Each module here names the fast tests that cover it, so one module's run
fits in minutes: this runner loads mutmut's configuration, swaps in the module's test selection
and runs mutmut's own ``run`` command on that module's mutants with one child process.

``python -m tests.mutate jose grants`` runs those modules in turn; with no name it lists them.
``python -m tests.mutate jose --only 'lab.oauth.jose.x_decode*'`` narrows to some mutants (e.g.
to re-run the survivors after writing tests for them). Scores go to docs/dev/mutation.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One module: its mutants (mutmut name globs) and the tests that cover it."""

    mutants: tuple[str, ...]
    tests: tuple[str, ...]
    #: Extra pytest options for this module's runs, e.g. ``--pdp-in-process`` (tests/conftest.py):
    #: the PDP tests then call the app in-process, which halves their time per mutant.
    pytest_args: tuple[str, ...] = ()


_SECURITY = "tests/security/"

# Seconds added to mutmut's estimate of a mutant's test time before its ×15 timeout (see run).
TIMEOUT_CONSTANT_S = 10.0

TARGETS: dict[str, Target] = {
    "jose": Target(
        ("lab.oauth.jose.*",),
        (
            "tests/oauth",
            "tests/policy/test_signed.py",
            _SECURITY + "test_token_battery.py",  # one PDP for all its cases
            _SECURITY + "test_mutation_survivors_jose.py",
        ),
    ),
    # The same module with in-process tests only (no token battery): the whole module in
    # minutes, e.g. to re-check it after a change such as the verified-token cache.
    "jose_fast": Target(
        ("lab.oauth.jose.*",),
        (
            "tests/oauth",
            "tests/policy/test_signed.py",
            _SECURITY + "test_mutation_survivors_jose.py",
            _SECURITY + "test_verified_token_cache.py",
            _SECURITY + "test_mutation_survivors_jose_signature.py",
            _SECURITY + "test_mutation_survivors_jose_cache.py",
            _SECURITY + "test_mutation_survivors_jose_keys.py",
        ),
    ),
    "resource_server": Target(
        ("lab.oauth.resource_server.*",),
        (
            "tests/reliability/test_policy_cache.py",
            "tests/reliability/test_policy_revalidate.py",
            "tests/docapi/test_policy_revalidate.py",
            "tests/docapi/test_docapi_policy.py",
            "tests/mcpserver/test_mcp_auth.py",
            _SECURITY + "test_policy_matching.py",
            _SECURITY + "test_mutation_survivors_resource_server.py",
            _SECURITY + "test_mutation_survivors_policy_revalidation.py",
        ),
    ),
    "idp_grants": Target(
        ("lab.idp.grants.*",),
        (
            "tests/idp/test_authorization_code.py",
            "tests/idp/test_password_grant.py",
            "tests/idp/test_client_credentials.py",
            "tests/idp/test_refresh_and_userinfo.py",
            "tests/idp/test_bad_input.py",
            _SECURITY + "test_idp_grants.py",
            _SECURITY + "test_mutation_survivors_idp.py",
        ),
    ),
    "grants": Target(
        (
            "lab.pdp.zts.grants.client_credentials.*",
            "lab.pdp.zts.grants.external_id_jag.*",
            "lab.pdp.zts.grants.jwt_bearer.*",
            "lab.pdp.zts.grants.resource_scope.*",
            "lab.pdp.zts.grants.token_exchange.*",
        ),
        (
            "tests/pdp/test_client_credentials.py",
            "tests/pdp/test_jwt_bearer.py",
            "tests/pdp/test_token_exchange.py",
            "tests/pdp/test_external_id_jag.py",
            "tests/pdp/test_scopes.py",
            _SECURITY + "test_scope_escalation.py",
            _SECURITY + "test_lifetimes.py",
            _SECURITY + "test_mutation_survivors.py",
            _SECURITY + "test_mutation_survivors_grants.py",
            _SECURITY + "test_mutation_survivors_external_id_jag.py",
        ),
    ),
    # One grant at a time, with the tests that exercise it (issuance of the PDP's own ID-JAG
    # is tested in tests/pdp/test_id_jag.py, which the "grants" selection lacks).
    "token_exchange": Target(
        ("lab.pdp.zts.grants.token_exchange.*",),
        (
            "tests/pdp/test_token_exchange.py",
            "tests/pdp/test_id_jag.py",
            "tests/pdp/test_scopes.py",
            _SECURITY + "test_scope_escalation.py",
            _SECURITY + "test_lifetimes.py",
            _SECURITY + "test_mutation_survivors.py",
            _SECURITY + "test_mutation_survivors_token_exchange.py",
        ),
        ("--pdp-in-process",),
    ),
    # The redemption of an ID-JAG: the PDP's own (test_jwt_bearer) and an external IdP's
    # (test_external_id_jag), the replay-first ordering, audience isolation and the battery.
    "jwt_bearer": Target(
        ("lab.pdp.zts.grants.jwt_bearer.*",),
        (
            "tests/pdp/test_jwt_bearer.py",
            "tests/pdp/test_external_id_jag.py",
            "tests/pdp/test_single_use_first.py",
            _SECURITY + "test_scope_escalation.py",
            _SECURITY + "test_lifetimes.py",
            _SECURITY + "test_audience_isolation.py",
            _SECURITY + "test_token_battery.py",
            _SECURITY + "test_mutation_survivors_grants.py",
            _SECURITY + "test_mutation_survivors_external_id_jag.py",
            _SECURITY + "test_mutation_survivors_jwt_bearer.py",
        ),
        ("--pdp-in-process",),
    ),
    "external_id_jag": Target(
        ("lab.pdp.zts.grants.external_id_jag.*",),
        (
            "tests/pdp/test_external_id_jag.py",
            _SECURITY + "test_mutation_survivors_external_id_jag.py",
        ),
    ),
    "client_credentials": Target(
        ("lab.pdp.zts.grants.client_credentials.*",),
        (
            "tests/pdp/test_client_credentials.py",
            "tests/pdp/test_scopes.py",
            _SECURITY + "test_scope_escalation.py",
            _SECURITY + "test_lifetimes.py",
            _SECURITY + "test_mutation_survivors.py",
            _SECURITY + "test_mutation_survivors_client_credentials.py",
        ),
    ),
    "resource_scope": Target(
        ("lab.pdp.zts.grants.resource_scope.*",),
        (
            "tests/pdp/test_scopes.py",
            "tests/pdp/test_client_credentials.py",
            _SECURITY + "test_scope_escalation.py",  # the admin role left out of default scopes
            _SECURITY + "test_mutation_survivors_resource_scope.py",
        ),
        ("--pdp-in-process",),
    ),
    "core": Target(
        ("lab.pdp.core.*",),
        (
            "tests/pdp/test_zms.py",
            "tests/pdp/test_client_credentials.py",
            _SECURITY + "test_policy_matching.py",
            _SECURITY + "test_mutation_survivors.py",
            _SECURITY + "test_mutation_survivors_core.py",
        ),
        ("--pdp-in-process",),
    ),
    # Direct, in-process tests only: the resource servers' threads that also run this module
    # are invisible to mutmut's per-test map, and these take under a second together.
    "signed": Target(
        ("lab.policy.signed.*",),
        (
            "tests/policy",
            _SECURITY + "test_policy_matching.py",
            _SECURITY + "test_mutation_survivors_signed.py",
        ),
    ),
    "engine": Target(
        ("lab.policy.engine.*",),
        (
            "tests/policy",
            _SECURITY + "test_policy_matching.py",
            _SECURITY + "test_mutation_survivors_engine.py",
        ),
    ),
    "base": Target(
        ("lab.pdp.zts.grants.base.*",),
        (
            _SECURITY + "test_mutation_survivors.py",
            _SECURITY + "test_mutation_survivors_base.py",
        ),
    ),
    # In process with a stand-in PDP: the token endpoint runs this module in a server thread,
    # which mutmut's per-test map does not follow (the server tests showed up as "no tests").
    "client_auth": Target(
        ("lab.pdp.client_auth.*",),
        (
            _SECURITY + "test_mutation_survivors.py",
            _SECURITY + "test_mutation_survivors_client_auth.py",
        ),
    ),
}


def _existing(paths: tuple[str, ...]) -> list[str]:
    # A per-module survivors file exists only once a run found survivors there.
    from pathlib import Path

    return [p for p in paths if Path(p).exists()]


def run(name: str, only: list[str] | None) -> None:
    import mutmut
    import mutmut.__main__ as mutmut_main
    from mutmut.configuration import config

    target = TARGETS[name]
    mutmut._reset_globals()  # a second module must not reuse the first one's coverage map
    settings = config()  # read afresh from pyproject.toml after the reset
    settings.pytest_add_cli_args = [*settings.pytest_add_cli_args, *target.pytest_args]
    settings.pytest_add_cli_args_test_selection = _existing(target.tests)
    # mutmut times only each test's call phase (about 10 ms here), not the setup and teardown
    # of the PDP the test starts (about 0.6 s with loopback servers), so its wall bound per
    # mutant, (estimate + timeout_constant) x 15, came to ~25 s: a mutant whose killing test ran
    # late in a selection of 40 tests was reported "timeout", and a survivor would have been too.
    settings.timeout_constant = max(settings.timeout_constant, TIMEOUT_CONSTANT_S)
    mutmut_main._run(only or list(target.mutants), max_children=1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutate")
    parser.add_argument("modules", nargs="*", help=f"any of: {' '.join(TARGETS)}")
    parser.add_argument("--only", action="append", help="mutant name glob (repeatable)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {' '.join(TARGETS)}")
    if not args.modules:
        for name, target in TARGETS.items():
            print(f"{name}: {' '.join(target.mutants)}")
        return 0
    for name in args.modules:
        print(f"== {name}", flush=True)
        run(name, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
