"""`wrenctl ipam show | check | release` over the in-memory backend."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from wren.cli.context import CliContext
from wren.cli.main import cli
from wren.datastore.memory import MemoryBackend
from wren.ipam.allocator import Ipam
from wren.kinds import kind_by_name


@pytest.fixture
def db() -> MemoryBackend:
    b = MemoryBackend()
    b.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
              "spec": {"cidr": "10.0.0.0/24", "blockSize": 26}})
    b.create({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n1"},
              "spec": {}})
    return b


def wrenctl(db: MemoryBackend, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliContext(backend_factory=lambda: db))


def test_show_lists_pool_and_block_use_with_the_node(db: MemoryBackend) -> None:
    Ipam(db).auto_assign(handle_id="net.a", node="n1", num4=3)
    res = wrenctl(db, "ipam", "show", "--show-blocks")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1].split()[:5] == ["IP", "Pool", "10.0.0.0/24", "256", "3"]
    block = lines[2].split()
    assert block[0] == "Block" and block[2:4] == ["64", "3"] and block[-1] == "n1"


def test_check_exits_1_on_a_leak_and_release_fixes_it(db: MemoryBackend) -> None:
    (ip,) = Ipam(db).auto_assign(handle_id="net.a", node="n1",
                                 attrs={"namespace": "default", "pod": "gone"})
    res = wrenctl(db, "ipam", "check")
    assert res.exit_code == 1
    assert "leaked" in res.output and "default/gone" in res.output and str(ip) in res.output
    res = wrenctl(db, "ipam", "release", "--ip", str(ip))
    assert res.exit_code == 0 and f"Released {ip}" in res.output
    res = wrenctl(db, "ipam", "check")
    assert res.exit_code == 0 and "No problems found." in res.output
    assert db.list(kind_by_name("IPAMHandle")).items == []


def test_release_of_an_unallocated_address_fails_and_says_so(db: MemoryBackend) -> None:
    res = wrenctl(db, "ipam", "release", "--ip", "10.0.0.9")
    assert res.exit_code == 1 and "Not allocated: 10.0.0.9" in res.output
    res = wrenctl(db, "ipam", "release", "--ip", "nonsense")
    assert res.exit_code != 0 and "Invalid value for --ip" in res.output
