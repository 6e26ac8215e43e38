"""Declarative JSON <-> dataclass mapping used by every resource spec.

Each spec attribute carries (in `dataclasses.field(metadata=...)`) its camelCase JSON key and a
converter that both checks and converts the JSON value. One generic loader then gives every kind
the same behaviour: unknown keys are errors with their dotted path, `null` means "absent" (as in
Go's JSON decoding into omitempty fields), and `to_body` writes only what differs from the
default, so a resource read back from the store can be fed to `apply` again unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "AS_NUMBER",
    "BOOL",
    "DURATION",
    "MAC",
    "NAME",
    "OPAQUE",
    "STR",
    "Addr",
    "Conv",
    "Enum",
    "FieldError",
    "Iface",
    "Int",
    "ListOf",
    "MapOf",
    "Net",
    "Nullable",
    "Obj",
    "Str",
    "dump_obj",
    "format_duration",
    "j",
    "load_obj",
    "parse_as_number",
    "parse_duration",
]

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class FieldError(Exception):
    """A rule broken at `path`; `wren.model.parse` turns it into a ValidationError."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


def sub(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Conv(ABC, Generic[T]):
    """Checks and converts one JSON value, and writes it back."""

    @abstractmethod
    def load(self, value: Any, path: str) -> T:
        """The Python value of a JSON value; FieldError(path, rule) if it breaks a rule."""

    def dump(self, value: T) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class JsonField:
    key: str
    conv: Conv[Any]
    always: bool = False  # written by to_body even when equal to the default
    required: bool = False


def j(key: str, conv: Conv[Any], *, always: bool = False, required: bool = False) -> dict[str, Any]:
    """Field metadata: `field(default=..., metadata=j("cidr", Net()))`."""
    return {"wren": JsonField(key, conv, always, required)}


# -- scalars -------------------------------------------------------------------------------------
class Str(Conv[str]):
    def __init__(
        self, check: Callable[[str], str | None] | None = None, *, allow_empty: bool = True
    ) -> None:
        self._check = check
        self._allow_empty = allow_empty

    def load(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise FieldError(path, f"must be a string, not {_json_type(value)}")
        if not value and not self._allow_empty:
            raise FieldError(path, "must not be empty")
        if value and self._check is not None:
            problem = self._check(value)
            if problem:
                raise FieldError(path, problem)
        return value


STR = Str()


class _Bool(Conv[bool]):
    """Also takes "true"/"false": Calico's BlockAffinity CRD stores `deleted` as a string."""

    def load(self, value: Any, path: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise FieldError(path, f"must be true or false, not {value!r}")


BOOL = _Bool()


class Int(Conv[int]):
    def __init__(self, lo: int | None = None, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi

    def load(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise FieldError(path, f"must be an integer, not {value!r}")
            value = int(value)
        number: int = value
        if self.lo is not None and number < self.lo:
            raise FieldError(path, f"must be at least {self.lo}, not {number}")
        if self.hi is not None and number > self.hi:
            raise FieldError(path, f"must be at most {self.hi}, not {number}")
        return number


class Enum(Conv[str]):
    """One of fixed values. `ignore_case` where Calico's pattern is `(?i)`; the value is then
    kept as written so it round-trips."""

    def __init__(self, *values: str, ignore_case: bool = False) -> None:
        self.values = values
        self.ignore_case = ignore_case

    def load(self, value: Any, path: str) -> str:
        ok = value in self.values or (
            self.ignore_case
            and isinstance(value, str)
            and value.lower() in {v.lower() for v in self.values}
        )
        if not ok:
            allowed = ", ".join(self.values)
            raise FieldError(path, f"unknown value {value!r} (allowed: {allowed})")
        return str(value)


class _Opaque(Conv[Any]):
    """A value Wren does not interpret but must keep (a Felix knob we do not use)."""

    def load(self, value: Any, path: str) -> Any:
        return value


OPAQUE = _Opaque()


class Nullable(Conv[T | None]):
    """For list items that may be null (IPAMBlock.allocations)."""

    def __init__(self, inner: Conv[T]) -> None:
        self.inner = inner

    def load(self, value: Any, path: str) -> T | None:
        return None if value is None else self.inner.load(value, path)

    def dump(self, value: T | None) -> Any:
        return None if value is None else self.inner.dump(value)


# -- addresses -----------------------------------------------------------------------------------
class Net(Conv[IPNetwork]):
    """A CIDR. `strict` rejects host bits (10.0.0.1/24), as Calico does for pools."""

    def __init__(self, version: int | None = None, *, strict: bool = True) -> None:
        self.version, self.strict = version, strict

    def load(self, value: Any, path: str) -> IPNetwork:
        if not isinstance(value, str):
            raise FieldError(path, f"must be a CIDR string, not {_json_type(value)}")
        _go_compatible(value, path, "CIDR")
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise FieldError(path, f"{value!r} is not a valid CIDR") from None
        if self.strict and net.network_address != ipaddress.ip_interface(value).ip:
            raise FieldError(path, f"{value!r} has host bits set (network is {net})")
        _check_version(net.version, self.version, value, path)
        return net

    def dump(self, value: IPNetwork) -> Any:
        return str(value)


class Addr(Conv[IPAddress]):
    def __init__(self, version: int | None = None) -> None:
        self.version = version

    def load(self, value: Any, path: str) -> IPAddress:
        if not isinstance(value, str):
            raise FieldError(path, f"must be an IP address string, not {_json_type(value)}")
        _go_compatible(value, path, "IP address")
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise FieldError(path, f"{value!r} is not a valid IP address") from None
        _check_version(addr.version, self.version, value, path)
        return addr

    def dump(self, value: IPAddress) -> Any:
        return str(value)


class Iface(Conv[IPInterface]):
    """An address with its prefix length (Node.bgp.ipv4Address: 192.0.2.10/24)."""

    def __init__(self, version: int | None = None) -> None:
        self.version = version

    def load(self, value: Any, path: str) -> IPInterface:
        if not isinstance(value, str):
            raise FieldError(path, f"must be an address/prefix string, not {_json_type(value)}")
        _go_compatible(value, path, "address/prefix")
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            raise FieldError(path, f"{value!r} is not a valid address/prefix") from None
        _check_version(iface.version, self.version, value, path)
        return iface

    def dump(self, value: IPInterface) -> Any:
        return str(value)


_PREFIX = re.compile(r"^\d{1,3}$")


def _go_compatible(value: str, path: str, what: str) -> None:
    """Python's ipaddress takes forms Go's net package (and so Calico) rejects: zoned IPv6
    addresses (fe80::1%eth0) and netmask prefixes (10.0.0.0/255.0.0.0). Reject them too, so a
    file Wren accepts is one Calico accepts."""
    if "%" in value:
        raise FieldError(path, f"{value!r} is not a valid {what} (no %zone allowed)")
    _, slash, prefix = value.partition("/")
    if slash and not _PREFIX.match(prefix):
        raise FieldError(path, f"{value!r} is not a valid {what} (prefix must be a length)")


def _check_version(got: int, want: int | None, value: str, path: str) -> None:
    if want is not None and got != want:
        raise FieldError(path, f"{value!r} is not an IPv{want} value")


# -- names, MACs, AS numbers, durations ------------------------------------------------------------
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def check_name(value: str) -> str | None:
    """Calico's (Kubernetes') DNS-1123 subdomain rule for resource names."""
    if len(value) > 253:
        return f"name is too long ({len(value)} > 253 characters)"
    if not _SUBDOMAIN.match(value):
        return (
            f"invalid name {value!r}: lower case alphanumeric characters, '-' or '.', "
            "starting and ending with an alphanumeric character"
        )
    return None


NAME = Str(check_name)

# The 6-octet forms Go's net.ParseMAC takes: aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff.
_MAC = re.compile(
    r"^([0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\2[0-9a-fA-F]{2}){4}"
    r"|[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4})$"
)


class _MACAddress(Str):
    """A MAC in any form Go accepts, kept as lower-case aa:bb:cc:dd:ee:ff so the dataplane can
    compare and program it without caring how the user spelled it."""

    def load(self, value: Any, path: str) -> str:
        text = super().load(value, path)
        if not text:
            return text
        if not _MAC.match(text):
            raise FieldError(path, f"{text!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        digits = re.sub(r"[:.-]", "", text).lower()
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


MAC = _MACAddress()

AS_MAX = 4294967295


def parse_as_number(value: Any) -> int:
    """An AS number as Calico takes it: 64512, "64512", or asdot "1.10" (= 1*65536 + 10)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an AS number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\d+", value):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        high, low = (int(p) for p in value.split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"{value!r}: each half of an asdot AS number must be at most 65535")
        number = (high << 16) | low
    else:
        raise ValueError(f"{value!r} is not an AS number (a number or asdot like 1.10)")
    if not 0 < number <= AS_MAX:
        raise ValueError(f"AS number {number} out of range 1..{AS_MAX}")
    return number


class _ASNumber(Conv[int]):
    def load(self, value: Any, path: str) -> int:
        try:
            return parse_as_number(value)
        except ValueError as e:
            raise FieldError(path, str(e)) from None


AS_NUMBER = _ASNumber()

MAX_DURATION_SECONDS = (2**63 - 1) / 1e9
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}


def parse_duration(text: str) -> datetime.timedelta:
    """Go's time.ParseDuration format ("90s", "1m30s", "2h"), as Kubernetes' metav1.Duration."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return datetime.timedelta(0)
    pos, seconds = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration (like 90s, 1m30s, 2h)")
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f"{text!r} is not a duration (like 90s, 1m30s, 2h)")
    if seconds > MAX_DURATION_SECONDS:
        # Go's Duration is an int64 of nanoseconds: about 292 years.
        raise ValueError(f"duration {text!r} is too long")
    return datetime.timedelta(seconds=-seconds if text.startswith("-") else seconds)


def format_duration(value: datetime.timedelta) -> str:
    """Go's Duration.String() for whole-millisecond values: 2m0s, 1h0m0s, 500ms."""
    total_ms = round(value.total_seconds() * 1000)
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{sign}{total_ms}ms"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:g}"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


class _Duration(Conv[datetime.timedelta]):
    def load(self, value: Any, path: str) -> datetime.timedelta:
        if not isinstance(value, str):
            raise FieldError(path, f"must be a duration string like 120s, not {value!r}")
        try:
            return parse_duration(value)
        except ValueError as e:
            raise FieldError(path, str(e)) from None

    def dump(self, value: datetime.timedelta) -> Any:
        return format_duration(value)


DURATION = _Duration()


# -- containers --------------------------------------------------------------------------------
class ListOf(Conv[tuple[T, ...]]):
    def __init__(self, item: Conv[T]) -> None:
        self.item = item

    def load(self, value: Any, path: str) -> tuple[T, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise FieldError(path, f"must be a list, not {_json_type(value)}")
        return tuple(self.item.load(v, sub(path, i)) for i, v in enumerate(value))

    def dump(self, value: tuple[T, ...]) -> Any:
        return [self.item.dump(v) for v in value]


class MapOf(Conv[dict[str, T]]):
    def __init__(self, item: Conv[T], key_check: Callable[[str], str | None] | None = None) -> None:
        self.item, self.key_check = item, key_check

    def load(self, value: Any, path: str) -> dict[str, T]:
        if not isinstance(value, Mapping):
            raise FieldError(path, f"must be a mapping, not {_json_type(value)}")
        out: dict[str, T] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldError(path, f"key {k!r} must be a string")
            if self.key_check is not None and (problem := self.key_check(k)):
                raise FieldError(sub(path, k), problem)
            out[k] = self.item.load(v, sub(path, k))
        return out

    def dump(self, value: dict[str, T]) -> Any:
        return {k: self.item.dump(v) for k, v in value.items()}


class Obj(Conv[T]):
    """A nested object mapped onto a frozen dataclass."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls

    def load(self, value: Any, path: str) -> T:
        return load_obj(self.cls, value, path)

    def dump(self, value: T) -> Any:
        return dump_obj(value)


# -- the generic loader --------------------------------------------------------------------------
def _json_fields(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], JsonField]]:
    return [(f, f.metadata["wren"]) for f in dataclasses.fields(cls) if "wren" in f.metadata]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def load_obj(cls: type[T], data: Any, path: str) -> T:
    """Build `cls` from a JSON object: unknown keys, wrong types and broken rules are errors.

    After construction a `_check(path)` method on the class, if any, checks rules that span
    fields (IPIP and VXLAN both on) and may return a normalised copy (defaults that depend on
    other fields, like blockSize 26 vs 122).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise FieldError(path or "spec", f"must be an object, not {_json_type(data)}")
    fields = _json_fields(cls)
    by_key = {spec.key: (f, spec) for f, spec in fields}
    extra: Mapping[str, Any] | None = getattr(cls, "_IGNORED_KEYS", None)
    for key in data:
        if key not in by_key and not (extra and key in extra):
            raise FieldError(sub(path, str(key)), "unknown field")
    kwargs: dict[str, Any] = {}
    for key, (f, spec) in by_key.items():
        value = data.get(key)
        if value is None:
            if spec.required:
                raise FieldError(sub(path, key), "is required")
            continue
        kwargs[f.name] = spec.conv.load(value, sub(path, key))
    obj = cls(**kwargs)
    check: Callable[[str], T | None] | None = getattr(obj, "_check", None)
    if check is not None:
        checked = check(path)
        if checked is not None:
            obj = checked
    return obj


def dump_obj(obj: Any) -> dict[str, Any]:
    """The camelCase JSON form: set fields only, so the output round-trips through load_obj."""
    out: dict[str, Any] = {}
    for f, spec in _json_fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if not spec.always and value == _default(f):
            continue
        out[spec.key] = spec.conv.dump(value)
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def json_keys(cls: type[Any]) -> frozenset[str]:
    """The JSON keys a spec class maps."""
    return frozenset(spec.key for _, spec in _json_fields(cls))
