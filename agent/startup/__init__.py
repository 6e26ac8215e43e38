"""What calico-node does before Felix starts: find the node's address, MTU, default pool."""
