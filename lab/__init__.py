"""The lab: a real multi-node cluster network in network namespaces on one machine."""
