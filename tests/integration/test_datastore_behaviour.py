"""The same behaviour from both real datastores: etcd v3 and the Kubernetes API server.

Each test runs once per backend (the `datastore` fixture in conftest.py).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import Datastore
from wren.datastore.backend import Backend, Body, WatchEvent
from wren.datastore.watcher import InSync, Status, Update, Watcher, WatcherMessage
from wren.errors import AlreadyExists, Compacted, Conflict, DatastoreUnavailable, NotFound
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration

IPPOOL = kind_by_name("IPPool")
BGPPEER = kind_by_name("BGPPeer")
BGPCONFIG = kind_by_name("BGPConfiguration")


def pool(name: str, cidr: str = "10.10.0.0/16", **spec: Any) -> Body:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": 26, "natOutgoing": True, **spec}}


def peer(name: str, ip: str = "192.0.2.1", asn: int = 64513) -> Body:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name},
            "spec": {"peerIP": ip, "asNumber": asn}}


def bgpconfig(name: str = "default", asn: int = 64512) -> Body:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
            "metadata": {"name": name},
            "spec": {"asNumber": asn, "nodeToNodeMeshEnabled": True, "logSeverityScreen": "Info"}}


def rv(body: Body) -> str:
    return str(body["metadata"]["resourceVersion"])


def collect(
    q: queue.Queue[WatcherMessage], until: Callable[[list[WatcherMessage]], bool],
    timeout: float = 30.0,
) -> list[WatcherMessage]:
    """Messages from the watcher until `until(messages)` holds; fails after `timeout`."""
    got: list[WatcherMessage] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"watcher did not deliver in {timeout}s; got {got}")
        try:
            got.append(q.get(timeout=min(remaining, 0.5)))
        except queue.Empty:
            continue
    return got


def updates(msgs: list[WatcherMessage]) -> dict[str, Body | None]:
    """Last Update per name."""
    return {m.key[1]: m.body for m in msgs if isinstance(m, Update)}


class Gate:
    """An injectable Watcher sleep that blocks until the test opens it (the outage window)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.waiting = threading.Event()

    def __call__(self, seconds: float) -> bool:
        self.waiting.set()
        self.opened.wait(60)
        return False


# -- CRUD -------------------------------------------------------------------------------------
def test_created_resources_of_several_kinds_read_back_and_list(backend: Backend) -> None:
    created = [backend.create(pool("crud-pool")), backend.create(peer("crud-peer")),
               backend.create(bgpconfig("default"))]
    for body, kind in zip(created, (IPPOOL, BGPPEER, BGPCONFIG), strict=True):
        assert body["apiVersion"] == "projectcalico.org/v3"
        assert rv(body)
        got = backend.get(kind, body["metadata"]["name"])
        assert got["spec"] == body["spec"]
        assert rv(got) == rv(body)
    listing = backend.list(IPPOOL)
    assert [b["metadata"]["name"] for b in listing.items] == ["crud-pool"]
    assert listing.revision


def test_update_changes_spec_and_resource_version(backend: Backend) -> None:
    first = backend.create(pool("upd-pool"))
    first["spec"]["natOutgoing"] = False
    second = backend.update(first)
    assert second["spec"]["natOutgoing"] is False
    assert rv(second) != rv(first)
    assert backend.get(IPPOOL, "upd-pool")["spec"]["natOutgoing"] is False


def test_update_without_resource_version_is_unconditional_and_keeps_identity(
    backend: Backend,
) -> None:
    created = backend.create(pool("uncond-pool"))
    body = pool("uncond-pool", natOutgoing=False)
    assert backend.update(body)["spec"]["natOutgoing"] is False
    stored = backend.get(IPPOOL, "uncond-pool")
    assert stored["metadata"]["uid"] == created["metadata"]["uid"]
    assert stored["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


def test_delete_returns_last_body_and_then_it_is_gone(backend: Backend) -> None:
    created = backend.create(peer("del-peer"))
    deleted = backend.delete(BGPPEER, "del-peer")
    assert deleted["spec"] == created["spec"]
    with pytest.raises(NotFound):
        backend.get(BGPPEER, "del-peer")
    assert backend.list(BGPPEER).items == []


def test_create_of_a_taken_name_is_already_exists(backend: Backend) -> None:
    backend.create(pool("dup-pool"))
    with pytest.raises(AlreadyExists):
        backend.create(pool("dup-pool", cidr="10.11.0.0/16"))
    assert backend.get(IPPOOL, "dup-pool")["spec"]["cidr"] == "10.10.0.0/16"


def test_get_update_delete_of_a_missing_name_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        backend.get(IPPOOL, "missing-pool")
    with pytest.raises(NotFound):
        backend.update(pool("missing-pool"))
    with pytest.raises(NotFound):
        backend.delete(IPPOOL, "missing-pool")


def test_stale_resource_version_is_refused_for_update_and_delete(backend: Backend) -> None:
    first = backend.create(pool("stale-pool"))
    backend.update(pool("stale-pool", natOutgoing=False) | {
        "metadata": {"name": "stale-pool", "resourceVersion": rv(first)}})
    stale = pool("stale-pool", natOutgoing=True)
    stale["metadata"]["resourceVersion"] = rv(first)
    with pytest.raises(Conflict):
        backend.update(stale)
    with pytest.raises(Conflict):
        backend.delete(IPPOOL, "stale-pool", resource_version=rv(first))
    assert backend.get(IPPOOL, "stale-pool")["spec"]["natOutgoing"] is False


def test_two_concurrent_writers_from_the_same_version_exactly_one_wins(
    datastore: Datastore,
) -> None:
    writers = [datastore.other(), datastore.other()]
    base = writers[0].create(pool("race-pool"))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def write(backend: Backend, value: int) -> None:
        body = pool("race-pool", blockSize=value)
        body["metadata"]["resourceVersion"] = rv(base)
        barrier.wait()
        try:
            backend.update(body)
            outcomes.append(f"won:{value}")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(w, v))
               for w, v in zip(writers, (27, 28), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "won"]
    winner = int(next(o for o in outcomes if o.startswith("won")).split(":")[1])
    assert writers[1].get(IPPOOL, "race-pool")["spec"]["blockSize"] == winner


# -- watch ------------------------------------------------------------------------------------
def _watch_into(
    backend: Backend, *, revision: str, stop: threading.Event
) -> tuple[list[WatchEvent | Exception], threading.Thread]:
    events: list[WatchEvent | Exception] = []

    def run() -> None:
        try:
            for e in backend.watch(IPPOOL, revision=revision, stop=stop):
                events.append(e)
        except Exception as exc:
            events.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return events, thread


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.05)


def test_watch_from_list_revision_sees_every_later_change_in_order(backend: Backend) -> None:
    backend.create(pool("w-before"))
    listing = backend.list(IPPOOL)
    a = backend.create(pool("w-a"))
    a["spec"]["natOutgoing"] = False
    backend.update(a)
    backend.delete(IPPOOL, "w-before")
    stop = threading.Event()
    events, thread = _watch_into(backend, revision=listing.revision, stop=stop)
    _wait(lambda: len(events) >= 3)
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "watch did not return after stop was set"
    got = [(e.type, e.body["metadata"]["name"]) for e in events if isinstance(e, WatchEvent)]
    assert got == [("ADDED", "w-a"), ("MODIFIED", "w-a"), ("DELETED", "w-before")]
    assert events[1].body["spec"]["natOutgoing"] is False  # type: ignore[union-attr]


def test_watch_resumed_from_a_mid_revision_skips_what_came_before(backend: Backend) -> None:
    start = backend.list(IPPOOL).revision
    backend.create(pool("r-1"))
    second = backend.create(pool("r-2", cidr="10.12.0.0/16"))
    stop = threading.Event()
    events, thread = _watch_into(backend, revision=start, stop=stop)
    _wait(lambda: len(events) >= 2)
    mid = events[0].revision  # type: ignore[union-attr]
    stop.set()
    thread.join(10)
    stop2 = threading.Event()
    resumed, thread2 = _watch_into(backend, revision=mid, stop=stop2)
    backend.delete(IPPOOL, "r-1")
    _wait(lambda: len(resumed) >= 2)
    stop2.set()
    thread2.join(10)
    names = [(e.type, e.body["metadata"]["name"]) for e in resumed if isinstance(e, WatchEvent)]
    assert names == [("ADDED", "r-2"), ("DELETED", "r-1")]
    assert resumed[0].revision == rv(second)  # type: ignore[union-attr]


def test_watch_from_a_compacted_revision_raises_compacted(
    datastore: Datastore, backend: Backend
) -> None:
    old = backend.list(IPPOOL).revision
    for i in range(3):
        backend.create(pool(f"c-{i}", cidr=f"10.{20 + i}.0.0/16"))
    datastore.compact()
    with pytest.raises(Compacted):
        for _ in backend.watch(IPPOOL, revision=old, stop=threading.Event()):
            pass


def test_watcher_relists_after_compaction_emitting_only_differences(
    datastore: Datastore, backend: Backend
) -> None:
    keep, change, _vanish = (backend.create(pool(n, cidr=c)) for n, c in
                            (("keep", "10.30.0.0/16"), ("change", "10.31.0.0/16"),
                             ("vanish", "10.32.0.0/16")))
    out: queue.Queue[WatcherMessage] = queue.Queue()
    stop, gate = threading.Event(), Gate()
    watcher = Watcher(datastore.other(), IPPOOL, out, stop=stop, sleep=gate)
    watcher.start()
    try:
        first = collect(out, lambda m: any(isinstance(x, InSync) for x in m))
        assert set(updates(first)) == {"keep", "change", "vanish"}
        datastore.stop()  # the watcher goes down and waits at the gate
        collect(out, lambda m: any(isinstance(x, Status) and not x.connected for x in m))
        _wait(gate.waiting.is_set)
        datastore.start()
        change["spec"]["natOutgoing"] = False
        backend.update(change)
        backend.delete(IPPOOL, "vanish")
        backend.create(pool("new", cidr="10.33.0.0/16"))
        datastore.compact()  # the watcher's revision is gone: it must relist
        gate.opened.set()
        after = collect(out, lambda m: {"vanish", "change", "new"} <= set(updates(m)))
        got = updates(after)
        assert got["vanish"] is None
        assert got["change"] is not None and got["change"]["spec"]["natOutgoing"] is False
        assert got["new"] is not None
        assert "keep" not in got, "an unchanged resource must not be re-sent after a relist"
        assert any(isinstance(x, Status) and x.connected for x in after)
        assert keep  # unchanged
    finally:
        stop.set()
        gate.opened.set()
        watcher.join(15)
    assert not watcher.is_alive()


def test_watcher_reports_an_outage_then_delivers_changes_made_meanwhile(
    datastore: Datastore, backend: Backend
) -> None:
    backend.create(pool("o-1"))
    out: queue.Queue[WatcherMessage] = queue.Queue()
    stop, gate = threading.Event(), Gate()
    watcher = Watcher(datastore.other(), IPPOOL, out, stop=stop, sleep=gate)
    watcher.start()
    try:
        first = collect(out, lambda m: any(isinstance(x, InSync) for x in m))
        assert Status(IPPOOL.name, True, "") in first
        datastore.stop()
        down = collect(out, lambda m: any(isinstance(x, Status) for x in m))
        status = next(x for x in down if isinstance(x, Status))
        assert not status.connected and status.error
        with pytest.raises(DatastoreUnavailable):
            backend.get(IPPOOL, "o-1")
        _wait(gate.waiting.is_set)
        datastore.start()
        backend.create(pool("o-2", cidr="10.41.0.0/16"))
        backend.delete(IPPOOL, "o-1")
        gate.opened.set()
        after = collect(out, lambda m: {"o-1", "o-2"} <= set(updates(m)))
        assert Status(IPPOOL.name, True, "") in after
        got = updates(after)
        assert got["o-1"] is None and got["o-2"] is not None
        assert not any(isinstance(x, InSync) for x in after), "InSync is sent once"
    finally:
        stop.set()
        gate.opened.set()
        watcher.join(15)
    assert not watcher.is_alive()


def test_secret_that_does_not_exist_reads_as_none(backend: Backend) -> None:
    assert backend.read_secret("wren-no-such-secret", "password") is None
