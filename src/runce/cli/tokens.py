"""``runce tokens create|list|revoke``: the HTTP API's bearer tokens
(docs/http-api.md#tokens-scopes-and-projects)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runce.cli import output
from runce.cli.root import cli, config_options, load_cli_config

if TYPE_CHECKING:
    from runce.domain.tokens import Token

SCOPES = ("runs:read", "runs:write", "runs:work")


def _tokens() -> Any:
    from runce.runs import tokens

    return tokens


def _token_dict(token: Token) -> dict[str, Any]:
    """A token as the commands show it: never its hash."""
    return {
        "id": token.id,
        "name": token.name,
        "scopes": list(token.scopes),
        "projects": list(token.projects),
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
    }


@cli.group()
def tokens() -> None:
    """Bearer tokens for the HTTP API (`runce serve`): create, list, revoke."""


@tokens.command(name="create")
@config_options
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the token may do (repeat): runs:read, runs:write, runs:work (workers).",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    metavar="PROJECT",
    help="Bind the token to this project (repeat for several; default: every project).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
def create(
    config_path: Path | None,
    tasks_dir: Path | None,
    name: str,
    scopes: tuple[str, ...],
    projects: tuple[str, ...],
    as_json: bool,
) -> None:
    """Make a token and print it once: only its hash is stored.

    The token goes to stdout alone (TOKEN=$(runce tokens create ci --scope runs:read));
    what it may do goes to stderr.
    """
    cfg = load_cli_config(config_path, tasks_dir)
    made = _tokens().create_token(name, scopes, projects, config=cfg)
    if as_json:
        output.echo_json({**_token_dict(made.token), "token": made.text})
        return
    reach = ", ".join(made.token.projects) or "every project"
    click.echo(
        f"token {made.token.id} ({name}): {', '.join(made.token.scopes)} on {reach}; "
        "shown once, keep it secret",
        err=True,
    )
    click.echo(made.text)


@tokens.command(name="list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (no secrets, no hashes).")
def list_(config_path: Path | None, tasks_dir: Path | None, as_json: bool) -> None:
    """Every token with its scopes, projects and use; never the token itself."""
    found = _tokens().list_tokens(config=load_cli_config(config_path, tasks_dir))
    if as_json:
        output.echo_json([_token_dict(t) for t in found])
        return
    rows = [
        [
            "REVOKED" if t.revoked else "ACTIVE",
            t.id,
            t.name,
            ",".join(t.scopes),
            ",".join(t.projects) or "*",
            output.when(t.created_at),
            output.when(t.last_used_at),
        ]
        for t in found
    ]
    output.table(rows, ["STATE", "ID", "NAME", "SCOPES", "PROJECTS", "CREATED (UTC)", "LAST USED"])
    if not rows:
        click.echo("no tokens yet: `runce tokens create NAME --scope runs:read` makes one")


@tokens.command(name="revoke")
@config_options
@click.argument("token_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked token as JSON.")
def revoke(config_path: Path | None, tasks_dir: Path | None, token_id: str, as_json: bool) -> None:
    """Revoke a token at once (its requests get 401); revoking twice is harmless."""
    token = _tokens().revoke_token(token_id, config=load_cli_config(config_path, tasks_dir))
    if as_json:
        output.echo_json(_token_dict(token))
        return
    click.echo(f"revoked token {token.id} ({token.name}) at {output.when(token.revoked_at)} UTC")
