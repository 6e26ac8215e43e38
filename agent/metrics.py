"""Prometheus metrics of the agent, registered explicitly on one registry (no import-time
globals), served by prometheus-client's own HTTP server."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["AgentMetrics"]


@dataclass
class AgentMetrics:
    registry: CollectorRegistry
    routes_programmed: Gauge
    resyncs: Counter
    drift_repaired: Counter
    apply_seconds: Histogram
    apply_errors: Counter
    datastore_reconnects: Counter
    bgp_routes_learned: Gauge
    invalid_resources: Counter

    @classmethod
    def create(cls) -> AgentMetrics:
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            routes_programmed=Gauge(
                "wren_routes_programmed", "Routes the agent owns in the kernel", ["kind"],
                registry=reg),
            resyncs=Counter("wren_resyncs", "Kernel table resyncs", ["table"], registry=reg),
            drift_repaired=Counter(
                "wren_drift_repaired", "Kernel entries repaired after someone changed them",
                ["table"], registry=reg),
            apply_seconds=Histogram(
                "wren_dataplane_apply_seconds", "Time to apply one batch of dataplane changes",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                registry=reg),
            apply_errors=Counter(
                "wren_dataplane_apply_errors", "Failed dataplane applies (retried)", ["table"],
                registry=reg),
            datastore_reconnects=Counter(
                "wren_datastore_reconnects", "Datastore watch reconnects", ["kind"], registry=reg),
            bgp_routes_learned=Gauge(
                "wren_bgp_routes_learned", "Routes learned from the BGP sidecar", registry=reg),
            invalid_resources=Counter(
                "wren_invalid_resources", "Resources ignored because they are invalid", ["kind"],
                registry=reg),
        )

    def serve(self, *, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
