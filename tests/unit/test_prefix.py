"""`parse_prefix` is `ipaddress.ip_network` made fast: the same answers, errors and hashes."""

from __future__ import annotations

import ipaddress
from itertools import islice

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wren.prefix import (
    Address4,
    Prefix4,
    address_int,
    inside,
    overlaps,
    pack_prefix,
    parse_address,
    parse_prefix,
    unpack_prefix,
    unpack_prefixes,
)


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_parses_every_ipv4_prefix_as_ip_network_does(address: int, length: int) -> None:
    text = f"{ipaddress.IPv4Address(address)}/{length}"
    try:
        expected = ipaddress.ip_network(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_prefix(text)
        return
    got = parse_prefix(text)
    assert isinstance(got, Prefix4)
    assert got == expected and hash(got) == hash(expected) and str(got) == str(expected)
    assert {expected: 1}[got] == 1 and {got: 1}[expected] == 1
    assert got.prefixlen == expected.prefixlen and not got < expected and not expected < got
    assert (got.version, got.max_prefixlen) == (4, 32)
    assert got.network_address == expected.network_address
    assert str(got.network_address) == str(expected.network_address)
    assert got.broadcast_address == expected.broadcast_address
    assert inside(got, expected) and inside(expected, got)


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_a_packed_ipv4_prefix_comes_back_as_ip_network_reads_it(address: int,
                                                                 length: int) -> None:
    """The channel's int form (`address << 8 | length`), alone or in a list, gives what
    `ip_network` makes of the same prefix, and refuses host bits as it does."""
    value = address << 8 | length
    try:
        expected = ipaddress.ip_network((address, length))
    except ValueError:
        with pytest.raises(ValueError, match="host bits"):
            unpack_prefix(value)
        with pytest.raises(ValueError, match="host bits"):
            unpack_prefixes([26, value])
        return
    assert pack_prefix(expected) == value
    for got in (unpack_prefix(value), unpack_prefixes([value])[0],
                unpack_prefixes([value, "fd00::/64"])[0]):
        assert isinstance(got, Prefix4)
        assert got == expected and hash(got) == hash(expected) and str(got) == str(expected)
        assert got.prefixlen == length and got.broadcast_address == expected.broadcast_address
        assert list(islice(got.hosts(), 2)) == list(islice(expected.hosts(), 2))


@pytest.mark.parametrize("value", [True, 1.5, None, [1], -1, 1 << 40 | 8, 0x0A000000 << 8 | 33,
                                   "10.0.0.1/24", "nowhere"])
def test_a_packed_prefix_that_is_none_is_refused_by_name(value: object) -> None:
    with pytest.raises(ValueError, match=r"prefix|network|host bits"):
        unpack_prefix(value)
    with pytest.raises(ValueError, match=r"prefix|network|host bits"):
        unpack_prefixes([0x0A000000 << 8 | 8, value])


def test_ipv6_travels_as_text() -> None:
    v6 = ipaddress.ip_network("fd00:65::/48")
    assert pack_prefix(v6) == "fd00:65::/48"
    assert unpack_prefixes(["fd00:65::/48", "10.0.0.0/8"]) == [
        v6, ipaddress.ip_network("10.0.0.0/8")]


@pytest.mark.parametrize("text", [
    "10.0.0.1/24", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "10.0.0.0/²",
    "010.0.0.0/8", "10.0.0/24", "10.0.0.0 /24", "nowhere", "", "fd00::1/64", "10.0.0.0/24/1",
])
def test_rejects_what_ip_network_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        ipaddress.ip_network(text)
    with pytest.raises(ValueError):
        parse_prefix(text)


def test_ipv6_and_bare_addresses_and_odd_lengths_come_out_canonical() -> None:
    assert parse_prefix("fd00:65::/48") == ipaddress.ip_network("fd00:65::/48")
    assert str(parse_prefix("10.0.0.1")) == "10.0.0.1/32"
    assert str(parse_prefix("10.0.0.0/008")) == "10.0.0.0/8"


def test_networks_derived_from_a_parsed_prefix_work() -> None:
    prefix = parse_prefix("10.65.1.0/26")
    assert prefix.supernet() == ipaddress.ip_network("10.65.1.0/25")
    assert list(prefix.subnets())[1] == ipaddress.ip_network("10.65.1.32/27")
    assert str(prefix.supernet()) == "10.65.1.0/25"


def test_the_short_path_is_in_use_on_this_python() -> None:
    """If CPython's IPv4Network internals change, parse_prefix falls back to the plain path;
    this says so here instead of silently costing the speed."""
    import wren.prefix

    assert wren.prefix._fast_ok


@given(st.integers(0, 2**32 - 1))
def test_a_parsed_address_equals_and_hashes_like_ip_address(value: int) -> None:
    text = str(ipaddress.IPv4Address(value))
    got, expected = parse_address(text), ipaddress.ip_address(text)
    assert isinstance(got, Address4) and got.version == 4
    assert got == expected and hash(got) == hash(expected) and str(got) == text
    assert {expected: 1}[got] == 1 and {got: 1}[expected] == 1
    assert address_int(got) == address_int(expected) == value


def test_parse_address_falls_back_to_ip_address_for_ipv6_and_errors() -> None:
    assert parse_address("fd00::1") == ipaddress.ip_address("fd00::1")
    with pytest.raises(ValueError):
        parse_address("10.0.0.256")
    with pytest.raises(ValueError):
        parse_address("nowhere")


def test_inside_compares_families_lengths_and_bits() -> None:
    net = ipaddress.ip_network
    assert inside(net("10.65.1.0/26"), net("10.65.0.0/16"))
    assert not inside(net("10.0.0.0/8"), net("10.65.0.0/16"))  # wider
    assert not inside(net("10.66.1.0/26"), net("10.65.0.0/16"))
    assert not inside(net("fd00::/64"), net("10.0.0.0/8"))  # another family
    assert inside(net("fd00:65:0:1::/64"), net("fd00:65::/48"))
    assert inside(parse_prefix("10.65.1.0/26"), parse_prefix("0.0.0.0/0"))


def test_overlaps_is_ip_network_overlaps_for_prefixes() -> None:
    net = ipaddress.ip_network
    pairs = [("10.65.1.0/26", "10.65.0.0/16"), ("10.0.0.0/8", "10.65.0.0/16"),
             ("10.66.1.0/26", "10.65.0.0/16"), ("10.65.1.0/26", "10.65.1.0/26"),
             ("fd00::/64", "fd00::/48")]
    for a, b in pairs:
        assert overlaps(net(a), net(b)) == net(a).overlaps(net(b))  # type: ignore[arg-type]
        assert overlaps(parse_prefix(a), parse_prefix(b)) == net(a).overlaps(net(b))  # type: ignore[arg-type]
    assert not overlaps(net("fd00::/64"), net("10.0.0.0/8"))
