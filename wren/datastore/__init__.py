"""Datastore backends (etcd v3, Kubernetes) behind one raw-body interface; see `backend`."""

from wren.datastore.backend import Backend, Body, Listing, WatchEvent

__all__ = ["Backend", "Body", "Listing", "WatchEvent"]
