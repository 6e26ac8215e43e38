#!/usr/bin/env python3
"""Build (or reuse) the initramfs that boots Debian's kernel with the host root over 9p.

Why this exists: the host kernel has no IPIP, so the IPIP tests run inside Debian's own kernel
under qemu. Debian builds virtio and 9p as modules, so the kernel needs a small initramfs that
loads them, mounts the host's `/` read-only over virtio-9p and hands over to a test script
(see tools/vm/init.sh and tools/vm/stage2.sh).

The archive is written in Python (newc cpio + gzip) so no `cpio` tool is needed and device nodes
(/dev/console) can be included without root. It is cached under `~/.cache/wren/vm/`, named by
kernel version and a hash of everything that goes into it (this file, the two shell scripts,
busybox and the modules), so any change rebuilds it and an unchanged one is reused.

    python3 tools/vm/build_initramfs.py [--kernel-version 6.1.0-56-amd64] [--force]

prints the path of the initramfs on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MODULES",
    "BuildError",
    "CpioEntry",
    "cache_path",
    "ensure_initramfs",
    "find_debian_kernel_version",
    "input_hash",
    "newc_archive",
]

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "init.sh"
STAGE2_SCRIPT = HERE / "stage2.sh"
BUSYBOX = Path("/bin/busybox")
MODULES_ROOT = Path("/lib/modules")
BOOT = Path("/boot")

# Load order matters: insmod does not resolve dependencies, so each module follows the ones
# it needs (virtio before virtio_pci, netfs/fscache before 9p).
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
)


class BuildError(RuntimeError):
    """The initramfs cannot be built on this machine; the message says what is missing."""


@dataclass(frozen=True)
class CpioEntry:
    """One file, directory, symlink or character device in the archive."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(length: int) -> bytes:
    return b"\0" * ((4 - length % 4) % 4)


def newc_archive(entries: list[CpioEntry]) -> bytes:
    """Serialise entries in the kernel's `newc` cpio format (what an initramfs must be)."""
    out = bytearray()
    trailer = CpioEntry(name="TRAILER!!!", mode=0)
    for ino, entry in enumerate([*entries, trailer], start=1):
        name = entry.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        fields = (
            ino if entry is not trailer else 0,
            entry.mode,
            0,  # uid
            0,  # gid
            nlink if entry is not trailer else 1,
            0,  # mtime: fixed, so the archive is reproducible
            len(entry.data),
            0,  # devmajor
            0,  # devminor
            entry.rdev[0],
            entry.rdev[1],
            len(name),
            0,  # check
        )
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        out += header + name + _pad4(len(header) + len(name))
        out += entry.data + _pad4(len(entry.data))
    return bytes(out)


def find_debian_kernel_version(boot: Path = BOOT, modules_root: Path = MODULES_ROOT) -> str:
    """Newest kernel in /boot whose module tree has `ipip.ko` (the whole point of the VM)."""
    candidates: list[str] = []
    for vmlinuz in boot.glob("vmlinuz-*"):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        tree = modules_root / version / "kernel" / "net" / "ipv4"
        if any(tree.glob("ipip.ko*")):
            candidates.append(version)
    if not candidates:
        raise BuildError(
            f"no kernel in {boot} with an ipip module under {modules_root}/<version>; "
            "install linux-image-amd64 (make deps)"
        )
    return sorted(candidates, key=_version_key)[-1]


def _version_key(version: str) -> list[int | str]:
    parts: list[int | str] = []
    for chunk in version.replace("-", ".").split("."):
        parts.append(int(chunk) if chunk.isdigit() else chunk)
    return parts


def _module_file(kernel_version: str, name: str) -> Path:
    """Path of one module in the kernel's tree, found through modules.dep (it may be .ko.xz)."""
    tree = MODULES_ROOT / kernel_version
    dep = tree / "modules.dep"
    if not dep.exists():
        raise BuildError(f"{dep} missing: is linux-image-{kernel_version} installed?")
    wanted = {f"{name}.ko", f"{name}.ko.xz", f"{name}.ko.zst", f"{name}.ko.gz"}
    for line in dep.read_text().splitlines():
        relative = line.split(":", 1)[0]
        if relative.rsplit("/", 1)[-1] in wanted:
            return tree / relative
    raise BuildError(f"module {name} not in {dep} (built into the kernel or missing)")


def _module_bytes(path: Path) -> bytes:
    """busybox insmod wants a plain ELF object, so compressed modules are unpacked here."""
    raw = path.read_bytes()
    if path.suffix == ".xz":
        import lzma

        return lzma.decompress(raw)
    if path.suffix == ".gz":
        return gzip.decompress(raw)
    if path.suffix == ".zst":
        raise BuildError(f"{path}: zstd-compressed modules are not supported by this builder")
    return raw


def input_hash(kernel_version: str) -> str:
    """Hash of every input, so the cache key changes whenever the archive would."""
    digest = hashlib.sha256()
    digest.update(kernel_version.encode())
    for path in (Path(__file__).resolve(), INIT_SCRIPT, STAGE2_SCRIPT, BUSYBOX):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for name in MODULES:
        digest.update(name.encode())
        digest.update(_module_file(kernel_version, name).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("WREN_CACHE_DIR", Path.home() / ".cache" / "wren")) / "vm"


def cache_path(kernel_version: str, digest: str) -> Path:
    return cache_dir() / f"initramfs-{kernel_version}-{digest}.cpio.gz"


def _entries(kernel_version: str) -> list[CpioEntry]:
    if not BUSYBOX.exists():
        raise BuildError(f"{BUSYBOX} missing: install busybox-static (make deps)")
    busybox = BUSYBOX.read_bytes()
    if b"/ld-linux" in busybox[:4096]:  # an ELF interpreter: not static, useless before root
        raise BuildError(f"{BUSYBOX} is dynamically linked: install busybox-static")
    entries = [
        CpioEntry(name=d, mode=stat.S_IFDIR | 0o755)
        for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules", "tmp")
    ]
    entries += [
        CpioEntry(name="dev/console", mode=stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry(name="bin/busybox", mode=stat.S_IFREG | 0o755, data=busybox),
        CpioEntry(name="bin/sh", mode=stat.S_IFLNK | 0o777, data=b"busybox"),
        CpioEntry(name="init", mode=stat.S_IFREG | 0o755, data=INIT_SCRIPT.read_bytes()),
        CpioEntry(name="stage2.sh", mode=stat.S_IFREG | 0o755, data=STAGE2_SCRIPT.read_bytes()),
    ]
    # Numbered names keep the load order when init.sh loops over the directory.
    for index, name in enumerate(MODULES):
        data = _module_bytes(_module_file(kernel_version, name))
        entries.append(
            CpioEntry(name=f"lib/modules/{index:02d}-{name}.ko", mode=stat.S_IFREG | 0o644,
                      data=data)
        )
    return entries


def ensure_initramfs(kernel_version: str, *, force: bool = False) -> Path:
    """Return the cached initramfs for this kernel and builder, building it if needed."""
    target = cache_path(kernel_version, input_hash(kernel_version))
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = gzip.compress(newc_archive(_entries(kernel_version)), compresslevel=6, mtime=0)
    # Write then rename: two builds racing leave one whole file, never a torn one.
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    partial.write_bytes(archive)
    partial.replace(target)
    # Older builds for this kernel are dead weight; a qemu still booting one has read it already.
    for stale in target.parent.glob(f"initramfs-{kernel_version}-*.cpio.gz"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kernel-version", help="default: newest /boot kernel with ipip")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        version = args.kernel_version or find_debian_kernel_version()
        started = time.monotonic()
        path = ensure_initramfs(version, force=args.force)
    except (BuildError, OSError) as exc:
        print(f"build-initramfs: {exc}", file=sys.stderr)
        return 1
    print(f"build-initramfs: {path} ready in {time.monotonic() - started:.2f}s "
          f"({path.stat().st_size} bytes)", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
