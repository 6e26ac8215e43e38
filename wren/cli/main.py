"""wrenctl's entry point: the command group and the list of modules that add commands to it.

To add a command group from another module, give that module a `COMMANDS` list of click
commands or groups and add its dotted name to `COMMAND_MODULES` below: one line. Commands get
the datastore with `@pass_cli` and `cli.client()`, and errors become messages with
`@reports_errors` (see `wren.cli.context`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import click

from wren.cli.context import CliContext
from wren.log import configure_logging

__all__ = ["COMMAND_MODULES", "WrenctlGroup", "build_cli", "cli", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "wren.cli.ipam",
    "wren.cli.node",
    "wren.cli.resources",
    "wren.cli.version",
)

_HELP = """Manage Wren's (Calico's) resources: IPPool, BGPPeer, BGPConfiguration, Node, ...

\b
The datastore comes from the environment, as for calicoctl:
  DATASTORE_TYPE   kubernetes (default) or etcdv3
  KUBECONFIG       kubeconfig file (kubernetes; in-cluster account when unset)
  ETCD_ENDPOINTS   http://host:2379[,...] (etcdv3)
"""


class _UsageError(click.UsageError):
    exit_code = 1


class WrenctlGroup(click.Group):
    """calicoctl exits 1 on every error, command-line mistakes included; click's default for
    those is 2. Scripts written for calicoctl test for 1."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            if e.exit_code == 1:
                raise
            raise _UsageError(e.format_message(), e.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if e.exit_code == 1:
                raise
            raise _UsageError(e.format_message(), e.ctx) from None


def build_cli(modules: Sequence[str] = COMMAND_MODULES) -> click.Group:
    """The `wrenctl` group with the commands of every module in `modules`."""

    @click.group(cls=WrenctlGroup, help=_HELP,
                 context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--log-level", default=None, metavar="LEVEL",
                  help="Log level on stderr (default: LOG_LEVEL or warning).")
    @click.pass_context
    def group(ctx: click.Context, log_level: str | None) -> None:
        configure_logging(log_level or os.environ.get("LOG_LEVEL") or "warning")
        cli_ctx = ctx.ensure_object(CliContext)
        ctx.call_on_close(cli_ctx.close)

    for name in modules:
        module = importlib.import_module(name)
        for command in module.COMMANDS:
            group.add_command(command)
    return group


cli = build_cli()


def main() -> None:
    """Console script `wrenctl`."""
    cli(prog_name="wrenctl")
