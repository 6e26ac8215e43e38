"""What changed between two desired states: from the calc's own account, or found by identity.

The agent's calc (`DesiredCalc`) says which workload routes changed since the state it
computed before (`DesiredDataplane.delta`); a manager that rendered exactly that state uses it
and does work in proportion to the change. Otherwise (the first state, a state from
`compute_desired`, a state skipped because an apply was postponed) it compares by identity:

The calc (`DesiredCalc`) hands out a new desired state on every recalculation, but the parts
that did not change are the very same objects as before: the same `WorkloadRoute` for every
endpoint that did not change, the same `block_routes` dict when only endpoints changed. So a
manager can compare its last desired state with the new one by `is`, and render only what
differs into its kernel table instead of rebuilding all 10,000 entries for every new pod. A
value that is equal but not identical counts as changed: that costs a redundant (no-op) update
in the table, never a missed one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from agent.calc.desired import (
    BlockRoute,
    DesiredDataplane,
    IPNetwork,
    WorkloadRoute,
    changed_keys,
)

__all__ = ["block_changes", "changed_keys", "workload_changes"]


def workload_changes(rendered_token: object | None,
                     rendered: Mapping[IPNetwork, WorkloadRoute],
                     desired: DesiredDataplane) -> Collection[IPNetwork]:
    """The destinations whose workload route may differ between what a manager rendered last
    (that state's `token` and workload routes) and `desired`."""
    delta = desired.delta
    if delta is not None and rendered_token is not None and delta.since is rendered_token:
        return delta.dsts
    return changed_keys(rendered, desired.workload_routes)


def block_changes(rendered_token: object | None, rendered: Mapping[IPNetwork, BlockRoute],
                  desired: DesiredDataplane) -> Collection[IPNetwork]:
    """The same for block routes: a burst of learned routes changes a few hundred of 10,000."""
    delta = desired.delta
    if (delta is not None and delta.blocks is not None and rendered_token is not None
            and delta.since is rendered_token):
        return delta.blocks
    return changed_keys(rendered, desired.block_routes)
