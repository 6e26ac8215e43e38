"""Dataplane managers: desired state in, kernel-table entries out (Felix's managers)."""
