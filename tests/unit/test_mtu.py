from pathlib import Path

from agent.startup.mtu import detect_host_mtu, pod_mtu, write_mtu_file


def test_smallest_mtu_of_matching_interfaces_wins() -> None:
    assert detect_host_mtu({"eth0": 9000, "ens3": 1450, "docker0": 1400, "lo": 65536}) == 1450


def test_no_matching_interface_falls_back_to_1500() -> None:
    assert detect_host_mtu({"lo": 65536, "n1-eth": 1400}) == 1500


def test_overhead_is_the_largest_encapsulation_in_use() -> None:
    assert pod_mtu(1500, ipip=False, vxlan=False) == 1500
    assert pod_mtu(1500, ipip=True, vxlan=False) == 1480
    assert pod_mtu(1500, ipip=True, vxlan=True) == 1450


def test_configured_mtu_wins() -> None:
    assert pod_mtu(1500, ipip=True, vxlan=False, configured=1300) == 1300


def test_mtu_file_is_rewritten_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "node1" / "mtu"
    assert write_mtu_file(path, 1450) is True
    assert write_mtu_file(path, 1450) is False
    assert path.read_text() == "1450\n"
    assert write_mtu_file(path, 1480) is True
