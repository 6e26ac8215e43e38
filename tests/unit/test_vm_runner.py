"""The qemu runner's pure parts: argv, kernel command line, path checks, exit codes, junit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lab.vm import (
    GuestCase,
    VmRun,
    VmSetupError,
    VmSpec,
    check_visible_in_guest,
    kernel_command_line,
    parse_junit,
    qemu_command,
    run_vm,
)
from tests.vm.test_in_vm import cases_for, guest_test_ids

SPEC = VmSpec(
    kernel=Path("/boot/vmlinuz-6.1.0-56-amd64"),
    initrd=Path("/root/.cache/wren/vm/initramfs.cpio.gz"),
    script=Path("/work/main/tests/vm/guest/run.sh"),
    checkout=Path("/work/main"),
    results_dir=Path("/tmp/results"),
    python=Path("/work/main/.venv/bin/python"),
)


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_qemu_runs_software_emulation_with_one_vcpu_and_no_reboot() -> None:
    argv = qemu_command(SPEC)
    assert argv[0] == "qemu-system-x86_64"
    assert _option(argv, "-accel") == ["tcg"]
    assert _option(argv, "-cpu") == ["max"]
    assert _option(argv, "-smp") == ["1"]
    assert _option(argv, "-m") == ["512"]
    assert "-no-reboot" in argv and "-nographic" in argv
    assert _option(argv, "-kernel") == [str(SPEC.kernel)]
    assert _option(argv, "-initrd") == [str(SPEC.initrd)]
    assert _option(argv, "-device") == ["isa-debug-exit,iobase=0xf4,iosize=0x04"]


def test_root_and_checkout_are_read_only_results_writable_all_remapped() -> None:
    shares = {dict(kv.split("=", 1) for kv in v.split(",")[1:])["mount_tag"]: v
              for v in _option(qemu_command(SPEC), "-virtfs")}
    assert shares["root"].startswith("local,path=/,")
    assert shares["checkout"].startswith("local,path=/work/main,")
    assert shares["results"].startswith("local,path=/tmp/results,")
    assert "readonly=on" in shares["root"] and "readonly=on" in shares["checkout"]
    assert "readonly=on" not in shares["results"]
    assert all("multidevs=remap" in share for share in shares.values())


def test_kernel_command_line_names_script_checkout_and_python() -> None:
    words = kernel_command_line(SPEC).split()
    assert "console=ttyS0" in words
    assert "wren.script=/work/main/tests/vm/guest/run.sh" in words
    assert "wren.checkout=/work/main" in words
    assert "wren.python=/work/main/.venv/bin/python" in words


def test_path_with_a_space_is_refused_because_the_command_line_would_split_it() -> None:
    spec = VmSpec(**{**SPEC.__dict__, "checkout": Path("/work/my checkout")})
    with pytest.raises(VmSetupError, match="my checkout"):
        kernel_command_line(spec)


def test_paths_under_guest_tmpfs_are_refused_unless_inside_the_checkout() -> None:
    checkout = Path("/tmp/ci/checkout")
    check_visible_in_guest(checkout / ".venv/bin/python", checkout=checkout, what="python")
    check_visible_in_guest(Path("/usr/bin/python3"), checkout=checkout, what="python")
    with pytest.raises(VmSetupError, match=r"python /tmp/other/\.venv/bin/python is under /tmp"):
        check_visible_in_guest(Path("/tmp/other/.venv/bin/python"), checkout=checkout,
                               what="python")


@pytest.mark.parametrize(("status", "code"), [(1, 0), (3, 1), (201, 100), (0, None), (None, None)])
def test_guest_code_is_decoded_from_qemu_debug_exit_status(status: int | None,
                                                         code: int | None) -> None:
    run = VmRun(spec=SPEC, qemu_status=status, timed_out=status is None, seconds=1.0,
                console_log=Path("/nonexistent"))
    assert run.guest_code == code


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.vm.guest.test_ipip_x" name="test_ok" time="1.0"/>
<testcase classname="tests.vm.guest.test_ipip_x" name="test_p[a]" time="1.0">
  <failure message="assert False">trace here</failure></testcase>
<testcase classname="tests.vm.guest.test_ipip_x" name="test_s" time="0">
  <skipped type="pytest.skip" message="no reason"/></testcase>
</testsuite></testsuites>
"""


def test_junit_cases_keep_outcome_message_and_details(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    cases = parse_junit(path)
    assert [(c.name, c.outcome) for c in cases] == [
        ("test_ok", "passed"), ("test_p[a]", "failed"), ("test_s", "skipped")]
    assert cases[1].message == "assert False" and cases[1].details == "trace here"
    assert cases[1].function == "test_p"


def test_host_matches_guest_cases_by_module_and_function_including_parameters() -> None:
    cases = [GuestCase(classname="tests.vm.guest.test_a", name="test_f[1]", outcome="passed"),
             GuestCase(classname="tests.vm.guest.test_a", name="test_f[2]", outcome="failed"),
             GuestCase(classname="tests.vm.guest.test_b", name="test_f", outcome="passed")]
    assert [c.name for c in cases_for("test_a::test_f", cases)] == ["test_f[1]", "test_f[2]"]


def test_guest_tests_are_discovered_from_source(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text(
        "def test_a():\n    pass\n\ndef helper():\n    pass\n\n"
        "class TestB:\n    def test_c(self):\n        pass\n")
    (tmp_path / "topology.py").write_text("def test_not_a_test_file():\n    pass\n")
    assert guest_test_ids(tmp_path) == ["test_one::test_a", "test_one::TestB::test_c"]


def _builder() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "tools" / "vm" / "build_initramfs.py"
    spec = importlib.util.spec_from_file_location("wren_build_initramfs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_initramfs_archive_is_newc_with_4_byte_alignment_and_a_trailer() -> None:
    builder = _builder()
    archive = builder.newc_archive([
        builder.CpioEntry(name="init", mode=0o100755, data=b"#!/bin/sh\n"),
        builder.CpioEntry(name="dev/console", mode=0o020600, rdev=(5, 1)),
    ])
    assert archive.startswith(b"070701")
    assert len(archive) % 4 == 0
    assert b"TRAILER!!!\0" in archive
    second = archive.index(b"070701", 6)
    assert second % 4 == 0
    header = archive[second:second + 110]
    assert int(header[78:86], 16) == 5 and int(header[86:94], 16) == 1  # rdev major, minor


def test_a_guest_that_never_exits_is_killed_at_the_timeout_and_has_no_code(tmp_path: Path) -> None:
    fake_qemu = tmp_path / "hung-qemu"
    fake_qemu.write_text("#!/bin/sh\necho booting\nexec sleep 60\n")
    fake_qemu.chmod(0o755)
    spec = VmSpec(**{**SPEC.__dict__, "qemu": str(fake_qemu), "results_dir": tmp_path / "r"})
    run = run_vm(spec, console_log=tmp_path / "console.log", timeout_s=0.5)
    assert run.timed_out and run.qemu_status is None and run.guest_code is None
    assert "booting" in run.console_tail()
    assert not run.junit_path.exists()
