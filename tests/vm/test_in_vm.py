"""The qemu tier seen from the host: one boot runs every guest test, one host test reports each.

Why one host test per guest test: a failure inside the VM must show up by name in the host's
pytest output, with the guest's message and the tail of the serial console, not as one opaque
"the VM failed". The list of guest tests comes from their source (ast), so a guest test that
never ran (import error, crash, hang) fails here too instead of silently disappearing.
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.vm import GuestCase, VmRun, VmSetupError, boot, find_kernel, parse_junit

pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.timeout(1200)]

GUEST_DIR = Path(__file__).resolve().parent / "guest"
GUEST_PACKAGE = "tests.vm.guest"
# Boot ~30-40 s plus the tests, on a 2-core machine that others share; past this the guest is
# treated as hung. Kept under the pytest timeout above so the console tail still gets printed.
VM_TIMEOUT_S = float(os.environ.get("WREN_VM_TIMEOUT", "900"))


def guest_test_ids(guest_dir: Path = GUEST_DIR) -> list[str]:
    """`module::function` (or `module::Class::function`) of every guest test, from the source."""
    ids = []
    for path in sorted(guest_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                ids.append(f"{path.stem}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                ids += [f"{path.stem}::{node.name}::{item.name}" for item in node.body
                        if isinstance(item, ast.FunctionDef) and item.name.startswith("test")]
    return ids


def cases_for(test_id: str, cases: list[GuestCase]) -> list[GuestCase]:
    """The junit cases of one guest test (several when it is parametrized)."""
    *scope, function = test_id.split("::")
    classname = ".".join([GUEST_PACKAGE, *scope])
    return [c for c in cases if c.classname == classname and c.function == function]


@pytest.fixture(scope="module")
def vm_run(tmp_path_factory: pytest.TempPathFactory) -> VmRun:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 missing: make deps")
    try:
        find_kernel()
    except VmSetupError as exc:
        pytest.skip(str(exc))
    workdir = tmp_path_factory.mktemp("wren-vm")
    return boot(results_dir=workdir / "results", console_log=workdir / "console.log",
                timeout_s=VM_TIMEOUT_S)


@pytest.fixture(scope="module")
def guest_cases(vm_run: VmRun) -> list[GuestCase]:
    if not vm_run.junit_path.exists():
        pytest.fail(
            f"the guest left no {vm_run.junit_path.name} (qemu status {vm_run.qemu_status}, "
            f"timed out: {vm_run.timed_out}, {vm_run.seconds:.0f}s); console tail:\n"
            f"{vm_run.console_tail()}",
            pytrace=False,
        )
    return parse_junit(vm_run.junit_path)


def test_guest_finished_and_reported_its_exit_code(
    vm_run: VmRun, record_property: Callable[[str, object], None],
) -> None:
    record_property("vm_seconds", round(vm_run.seconds, 1))
    assert not vm_run.timed_out, f"guest hung; console tail:\n{vm_run.console_tail()}"
    # pytest's own codes: 0 all passed, 1 some failed (reported per test below); >= 2 means
    # pytest could not run them, >= 100 that the VM's init failed before any test.
    assert vm_run.guest_code in (0, 1), (
        f"guest exit code {vm_run.guest_code} (qemu status {vm_run.qemu_status}); "
        f"console tail:\n{vm_run.console_tail()}"
    )


@pytest.mark.parametrize("guest_test", guest_test_ids())
def test_guest(guest_test: str, vm_run: VmRun, guest_cases: list[GuestCase]) -> None:
    mine = cases_for(guest_test, guest_cases)
    if not mine:
        pytest.fail(f"{guest_test} did not run in the VM; console tail:\n"
                    f"{vm_run.console_tail()}", pytrace=False)
    failed = [c for c in mine if c.outcome in ("failed", "error")]
    if failed:
        report = "\n\n".join(f"{c.name} {c.outcome}: {c.message}\n{c.details}" for c in failed)
        pytest.fail(f"in the VM:\n{report}\n\nconsole tail:\n{vm_run.console_tail(40)}",
                    pytrace=False)
    if all(c.outcome == "skipped" for c in mine):
        pytest.skip(f"skipped in the VM: {mine[0].message}")
