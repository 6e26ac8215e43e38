"""Values that more than one part must agree on (agent, CNI plugin, BGP sidecar, wrenctl)."""

from __future__ import annotations

__all__ = [
    "DEFAULT_AS_NUMBER",
    "DEFAULT_BLOCK_SIZE_V4",
    "DEFAULT_BLOCK_SIZE_V6",
    "HEALTH_PORT",
    "IPIP_DEVICE",
    "POD_GATEWAY_V4",
    "POD_GATEWAY_V6",
    "ROUTE_PROTOCOL",
    "VXLAN_DEVICE",
    "VXLAN_PORT",
    "VXLAN_VNI",
    "WORKLOAD_IFACE_PREFIX",
]

# Routes the agent (and the CNI plugin, whose routes the agent takes over) write carry this
# rtnetlink protocol number; a route with any other protocol is not ours unless it sits on a
# device we own (cali*, tunl0, vxlan.calico). Calico's Felix uses 80 too.
ROUTE_PROTOCOL = 80

WORKLOAD_IFACE_PREFIX = "cali"
IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = "vxlan.calico"
VXLAN_VNI = 4096
VXLAN_PORT = 4789

# The pod's default gateway: a link-local address answered by proxy-ARP on the host side.
POD_GATEWAY_V4 = "169.254.1.1"
POD_GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"

DEFAULT_AS_NUMBER = 64512
DEFAULT_BLOCK_SIZE_V4 = 26
DEFAULT_BLOCK_SIZE_V6 = 122

HEALTH_PORT = 9099
