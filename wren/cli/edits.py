"""The pure halves of `wrenctl patch` and `wrenctl label`: compute the new body or labels.

The commands read the stored resource, call these, re-validate the result with the model and
write it back conditionally on the resourceVersion they read, so a patch never lands on top of
a change it did not see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["EditError", "apply_label_changes", "merge_patch", "parse_label_args", "patch_body"]

# Kubernetes label syntax: optional DNS-subdomain prefix "/", name of 1-63, value of 0-63.
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class EditError(ValueError):
    """The requested edit is malformed or not allowed; the message says how to fix it."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def patch_body(body: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """`body` with `patch` merged in; refuses patches that would make it another resource."""
    if not isinstance(patch, Mapping):
        raise EditError("the patch must be a JSON object, e.g. '{\"spec\":{\"disabled\":true}}'")
    new = merge_patch(body, patch)
    for path in (("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")):
        if _get(new, path) != _get(body, path):
            raise EditError(f"a patch cannot change {'.'.join(path)}; create a new resource")
    return dict(new)


def _get(body: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


def check_label_key(key: str) -> str | None:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key {key!r}: prefix {prefix!r} must be a DNS subdomain (example.com)"
    if not _LABEL_NAME.match(name):
        return (f"label key {key!r}: the name must be 1-63 characters of letters, digits, "
                "'-', '_', '.', starting and ending with a letter or digit")
    return None


def check_label_value(key: str, value: str) -> str | None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (f"label {key}={value!r}: a value must be at most 63 characters of letters, "
                "digits, '-', '_', '.', starting and ending with a letter or digit")
    return None


def parse_label_args(args: Sequence[str], *, remove: bool) -> list[tuple[str, str | None]]:
    """`key=value` pairs to set, or (with remove) keys to drop (`key` or `key=...`)."""
    out: list[tuple[str, str | None]] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if problem := check_label_key(key):
            raise EditError(problem)
        if remove:
            out.append((key, None))
            continue
        if not sep:
            raise EditError(f"label {arg!r}: give key=value (or --remove to delete key {key!r})")
        if problem := check_label_value(key, value):
            raise EditError(problem)
        out.append((key, value))
    return out


def apply_label_changes(
    labels: Mapping[str, str],
    changes: Sequence[tuple[str, str | None]],
    *,
    overwrite: bool,
) -> dict[str, str]:
    """New labels, as calicoctl label does: changing an existing value needs `overwrite`,
    removing a key that is not there is an error."""
    out = dict(labels)
    for key, value in changes:
        if value is None:
            if key not in out:
                raise EditError(f"label {key!r} is not set, nothing to remove")
            del out[key]
        elif key in out and out[key] != value and not overwrite:
            raise EditError(
                f"label {key!r} is already set to {out[key]!r}; use --overwrite to change it"
            )
        else:
            out[key] = value
    return out
