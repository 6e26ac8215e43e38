from pathlib import Path

from agent.kernel.sysctl import SysctlApplyResult, SysctlTable, iface_sysctl


def tree(tmp_path: Path) -> Path:
    (tmp_path / "net/ipv4/conf/cali1").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("0\n")
    (tmp_path / "net/ipv4/conf/cali1/proxy_arp").write_text("0\n")
    return tmp_path


def test_setting_is_written_only_when_it_differs(tmp_path: Path) -> None:
    root = tree(tmp_path)
    table = SysctlTable(root=root)
    table.set("net.ipv4.ip_forward", 1)
    assert table.apply().written == ("net/ipv4/ip_forward",)
    assert (root / "net/ipv4/ip_forward").read_text() == "1\n"
    table.queue_resync()
    assert table.apply().written == ()
    assert table.counters.writes == 1


def test_setting_changed_behind_our_back_is_repaired_on_resync(tmp_path: Path) -> None:
    root = tree(tmp_path)
    table = SysctlTable(root=root)
    table.set(iface_sysctl(4, "cali1", "proxy_arp"), 1)
    table.apply()
    (root / "net/ipv4/conf/cali1/proxy_arp").write_text("0\n")
    table.queue_resync()
    assert table.apply().written == ("net/ipv4/conf/cali1/proxy_arp",)
    assert table.counters.drift_repaired == 1


def test_setting_for_a_missing_interface_waits_and_lands_once_it_appears(tmp_path: Path) -> None:
    root = tree(tmp_path)
    table = SysctlTable(root=root)
    key = iface_sysctl(4, "vxlan.calico", "rp_filter")  # the dot stays part of the name
    table.set(key, 2)
    result = table.apply()
    assert result.waiting == (key,) and result.ok
    (root / "net/ipv4/conf/vxlan.calico").mkdir()
    (root / "net/ipv4/conf/vxlan.calico/rp_filter").write_text("1\n")
    assert table.apply().written == (key,)
    assert (root / key).read_text() == "2\n"


def test_new_desired_value_is_a_change_not_drift(tmp_path: Path) -> None:
    table = SysctlTable(root=tree(tmp_path))
    table.set("net/ipv4/ip_forward", 1)
    table.apply()
    table.set("net/ipv4/ip_forward", 0)
    assert table.apply().written == ("net/ipv4/ip_forward",)
    assert table.counters.drift_repaired == 0


def test_unwritable_setting_is_an_error_naming_key_and_value(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "net/ipv4/bad").mkdir()  # a directory where a value file should be
    table = SysctlTable(root=root)
    table.set("net/ipv4/bad", 1)
    result = table.apply()
    assert not result.ok and "net/ipv4/bad=1" in result.errors[0]


def test_a_resync_is_worked_off_in_slices_and_changes_are_never_held_back(
        tmp_path: Path) -> None:
    root = tree(tmp_path)
    keys = []
    for i in range(25):
        (root / f"net/ipv4/conf/cali{i}x").mkdir(parents=True)
        (root / f"net/ipv4/conf/cali{i}x/proxy_arp").write_text("0\n")
        keys.append(iface_sysctl(4, f"cali{i}x", "proxy_arp"))
    table = SysctlTable(root=root, recheck_per_apply=10)
    for key in keys:
        table.set(key, 1)
    assert len(table.apply().written) == 25  # new settings: all at once
    for key in (keys[3], keys[24]):
        (root / key).write_text("0\n")  # changed behind our back
    table.queue_resync()
    table.set("net/ipv4/ip_forward", 1)  # a change while the resync runs
    first = table.apply()
    assert "net/ipv4/ip_forward" in first.written and first.rechecks_left == 15
    assert first.written == ("net/ipv4/ip_forward", keys[3])  # dict order: keys[3] is early
    second = table.apply()
    assert second.rechecks_left == 5 and second.written == ()
    third = table.apply()
    assert third.rechecks_left == 0 and third.written == (keys[24],)
    assert table.counters.drift_repaired == 2
    assert table.apply() == SysctlApplyResult()  # done: nothing read again
