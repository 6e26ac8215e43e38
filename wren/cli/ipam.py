"""`wrenctl ipam show | check | release`: calicoctl's IPAM commands on Wren's IPAM library.

`show` answers "how full are my pools, and which node owns which block"; `check` finds what a
missed CNI DEL or a removed node leaves behind, and exits 1 when it finds anything, so it can
gate scripts; `release --ip` frees one address by hand (after `check` showed it leaked).
"""

from __future__ import annotations

import ipaddress

import click

from wren.cli.context import CliContext, CliError, pass_cli, reports_errors
from wren.ipam.allocator import Ipam
from wren.ipam.report import PoolUsage

__all__ = ["COMMANDS", "render_usage"]


def _pct(part: int, whole: int) -> str:
    return f"{part} ({(100 * part // whole) if whole else 0}%)"


def render_usage(pools: list[PoolUsage], *, show_blocks: bool) -> str:
    """A table like `calicoctl ipam show [--show-blocks]`, plus each block's node."""
    rows = [("GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE", "NODE")]
    for p in pools:
        rows.append(("IP Pool", str(p.cidr), str(p.size), _pct(p.in_use, p.size),
                     _pct(p.free, p.size), ""))
        if show_blocks:
            for b in p.blocks:
                rows.append(("Block", str(b.cidr), str(b.size), _pct(b.in_use, b.size),
                             _pct(b.free, b.size), b.node or "(none)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


@click.group("ipam")
def ipam_group() -> None:
    """IP address management: pool use, leak checks, manual release."""


@ipam_group.command("show")
@click.option("--show-blocks", is_flag=True, help="Also list every block, its use and its node.")
@pass_cli
@reports_errors
def show(cli: CliContext, show_blocks: bool) -> None:
    """Pool use: size, addresses in use, free (per block with --show-blocks)."""
    pools = Ipam(cli.client().backend).usage()
    if not pools:
        click.echo("No IP pools.")
        return
    click.echo(render_usage(pools, show_blocks=show_blocks))


@ipam_group.command("check")
@pass_cli
@reports_errors
def check(cli: CliContext) -> None:
    """Report leaked and doubly-used addresses, stale handles and orphaned blocks; exit 1 if
    anything is found."""
    report = Ipam(cli.client().backend).check()
    click.echo(f"Checked {report.blocks} blocks, {report.allocations} allocations, "
               f"{report.handles} handles.")
    if report.ok:
        click.echo("No problems found.")
        return
    for p in report.problems:
        click.echo(f"{p.kind:16} {p.subject:20} {p.detail}")
    click.echo(f"Found {len(report.problems)} problem(s). Free leaked addresses with "
               "`wrenctl ipam release --ip ADDR`.")
    raise SystemExit(1)


@ipam_group.command("release")
@click.option("--ip", "ips", multiple=True, required=True, metavar="ADDR",
              help="Address to free (repeatable).")
@pass_cli
@reports_errors
def release(cli: CliContext, ips: tuple[str, ...]) -> None:
    """Free addresses whoever holds them (use after `ipam check` reported them leaked)."""
    try:
        wanted = [ipaddress.ip_address(i) for i in ips]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ip") from None
    freed = set(Ipam(cli.client().backend).release_ips(wanted))
    for ip in wanted:
        click.echo(f"{'Released' if ip in freed else 'Not allocated:'} {ip}")
    if len(freed) != len(set(wanted)):
        raise CliError("some addresses were not allocated (nothing to release)")


COMMANDS: list[click.Command] = [ipam_group]
