"""`wrenctl version`: which wrenctl this is and which datastore it would talk to."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import click

from wren.cli.context import CliContext, pass_cli

__all__ = ["COMMANDS", "client_version"]


def client_version() -> str:
    try:
        return version("wren")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


@click.command("version")
@pass_cli
def version_command(cli: CliContext) -> None:
    """Print the client version and the datastore the environment selects (no connection)."""
    click.echo(f"Client Version:    v{client_version()}")
    click.echo(f"Python:            {platform.python_version()}")
    click.echo(f"Datastore:         {cli.datastore}")


COMMANDS: list[click.Command] = [version_command]
