"""Boot Debian's kernel under qemu with the host root shared over 9p and collect guest results.

Why: this machine's kernel has no IPIP, Debian's does. One boot runs every guest test
(tests/vm/guest/) in one pytest process and leaves a junit XML in a writable 9p share; the host
reads it. Facts this relies on (measured here, /work/shared/notes/ipip-vm.md):

- software emulation only (`-accel tcg -cpu max`): /dev/kvm is a PVM variant that aborts or hangs;
- `multidevs=remap` on the root share, or the host's /proc and /sys collide and `ip netns` fails;
- the guest writes its exit code to isa-debug-exit (port 0xf4); qemu exits with 2*code+1;
- a crashed or hung guest writes nothing: the host-side timeout and "no junit file" are failures.

    host                                   guest (Debian 6.1 kernel, TCG)
    tools/vm/build_initramfs.py ──initrd──► /init: insmod virtio+9p, mount shares, switch_root
    /  (9p `root`, ro) ───────────────────► /             stage2.sh ─► tests/vm/guest/run.sh
    checkout (9p `checkout`, ro) ─────────► same path     modprobe ipip ...; pytest tests/vm/guest
    results dir (9p `results`, rw) ◄─────── /run/wren/results/{junit.xml,rc}
    console log ◄────────────────────────── ttyS0

Used by the IPIP test tier (tests/vm) and by `MODE=ipip make lab` on a kernel without IPIP.
Run the test tier by hand: `.venv/bin/python -m lab.vm` (prints the summary, exit 0 if all passed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CHECKOUT",
    "GUEST_SCRIPT",
    "GuestCase",
    "VmRun",
    "VmSetupError",
    "VmSpec",
    "boot",
    "build_initramfs",
    "check_visible_in_guest",
    "find_kernel",
    "kernel_command_line",
    "parse_junit",
    "qemu_command",
    "run_vm",
]

CHECKOUT = Path(__file__).resolve().parents[1]
GUEST_SCRIPT = CHECKOUT / "tests" / "vm" / "guest" / "run.sh"
BUILDER = CHECKOUT / "tools" / "vm" / "build_initramfs.py"
GUEST_RESULTS = "/run/wren/results"
# The guest mounts tmpfs here, hiding whatever the host keeps below them.
GUEST_TMPFS = (Path("/tmp"), Path("/run"), Path("/var"))
DEBUG_EXIT_PORT = 0xF4


class VmSetupError(RuntimeError):
    """The VM cannot be started as asked; the message names the path or tool at fault."""


@dataclass(frozen=True)
class VmSpec:
    """Everything one boot needs; `qemu_command` turns it into argv without touching the disk."""

    kernel: Path
    initrd: Path
    script: Path
    checkout: Path
    results_dir: Path
    python: Path
    memory_mb: int = 512
    smp: int = 1
    qemu: str = "qemu-system-x86_64"


@dataclass(frozen=True)
class VmRun:
    """What one boot left behind. `qemu_status` is None when the host had to kill qemu."""

    spec: VmSpec
    qemu_status: int | None
    timed_out: bool
    seconds: float
    console_log: Path

    @property
    def guest_code(self) -> int | None:
        """The code the guest wrote to isa-debug-exit, or None if it never did."""
        if self.qemu_status is None or self.qemu_status % 2 == 0:
            return None
        return (self.qemu_status - 1) // 2

    @property
    def junit_path(self) -> Path:
        return self.spec.results_dir / "junit.xml"

    def console_tail(self, lines: int = 80) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError as exc:
            return f"(no console log at {self.console_log}: {exc})"
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class GuestCase:
    """One test case as the guest's pytest reported it in junit XML."""

    classname: str  # dotted module path, plus the class for tests in a class
    name: str
    outcome: str  # "passed", "failed", "error" or "skipped"
    message: str = ""
    details: str = ""

    @property
    def function(self) -> str:
        """Test function name without pytest's parameter id, to match the source."""
        return self.name.split("[", 1)[0]


def _for_kernel_cmdline(path: Path, *, what: str) -> str:
    text = str(path)
    if any(ch.isspace() for ch in text) or '"' in text or "'" in text:
        raise VmSetupError(f"{what} path {text!r} has spaces or quotes; the kernel command "
                           "line cannot carry it")
    return text


def kernel_command_line(spec: VmSpec) -> str:
    """The guest's command line: serial console, no reboot loop on panic, and what to run."""
    return " ".join([
        "console=ttyS0",
        "panic=-1",  # with -no-reboot a panic ends qemu at once instead of hanging
        "loglevel=4",
        "mitigations=off",  # TCG pays for every speculation barrier; the guest is throwaway
        f"wren.script={_for_kernel_cmdline(spec.script, what='script')}",
        f"wren.checkout={_for_kernel_cmdline(spec.checkout, what='checkout')}",
        f"wren.python={_for_kernel_cmdline(spec.python, what='python')}",
    ])


def _virtfs(path: Path, *, tag: str, readonly: bool) -> str:
    text = str(path)
    if "," in text:
        raise VmSetupError(f"9p share {tag!r}: path {text!r} contains a comma, which qemu's "
                           "option parser would split")
    options = [f"local,path={text}", f"mount_tag={tag}", "security_model=none"]
    if readonly:
        options.append("readonly=on")
    options.append("multidevs=remap")  # required: see the module docstring
    return ",".join(options)


def qemu_command(spec: VmSpec) -> list[str]:
    """argv for one boot (pure: no file is read, so it is unit-tested)."""
    return [
        spec.qemu,
        "-accel", "tcg",
        "-cpu", "max",
        "-smp", str(spec.smp),
        "-m", str(spec.memory_mb),
        "-nographic",
        "-nic", "none",
        "-no-reboot",
        "-kernel", str(spec.kernel),
        "-initrd", str(spec.initrd),
        "-append", kernel_command_line(spec),
        "-virtfs", _virtfs(Path("/"), tag="root", readonly=True),
        "-virtfs", _virtfs(spec.results_dir, tag="results", readonly=False),
        "-virtfs", _virtfs(spec.checkout, tag="checkout", readonly=True),
        "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04",
    ]


def check_visible_in_guest(path: Path, *, checkout: Path, what: str) -> None:
    """Fail early if the guest cannot see `path`: its /tmp, /run, /var are fresh tmpfs."""
    for candidate in {path, path.resolve()}:
        if candidate.is_relative_to(checkout):
            continue
        for hidden in GUEST_TMPFS:
            if candidate.is_relative_to(hidden):
                raise VmSetupError(
                    f"{what} {candidate} is under {hidden}, which the guest covers with tmpfs; "
                    f"put it inside the checkout ({checkout}) or elsewhere on /"
                )


def find_kernel(boot: Path = Path("/boot")) -> tuple[str, Path]:
    """(version, vmlinuz) of the newest /boot kernel whose modules include ipip."""
    candidates = []
    for vmlinuz in boot.glob("vmlinuz-*"):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        if any((Path("/lib/modules") / version / "kernel/net/ipv4").glob("ipip.ko*")):
            candidates.append((vmlinuz.stat().st_mtime, version, vmlinuz))
    if not candidates:
        raise VmSetupError(f"no kernel in {boot} with an ipip module; install linux-image-amd64 "
                           "(make deps)")
    _, version, vmlinuz = max(candidates)
    return version, vmlinuz


def build_initramfs(kernel_version: str) -> Path:
    """Run tools/vm/build_initramfs.py (it caches); return the initramfs path."""
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--kernel-version", kernel_version],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise VmSetupError(f"{BUILDER} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return Path(proc.stdout.strip().splitlines()[-1])


def run_vm(spec: VmSpec, *, console_log: Path, timeout_s: float) -> VmRun:
    """Boot once and wait; past `timeout_s` qemu is killed and the run counts as failed."""
    spec.results_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with console_log.open("wb") as log:
        proc = subprocess.Popen(qemu_command(spec), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            status: int | None = proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status, timed_out = None, True
    return VmRun(spec=spec, qemu_status=status, timed_out=timed_out,
                 seconds=time.monotonic() - started, console_log=console_log)


def boot(*, results_dir: Path, console_log: Path, timeout_s: float = 420.0,
         script: Path = GUEST_SCRIPT, checkout: Path = CHECKOUT,
         python: Path | None = None, memory_mb: int = 1536, smp: int = 2) -> VmRun:
    """Find the kernel, build/reuse the initramfs, check paths, boot once."""
    version, vmlinuz = find_kernel()
    python = python or checkout / ".venv" / "bin" / "python"
    check_visible_in_guest(python, checkout=checkout, what="python")
    check_visible_in_guest(script, checkout=checkout, what="guest script")
    spec = VmSpec(kernel=vmlinuz, initrd=build_initramfs(version), script=script,
                  checkout=checkout, results_dir=results_dir, python=python,
                  memory_mb=memory_mb,  # agents, etcd and pytest of a 3-node cluster fit
                  smp=smp)  # TCG runs one host thread per vCPU: the agents start in parallel
    return run_vm(spec, console_log=console_log, timeout_s=timeout_s)


def parse_junit(path: Path) -> list[GuestCase]:
    """Test cases from a pytest junit XML file (xunit2)."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message, details = "passed", "", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = child.get("message", "")
                details = child.text or ""
                break
        cases.append(GuestCase(classname=case.get("classname", ""), name=case.get("name", ""),
                               outcome=outcome, message=message, details=details))
    return cases


def main() -> int:
    """Boot once from the command line and print what happened."""
    with tempfile.TemporaryDirectory(prefix="wren-vm-", dir=os.environ.get("WREN_VM_TMP")) as tmp:
        run = boot(results_dir=Path(tmp) / "results", console_log=Path(tmp) / "console.log")
        print(run.console_tail(200))
        print(f"qemu status={run.qemu_status} guest code={run.guest_code} "
              f"timed_out={run.timed_out} seconds={run.seconds:.1f}")
        if not run.junit_path.exists():
            print("no junit.xml: the guest did not finish")
            return 1
        cases = parse_junit(run.junit_path)
        for case in cases:
            print(f"{case.outcome:8} {case.classname}::{case.name} {case.message}")
        failed = [c for c in cases if c.outcome in ("failed", "error")]
        return 0 if run.guest_code == 0 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
