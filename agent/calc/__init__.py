"""Pure calculation: cluster resources in, this node's desired state out. No I/O."""
