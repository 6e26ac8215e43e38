"""The `wren` and `wren-ipam` CNI plugins: CNI 1.0.0 I/O, the pod's veth plumbing, and the
commands that tie them to the IPAM library and the datastore."""
