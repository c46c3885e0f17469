"""``lab keygen PRINCIPAL`` and ``lab providers``: the lab's keys and the PDP's trusted IdPs."""

from __future__ import annotations

import json

import typer

from lab.cli import common

app = typer.Typer()
providers_app = typer.Typer(no_args_is_help=True)

KEY_FIELDS = ("kid", "public_ybase64", "path")


@app.command()
def keygen(
    principal: str = typer.Argument(
        ..., help="e.g. human.idjag-learner", callback=common.principal_argument
    ),
    print_field: str | None = typer.Option(
        None, "--print", help="Print only this: kid, public_ybase64 or path."
    ),
) -> None:
    """Create a principal's key pair (ES256, 0600) unless it exists; print its kid and public key.

    The public key is Athenz's YBase64 of the PEM, ready for a ZMS service's publicKeys.
    """
    from lab.oauth.jose import ensure_private_key, key_id, public_pem, ybase64_encode

    if print_field is not None and print_field not in KEY_FIELDS:
        common.fail(
            f"--print {print_field!r} is not one of {', '.join(KEY_FIELDS)}",
            "e.g. --print kid",
            common.ExitCode.USAGE,
        )
    path = common.settings().key_file(principal)
    key = ensure_private_key(path)
    facts = {
        "principal": principal,
        "kid": key_id(key),
        "public_ybase64": ybase64_encode(public_pem(key)),
        "path": str(path),
    }
    if print_field:
        typer.echo(facts[print_field])
    else:
        common.print_json(facts)


@providers_app.command("show")
def show_providers() -> None:
    """Print the identity providers the PDP trusts (JSON)."""
    common.print_json(common.backend().get_providers())


@providers_app.command("set")
def set_providers(
    providers: str = typer.Argument(
        ...,
        help='JSON array of {"issuerUri", "jwksUri", "principalTemplate"} ([] for none).',
    ),
) -> None:
    """Replace the PDP's trusted identity providers and make the PDP use them now."""
    try:
        data = json.loads(providers)
    except ValueError as exc:
        common.fail(
            f"the providers are not JSON ({exc})", "pass a JSON array", common.ExitCode.USAGE
        )
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        common.fail(
            "the providers must be a JSON array of objects", "e.g. '[]'", common.ExitCode.USAGE
        )
    common.backend().set_providers(data)
    common.err().print(f"The PDP now trusts {len(data)} identity provider(s).")
