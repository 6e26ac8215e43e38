"""Kernel tables: one object per kernel table (routes, links + addresses, neighbours + FDB,
sysctls), each keeping desired vs. dataplane state and applying only the difference.

The managers own desired state; these tables own the kernel I/O. Nothing here decides *what*
the node should look like, only how to get the kernel there cheaply and how to notice drift.
"""
