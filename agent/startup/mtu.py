"""The pod MTU: the host's interface MTU minus the encapsulation overhead, as Calico computes it.

Calico looks at interfaces matching `mtuIfacePattern` and takes the smallest MTU (1500 if none
match), then subtracts 20 bytes for IPIP and 50 for VXLAN (the largest overhead in use). The
result goes to a file the CNI plugin reads, so pods created later get the right MTU.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DEFAULT_MTU_IFACE_PATTERN", "IPIP_OVERHEAD", "VXLAN_OVERHEAD", "detect_host_mtu",
           "pod_mtu", "write_mtu_file"]

DEFAULT_MTU_IFACE_PATTERN = r"^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)"
IPIP_OVERHEAD = 20
VXLAN_OVERHEAD = 50
FALLBACK_MTU = 1500


def detect_host_mtu(link_mtus: Mapping[str, int], pattern: str = DEFAULT_MTU_IFACE_PATTERN) -> int:
    """Smallest MTU of the interfaces whose name matches `pattern`, or 1500 if none does."""
    regex = re.compile(pattern)
    matching = [mtu for name, mtu in link_mtus.items() if regex.search(name) and mtu > 0]
    return min(matching) if matching else FALLBACK_MTU


def pod_mtu(host_mtu: int, *, ipip: bool, vxlan: bool, configured: int = 0) -> int:
    """A configured MTU wins; otherwise host MTU minus the largest overhead in use."""
    if configured > 0:
        return configured
    overhead = max(IPIP_OVERHEAD if ipip else 0, VXLAN_OVERHEAD if vxlan else 0)
    return host_mtu - overhead


def write_mtu_file(path: Path, mtu: int) -> bool:
    """Write atomically (rename); returns whether the content changed."""
    try:
        if path.read_text().strip() == str(mtu):
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mtu-")
    with os.fdopen(fd, "w") as f:
        f.write(f"{mtu}\n")
    os.replace(tmp, path)
    return True
