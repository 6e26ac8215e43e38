from hypothesis import given, settings
from hypothesis import strategies as st

from agent.kernel.delta import DeltaTracker


def check_invariants(t: DeltaTracker[str, int], desired: dict[str, int],
                     dataplane: dict[str, int]) -> None:
    assert dict(t.pending_updates()) == {
        k: v for k, v in desired.items() if k not in dataplane or dataplane[k] != v}
    assert dict(t.pending_deletions()) == {k: v for k, v in dataplane.items() if k not in desired}


def test_new_desired_entry_is_pending_until_applied() -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    t.set_desired("a", 1)
    assert t.pending_updates() == [("a", 1)]
    t.apply_success(updated=["a"])
    assert t.in_sync
    assert t.get_dataplane("a") == 1


def test_desired_equal_to_dataplane_is_not_pending() -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    t.replace_dataplane({"a": 1})
    t.set_desired("a", 1)
    assert t.in_sync


def test_dataplane_entry_not_desired_is_pending_deletion() -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    t.replace_dataplane({"a": 1, "b": 2})
    t.set_desired("a", 1)
    assert t.pending_deletions() == [("b", 2)]
    t.apply_success(deleted=["b"])
    assert t.in_sync


def test_changed_value_is_an_update_not_a_deletion() -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    t.replace_dataplane({"a": 1})
    t.set_desired("a", 2)
    assert t.pending_updates() == [("a", 2)]
    assert t.pending_deletions() == []


def test_replace_all_desired_deletes_what_is_missing() -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    t.replace_dataplane({"a": 1, "b": 2})
    t.replace_all_desired({"a": 1, "b": 2})
    assert t.in_sync
    t.replace_all_desired({"b": 3})
    assert t.pending_deletions() == [("a", 1)]
    assert t.pending_updates() == [("b", 3)]


def test_drift_in_a_fresh_dump_becomes_pending_work() -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    t.set_desired("a", 1)
    t.apply_success(updated=["a"])
    t.replace_dataplane({})  # someone deleted it
    assert t.pending_updates() == [("a", 1)]


ops = st.lists(st.tuples(
    st.sampled_from(["set", "del", "dp_set", "dp_del", "ok_upd", "ok_del", "dump"]),
    st.sampled_from("abcd"), st.integers(0, 2)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_pending_sets_always_equal_the_difference_of_the_two_views(
        steps: list[tuple[str, str, int]]) -> None:
    t: DeltaTracker[str, int] = DeltaTracker()
    desired: dict[str, int] = {}
    dataplane: dict[str, int] = {}
    for op, key, value in steps:
        if op == "set":
            t.set_desired(key, value)
            desired[key] = value
        elif op == "del":
            t.delete_desired(key)
            desired.pop(key, None)
        elif op == "dp_set":
            t.set_dataplane(key, value)
            dataplane[key] = value
        elif op == "dp_del":
            t.delete_dataplane(key)
            dataplane.pop(key, None)
        elif op == "ok_upd":
            t.apply_success(updated=[key])
            if key in desired:
                dataplane[key] = desired[key]
        elif op == "ok_del":
            t.apply_success(deleted=[key])
            dataplane.pop(key, None)
        else:
            dataplane = {k: value for k in dataplane}
            t.replace_dataplane(dataplane)
        check_invariants(t, desired, dataplane)
