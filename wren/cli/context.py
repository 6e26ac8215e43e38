"""What every wrenctl command shares: the datastore connection and the error-to-message rule.

Commands get the client through `CliContext.client()`, which connects on first use (so `--help`
and `version` never need a datastore) from the same environment variables calicoctl reads.
Tests put a `CliContext` with an in-memory backend into `CliRunner.invoke(..., obj=...)`.

Commands from other modules (IPAM, node status) use the same two pieces:

    @click.command()
    @pass_cli
    @reports_errors
    def status(cli: CliContext) -> None:
        client = cli.client()
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

import click

from wren.client import Client
from wren.datastore.backend import Backend
from wren.errors import DatastoreUnavailable, WrenError
from wren.kinds import Kind, UnknownKind, kind_by_name

__all__ = [
    "CliContext",
    "CliError",
    "describe_datastore",
    "kind_argument",
    "pass_cli",
    "reports_errors",
]

P = ParamSpec("P")
T = TypeVar("T")


class CliError(click.ClickException):
    """Printed as `Error: <message>` on stderr; exit code 1."""


def describe_datastore(env: Mapping[str, str]) -> str:
    """Which datastore the environment points at, for messages: `etcdv3 at http://...`."""
    kind = (env.get("DATASTORE_TYPE") or "kubernetes").strip().lower()
    if kind == "etcdv3":
        return f"etcdv3 at ETCD_ENDPOINTS={env.get('ETCD_ENDPOINTS', '')!r}"
    kubeconfig = env.get("KUBECONFIG")
    if kubeconfig:
        return f"kubernetes via KUBECONFIG={kubeconfig!r}"
    return "kubernetes (in-cluster service account; set KUBECONFIG to use a kubeconfig file)"


class CliContext:
    """The lazily opened datastore of one wrenctl run."""

    def __init__(
        self,
        *,
        backend_factory: Callable[[], Backend] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._factory = backend_factory
        self._client: Client | None = None

    @property
    def datastore(self) -> str:
        """The datastore the environment selects, for messages."""
        return describe_datastore(self.env)

    def client(self) -> Client:
        """The datastore client; a bad environment is a CliError naming the variable."""
        if self._client is None:
            if self._factory is not None:
                backend = self._factory()
            else:
                from wren.datastore.connect import backend_from_env

                try:
                    backend = backend_from_env(self.env)
                except ValueError as e:
                    raise CliError(f"datastore configuration: {e}") from None
            self._client = Client(backend)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.backend.close()
            self._client = None


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


def reports_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn Wren's errors into one-line messages and exit code 1 instead of tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except DatastoreUnavailable as e:
            ctx = click.get_current_context(silent=True)
            where = (ctx.find_object(CliContext) if ctx else None) or CliContext()
            raise CliError(f"cannot reach the datastore ({where.datastore}): {e}") from None
        except (WrenError, UnknownKind) as e:
            raise CliError(str(e)) from None

    return wrapper


def kind_argument(value: str) -> Kind:
    """A KIND argument in any spelling calicoctl takes (ippool, ippools, ipPool, pool)."""
    try:
        return kind_by_name(value)
    except UnknownKind as e:
        raise click.BadParameter(str(e)) from None
