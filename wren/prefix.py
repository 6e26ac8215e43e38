"""Prefixes parsed fast, for the BGP path, where 10,000 arrive in one burst.

`ipaddress.IPv4Network` hashes in Python (two `int()` calls and an xor on every dict lookup),
and a learned prefix is looked up about ten times between ExaBGP's JSON and the kernel: those
hashes were a third of the sidecar's time when it learned 10,000 prefixes, and parsing the text
octet by octet another tenth. `parse_prefix` reads an IPv4 prefix with `inet_pton` and returns a
`Prefix4`: an `IPv4Network` that computed its hash once and keeps the text it came from. It is
equal to, hashes like, and sorts with any other `IPv4Network` of the same prefix.

Below /31 it is built without `IPv4Network.__init__` (which re-parses and re-validates what
inet_pton already checked: half of the cost), by setting the fields that `IPv4Network.__init__`
and `IPv4Address.__init__` set. Those are CPython internals, so at import a few prefixes are
built both ways and compared; on any difference every prefix takes the plain path. The same
goes for `address_int`, which reads an address's integer field instead of calling `int()`.
"""

from __future__ import annotations

import ipaddress
import operator
import socket
from collections.abc import Callable

__all__ = [
    "Address4", "Prefix4", "address_int", "inside", "overlaps", "pack_prefix", "parse_address",
    "parse_prefix", "unpack_prefix", "unpack_prefixes",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Address4(ipaddress.IPv4Address):
    """An IPv4Address with its hash computed once (the same value): peers and next hops key
    the RIB's per-peer tables and are hashed several times per learned prefix, and
    `IPv4Address.__hash__` formats the address as hex text every time."""

    __slots__ = ("_hash",)
    version = 4  # a plain attribute where IPv4Address has a property (read per route)

    def __init__(self, address: object) -> None:
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def parse_address(text: str) -> IPAddress:
    """`ipaddress.ip_address(text)`, an `Address4` for IPv4; raises ValueError as it does."""
    try:
        return Address4(text)
    except ValueError:
        return ipaddress.ip_address(text)  # IPv6, or ip_address's own error


class Prefix4(ipaddress.IPv4Network):
    """An IPv4Network with its hash (the same value `IPv4Network.__hash__` gives) and, when
    made by `parse_prefix`, its canonical text kept."""

    _text: str | None = None
    # Plain attributes where IPv4Network has properties: each is read several times per
    # learned prefix (keys, containment, version checks), and a property is a Python call.
    version = 4
    max_prefixlen = 32
    prefixlen: int = 0  # always set per instance

    def __init__(self, address: object, strict: bool = True) -> None:
        super().__init__(address, strict)
        self._hash = hash(int(self.network_address) ^ int(self.netmask))
        self.prefixlen = self._prefixlen  # type: ignore[attr-defined]  # set by __init__

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        # `_prefixlen`: IPv4Network.__init__ formats errors before `prefixlen` is ours to set.
        return self._text or f"{self.network_address}/{self._prefixlen}"  # type: ignore[attr-defined]


def _has_ip_field() -> bool:
    return all(getattr(ipaddress.ip_address(a), "_ip", None) == int(ipaddress.ip_address(a))
               for a in ("10.1.2.3", "255.255.255.255", "fd00::1:2"))


_IP_FIELD = _has_ip_field()
#: `int(address)`: the `_ip` field int() returns, read directly (it skips a Python call per
#: address; checked at import, plain `int` if it ever differs).
address_int: Callable[[IPAddress], int] = operator.attrgetter("_ip") if _IP_FIELD else int

_MASKS = [ipaddress.IPv4Address(((1 << 32) - 1) ^ ((1 << (32 - n)) - 1)) for n in range(33)]
_MASK_INTS = [int(mask) for mask in _MASKS]
_fast_ok = False


def _fast(address: int, length: int) -> Prefix4 | None:
    """What `Prefix4((address, length))` makes, for 0 <= length <= 30; None for host bits, an
    address out of range or a longer prefix (a /31 or /32 is built differently)."""
    if length > 30:
        return None
    mask_int = _MASK_INTS[length]
    if address & mask_int != address:
        return None
    network_address = object.__new__(ipaddress.IPv4Address)
    network_address._ip = address  # type: ignore[attr-defined]  # what its __init__ sets
    prefix = object.__new__(Prefix4)
    prefix.network_address = network_address
    mask = _MASKS[length]
    prefix.netmask = mask
    prefix._prefixlen = length  # type: ignore[attr-defined]  # what __init__ sets
    prefix._hash = hash(address ^ mask_int)
    prefix.prefixlen = length
    return prefix


def _check_fast() -> bool:
    for text in ("0.0.0.0/0", "10.65.1.0/26", "192.168.0.0/16", "10.0.0.4/30", "255.255.255.0/24"):
        address, _, length = text.partition("/")
        fast = _fast(int(ipaddress.IPv4Address(address)), int(length))
        plain = ipaddress.IPv4Network(text)
        if fast is None or vars(fast) | {"_hash": 0} != vars(Prefix4(text)) | {"_hash": 0} \
                or fast != plain or hash(fast) != hash(plain) or str(fast) != str(plain) \
                or fast.broadcast_address != plain.broadcast_address:
            return False
    return True


def parse_prefix(text: str) -> IPNetwork:
    """`ipaddress.ip_network(text)` (strict: no host bits), a `Prefix4` for IPv4.

    Raises ValueError naming the text, as `ip_network` does."""
    address, slash, length = text.partition("/")
    try:
        packed = socket.inet_pton(socket.AF_INET, address)  # dotted quad only, no leading 0s
    except (OSError, TypeError):
        return ipaddress.ip_network(text)  # IPv6, or ip_network's own error
    if not slash:
        length = "32"
    if not (length.isascii() and length.isdigit()):
        raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 network")
    address_int, length_int = int.from_bytes(packed, "big"), int(length)
    prefix = _fast(address_int, length_int) if _fast_ok else None
    if prefix is None:  # also: host bits set, which the plain path reports as ip_network does
        prefix = Prefix4((address_int, length_int))
    if length[0] != "0" or length == "0":  # "/026" would print differently
        prefix._text = text if slash else f"{text}/32"
    return prefix


def inside(prefix: IPNetwork, net: IPNetwork) -> bool:
    """`prefix.subnet_of(net)` for networks of the same family, False across families. On
    integers: subnet_of builds two broadcast addresses for every new network, a fifth of the
    sidecar's time when it learned 10,000 prefixes."""
    if prefix.version != net.version or prefix.prefixlen < net.prefixlen:
        return False
    shift = prefix.max_prefixlen - net.prefixlen
    return address_int(prefix.network_address) >> shift == \
        address_int(net.network_address) >> shift


def overlaps(a: IPNetwork, b: IPNetwork) -> bool:
    """`a.overlaps(b)` for prefixes: one holds the other (False across families)."""
    return inside(a, b) or inside(b, a)


_fast_ok = _IP_FIELD and _check_fast()  # _fast sets the address's `_ip` field


# --- the agent ⇄ sidecar channel's form -------------------------------------------------------
# An IPv4 prefix travels as one int, `address << 8 | length`, IPv6 as its text. At 10,000
# prefixes a burst, reading text back (`parse_prefix`) was ~1.7 µs a prefix of the agent's
# ~13; building the prefix from the int is ~0.8.

_PACKED_MAX = (1 << 40) - 1
_JUST_INT = frozenset({int})


def pack_prefix(prefix: IPNetwork) -> int | str:
    """The channel's form of `prefix`."""
    if prefix.version == 4:
        return address_int(prefix.network_address) << 8 | prefix.prefixlen
    return str(prefix)


def unpack_prefix(value: object) -> IPNetwork:
    """A prefix in the channel's form (an int or text); ValueError naming it if it is none."""
    if type(value) is str:
        return parse_prefix(value)
    if type(value) is not int:
        raise ValueError(f"prefix {value!r} is neither text nor an int")
    address, length = value >> 8, value & 255
    if not 0 <= value <= _PACKED_MAX or length > 32:
        raise ValueError(f"prefix {value!r} is not an IPv4 prefix as address << 8 | length")
    prefix = _fast(address, length) if _fast_ok else None
    if prefix is None:
        try:
            prefix = Prefix4((address, length))
        except ValueError:
            raise ValueError(f"prefix {value!r} ({ipaddress.IPv4Address(address)}/{length}) "
                             "has host bits set") from None
    return prefix


def unpack_prefixes(values: list[object]) -> list[IPNetwork]:
    """`unpack_prefix` of each; when all are ints (IPv4, the usual case) in one pass that
    checks only that each made a prefix, and one by one (which names the culprit) if not."""
    if _fast_ok and set(map(type, values)) <= _JUST_INT:
        out = [_fast(v >> 8, v & 255) for v in values]  # type: ignore[operator]
        if all(out):  # a prefix is always true; None: see `_fast`
            return out  # type: ignore[return-value]
    return [unpack_prefix(v) for v in values]
