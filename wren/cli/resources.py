"""calicoctl's resource commands: create, apply, replace, delete, get, patch, label.

File commands are all-or-nothing as far as Wren can make them: every document is validated
(`wren.cli.documents`), then the whole batch is rehearsed against an in-memory copy of the
stored resources it touches, through the same `Client` rules the real write uses (overlapping
pools, fixed CIDR and blockSize, create of an existing name). Only when the rehearsal passes
is anything written. A failure during the real writes (another writer, the datastore going
away) is reported with how far it got, as calicoctl's "Partial success" does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click

from wren.cli.context import CliContext, CliError, kind_argument, pass_cli, reports_errors
from wren.cli.documents import Document, DocumentError, read_documents, validate_documents
from wren.cli.edits import EditError, apply_label_changes, parse_label_args, patch_body
from wren.cli.output import OUTPUT_FORMATS, render
from wren.client import Client
from wren.datastore.memory import MemoryBackend
from wren.errors import (
    AlreadyExists,
    Conflict,
    DatastoreUnavailable,
    NotFound,
    PermanentError,
    WrenError,
)
from wren.ipam.allocator import Ipam
from wren.kinds import Kind, kind_by_name
from wren.log import get_logger
from wren.model import Resource, parse

__all__ = ["COMMANDS", "EDIT_ATTEMPTS", "read_sources"]

Operation = Literal["create", "apply", "replace", "delete"]
_PAST = {"create": "created", "apply": "applied", "replace": "replaced", "delete": "deleted"}
_SUFFIXES = (".yaml", ".yml", ".json")
# patch and label re-read and retry this often when someone else writes in between.
EDIT_ATTEMPTS = 3

_log = get_logger(__name__)


def _kind(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Kind | None:
    return None if value is None else kind_argument(value)


namespace_option = click.option(
    "-n", "--namespace", default=None,
    help="Namespace of namespaced kinds (WorkloadEndpoint); default 'default'.",
)


# -- writing a batch of documents ---------------------------------------------------------------
def _write(client: Client, res: Resource, *, op: Operation, skip: bool) -> bool:
    """One write; False when skipped (--skip-exists / --skip-not-exists)."""
    if op == "create":
        try:
            client.create(res)
        except AlreadyExists:
            if not skip:
                raise
            return False
    elif op == "apply":
        client.apply(res)
    elif op == "replace":
        client.replace(res)
    else:
        try:
            client.delete(type(res), res.metadata.name, res.metadata.namespace,
                          resource_version=res.metadata.resource_version)
        except NotFound:
            if not skip:
                raise
            return False
    return True


def _rehearse(
    client: Client, batch: list[tuple[Document, Resource]], *, op: Operation, skip: bool
) -> None:
    """Run the batch against a copy of what it touches; DocumentError lists what would fail."""
    kinds = {res.kind for _, res in batch}
    if any(res.KIND == "IPPool" for _, res in batch):
        kinds.add(kind_by_name("IPAMBlock"))  # a new pool must fit the blocks already carved
    snapshot = MemoryBackend()
    for kind in kinds:
        for body in client.backend.list(kind).items:
            snapshot.create(body)
    rehearsal = Client(snapshot)
    problems = []
    for doc, res in batch:
        try:
            # The real write checks the resourceVersion; the copy has versions of its own.
            _write(rehearsal, res.with_metadata(resource_version=""), op=op, skip=skip)
        except PermanentError as e:
            problems.append(f"{doc.where}: {e}")
    if problems:
        raise DocumentError(problems)


def _summary(batch: list[tuple[Document, Resource]], *, op: Operation, done: int) -> str:
    kinds = {res.KIND for _, res in batch}
    what = f"'{next(iter(kinds))}' resource(s)" if len(kinds) == 1 else "resource(s)"
    return f"Successfully {_PAST[op]} {done} {what}"


def read_sources(path: str) -> list[Document]:
    """Documents of a file, of every .yaml/.yml/.json file in a directory (as calicoctl takes
    a directory), or of stdin for '-'. All files are read before any is validated."""
    if path == "-":
        return read_documents(sys.stdin.read(), source="<stdin>")
    root = Path(path)
    files = (sorted(f for f in root.iterdir() if f.is_file() and f.suffix in _SUFFIXES)
             if root.is_dir() else [root])
    if not files:
        raise DocumentError([f"{path}: no {', '.join(_SUFFIXES)} files in this directory"])
    docs: list[Document] = []
    problems: list[str] = []
    for file in files:
        try:
            docs += read_documents(file.read_text(), source=str(file))
        except DocumentError as e:
            problems += e.problems
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{file}: cannot read: {e}")
    if problems:
        raise DocumentError(problems)
    return docs


def _run_file(
    cli: CliContext, path: str, *, op: Operation, namespace: str | None, skip: bool
) -> None:
    try:
        batch = validate_documents(read_sources(path), namespace=namespace)
        client = cli.client()
        _rehearse(client, batch, op=op, skip=skip)
    except DocumentError as e:
        count = len(e.problems)
        raise CliError(
            f"nothing was {_PAST[op]}: {count} problem{'s' if count > 1 else ''} found\n"
            + "\n".join(f"  {p}" for p in e.problems)
        ) from None
    done = skipped = 0
    for doc, res in batch:
        try:
            if _write(client, res, op=op, skip=skip):
                done += 1
                _log.debug("written", op=op, kind=res.KIND, name=res.metadata.name,
                           namespace=res.metadata.namespace, source=doc.where)
            else:
                skipped += 1
        except WrenError as e:
            message = f"{doc.where}: {e}"
            if done or skipped:
                message += (f"\nPartial success: {_PAST[op]} the first {done + skipped} of "
                            f"{len(batch)} resources; nothing after {doc.where} was written")
            if isinstance(e, DatastoreUnavailable):
                raise DatastoreUnavailable(message) from None
            raise CliError(message) from None
    line = _summary(batch, op=op, done=done)
    if skipped:
        reason = "already existed" if op == "create" else "did not exist"
        line += f" ({skipped} skipped: {reason})"
    click.echo(line)


_FILE_HELP = ("File with one or more resources (YAML or JSON, '---'-separated), a directory "
              "of such files, or '-' for stdin.")
_FILE_TYPE = click.Path(exists=True, dir_okay=True, allow_dash=True)


@click.command()
@click.option("-f", "--filename", required=True, type=_FILE_TYPE, help=_FILE_HELP)
@click.option("--skip-exists", is_flag=True, help="Skip resources that already exist.")
@namespace_option
@pass_cli
@reports_errors
def create(cli: CliContext, *, filename: str, skip_exists: bool, namespace: str | None) -> None:
    """Create the resources in a file; fails if one already exists.

    Every document is validated first: if any is invalid, nothing is created.
    """
    _run_file(cli, filename, op="create", namespace=namespace, skip=skip_exists)


@click.command()
@click.option("-f", "--filename", required=True, type=_FILE_TYPE, help=_FILE_HELP)
@namespace_option
@pass_cli
@reports_errors
def apply(cli: CliContext, *, filename: str, namespace: str | None) -> None:
    """Create or update the resources in a file (what `get -o yaml` prints is accepted).

    Every document is validated first: if any is invalid, nothing is written.
    """
    _run_file(cli, filename, op="apply", namespace=namespace, skip=False)


@click.command()
@click.option("-f", "--filename", required=True, type=_FILE_TYPE, help=_FILE_HELP)
@namespace_option
@pass_cli
@reports_errors
def replace(cli: CliContext, *, filename: str, namespace: str | None) -> None:
    """Replace existing resources with the ones in a file; fails if one does not exist.

    A resourceVersion in the file makes the replace conditional on it (as read by `get`).
    """
    _run_file(cli, filename, op="replace", namespace=namespace, skip=False)


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", type=_FILE_TYPE, default=None, help=_FILE_HELP)
@click.option("--skip-not-exists", is_flag=True, help="Succeed for resources that do not exist.")
@namespace_option
@pass_cli
@reports_errors
def delete(
    cli: CliContext,
    *,
    args: tuple[str, ...],
    filename: str | None,
    skip_not_exists: bool,
    namespace: str | None,
) -> None:
    """Delete resources: `delete KIND NAME...` or `delete -f FILE`."""
    if filename is not None:
        if args:
            raise click.UsageError("give either -f FILE or KIND NAME..., not both")
        _run_file(cli, filename, op="delete", namespace=namespace, skip=skip_not_exists)
        return
    if len(args) < 2:
        raise click.UsageError("give KIND NAME... (e.g. `wrenctl delete ippool pool1`) or -f FILE")
    kind = kind_argument(args[0])
    ns = (namespace or "default") if kind.namespaced else None
    client = cli.client()
    done = 0
    for name in args[1:]:
        try:
            client.delete(kind, name, ns)
            done += 1
        except NotFound:
            if not skip_not_exists:
                raise
        if kind.name == "Node":
            # As calicoctl: a deleted node's addresses, endpoints and blocks go with it.
            freed = Ipam(client.backend).release_node(name)
            click.echo(f"Released {len(freed.ips)} address(es), {freed.endpoints} endpoint(s) "
                       f"and {freed.blocks} block(s) of node {name!r}")
    click.echo(f"Successfully deleted {done} '{kind.name}' resource(s)")


# -- reading --------------------------------------------------------------------------------------
@click.command()
@click.argument("kind", callback=_kind)
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="table",
              show_default=True, help="table and wide as calicoctl prints; yaml/json re-appliable.")
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Namespaced kinds: every namespace.")
@pass_cli
@reports_errors
def get(
    cli: CliContext,
    *,
    kind: Kind,
    names: tuple[str, ...],
    output: str,
    namespace: str | None,
    all_namespaces: bool,
) -> None:
    """Show resources of KIND (any spelling: ippool, ippools, ipPool, pool), all or by NAME."""
    client = cli.client()
    ns = None if all_namespaces or not kind.namespaced else (namespace or "default")
    found: list[Resource] = []
    missing: list[str] = []
    if names:
        name_ns = (namespace or "default") if kind.namespaced else None
        for name in names:
            try:
                found.append(client.get(kind, name, name_ns))
            except NotFound as e:
                missing.append(str(e))
    else:
        found, invalid = client.list_with_errors(kind, ns)
        for bad in invalid:
            click.echo(f"Warning: skipped stored {bad.kind} {bad.name!r}, it does not validate: "
                       f"{bad.error}", err=True)
    if found or not names:
        click.echo(render(kind, found, output=output, as_list=len(names) != 1,
                          namespaces=kind.namespaced and ns is None), nl=False)
    if missing:
        raise CliError("\n".join(missing))


# -- editing --------------------------------------------------------------------------------------
def _edit(
    cli: CliContext,
    kind: Kind,
    *,
    name: str,
    namespace: str | None,
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> Resource:
    """Read, change (a function body -> body), re-validate and write conditionally; retries
    when someone else wrote in between."""
    client = cli.client()
    ns = (namespace or "default") if kind.namespaced else None
    attempts = 0
    while True:
        current = client.get(kind, name, ns)
        new = parse(change(current.to_body()))
        try:
            return client.update(new)
        except Conflict:
            attempts += 1
            if attempts >= EDIT_ATTEMPTS:
                raise


@click.command()
@click.argument("kind", callback=_kind)
@click.argument("name")
@click.option("-p", "--patch", "patch_text", required=True,
              help='JSON merge patch, e.g. \'{"spec":{"disabled":true}}\'; null deletes a field.')
@namespace_option
@pass_cli
@reports_errors
def patch(
    cli: CliContext, *, kind: Kind, name: str, patch_text: str, namespace: str | None
) -> None:
    """Change fields of one resource with a JSON merge patch; the result is validated again."""
    try:
        patch_doc = json.loads(patch_text)
    except json.JSONDecodeError as e:
        raise CliError(f"--patch is not valid JSON: {e}") from None
    try:
        _edit(cli, kind, name=name, namespace=namespace,
              change=lambda body: patch_body(body, patch_doc))
    except EditError as e:
        raise CliError(f"{kind.name} {name!r}: {e}") from None
    click.echo(f"Successfully patched 1 '{kind.name}' resource")


@click.command()
@click.argument("kind", callback=_kind)
@click.argument("name")
@click.argument("labels", nargs=-1, required=True)
@click.option("--overwrite", is_flag=True, help="Allow changing the value of an existing label.")
@click.option("--remove", is_flag=True, help="Remove the given label keys instead of setting.")
@namespace_option
@pass_cli
@reports_errors
def label(
    cli: CliContext,
    *,
    kind: Kind,
    name: str,
    labels: tuple[str, ...],
    overwrite: bool,
    remove: bool,
    namespace: str | None,
) -> None:
    """Set labels (key=value) on a resource, or remove them (--remove key).

    Example: wrenctl label node rr1 route-reflector=true
    """
    try:
        changes = parse_label_args(labels, remove=remove)

        def relabel(body: dict[str, Any]) -> dict[str, Any]:
            meta = dict(body.get("metadata") or {})
            meta["labels"] = apply_label_changes(meta.get("labels") or {}, changes,
                                                 overwrite=overwrite)
            return {**body, "metadata": meta}

        _edit(cli, kind, name=name, namespace=namespace, change=relabel)
    except EditError as e:
        raise CliError(f"{kind.name} {name!r}: {e}") from None
    keys = ", ".join(k for k, _ in changes)
    if remove:
        click.echo(f"Successfully removed label(s) {keys} from {kind.name} {name!r}")
    else:
        click.echo(f"Successfully set label(s) {keys} on {kind.name} {name!r}")


COMMANDS: list[click.Command] = [create, apply, replace, delete, get, patch, label]
