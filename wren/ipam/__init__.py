"""Block IPAM shared by the CNI plugin, wrenctl and the agent (Calico libcalico-go semantics)."""
