"""Property tests: whatever a body holds, parse either returns a resource that round-trips or
raises ValidationError — never another exception (the agent must be able to log and skip)."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_model_examples import _examples
from wren.errors import ValidationError
from wren.model import IPPool, parse

EXAMPLES = _examples()

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["10.0.0.0/16", "fd00::/64", "10.0.0.1", "all()", "Always", "64512.1",
                     "1m30s", "host:n1", "aa:bb:cc:dd:ee:ff", "[fd00::1]:179", "confirmed"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a body where a value sits."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def _check(doc: Any) -> None:
    try:
        res = parse(doc)
    except ValidationError:
        return
    again = parse(res.to_body())
    assert again == res
    assert again.to_body() == res.to_body()


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_replacing_any_value_in_a_real_body_gives_a_resource_or_validation_error(
    data: st.DataObject,
) -> None:
    doc = copy.deepcopy(data.draw(st.sampled_from(EXAMPLES)))
    path = data.draw(st.sampled_from(_paths(doc)))
    _check(_set(doc, path, data.draw(json_values)))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_adding_any_key_to_a_real_body_gives_a_resource_or_validation_error(
    data: st.DataObject,
) -> None:
    doc = copy.deepcopy(data.draw(st.sampled_from(EXAMPLES)))
    objects = [p for p in _paths(doc) if isinstance(_get(doc, p), dict)]
    path = data.draw(st.sampled_from(objects))
    key = data.draw(st.text(max_size=12))
    _get(doc, path)[key] = data.draw(json_values)
    _check(doc)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_is_never_a_crash(value: Any) -> None:
    _check(value)
    _check({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "p"}, "spec": value})


@st.composite
def pool_bodies(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    lo_block, hi_block = (20, 32) if version == 4 else (116, 128)
    block = draw(st.integers(lo_block, hi_block))
    prefix = draw(st.integers(max(1, block - 12), block))
    base = draw(st.integers(0, 2**bits - 1)) >> (bits - prefix) << (bits - prefix)
    cidr = ipaddress.ip_network((base, prefix)) if version == 4 else ipaddress.IPv6Network(
        (base, prefix))
    encap = draw(st.sampled_from(["Never", "Always", "CrossSubnet"]))
    spec: dict[str, Any] = {"cidr": str(cidr), "blockSize": block}
    if version == 4 and draw(st.booleans()):
        spec["ipipMode"] = encap
    else:
        spec["vxlanMode"] = encap
    spec["natOutgoing"] = draw(st.booleans())
    spec["disabled"] = draw(st.booleans())
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": draw(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?",
                                                    fullmatch=True))},
            "spec": spec}


@settings(max_examples=300, deadline=None)
@given(pool_bodies())
def test_generated_pools_round_trip_exactly(doc: dict[str, Any]) -> None:
    link_local = {4: ipaddress.ip_network("169.254.0.0/16"),
                  6: ipaddress.ip_network("fe80::/10")}
    cidr = ipaddress.ip_network(doc["spec"]["cidr"])
    try:
        pool = parse(doc)
    except ValidationError as e:
        assert cidr.overlaps(link_local[cidr.version]), e  # the only rule such a pool can break
        return
    assert isinstance(pool, IPPool)
    assert pool.spec.cidr == cidr and pool.spec.block_size == doc["spec"]["blockSize"]
    assert parse(pool.to_body()) == pool
