"""The Watcher's list/watch/relist/backoff logic, on the in-memory backend with injected faults.

(The same Watcher against real etcd and kube-apiserver: tests/integration/test_datastore_behaviour.)
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wren.datastore.backend import Body, Listing, WatchEvent
from wren.datastore.memory import MemoryBackend
from wren.datastore.watcher import InSync, Status, Update, Watcher, WatcherMessage, backoff_delay
from wren.errors import Compacted, DatastoreUnavailable
from wren.kinds import Kind, kind_by_name

POOL = kind_by_name("IPPool")


def pool(name: str, **spec: Any) -> Body:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": "10.0.0.0/16", **spec}}


class _Either(threading.Event):
    """Set when either of two events is (what MemoryBackend.watch polls)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        super().__init__()
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()


class FlakyBackend:
    """MemoryBackend whose calls fail while `down`, and whose open watch can be broken."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.down = False
        self.calls: list[str] = []
        self._kick = threading.Event()
        self._error: Exception | None = None

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise DatastoreUnavailable("test: datastore is down")

    def break_watch(self, error: Exception) -> None:
        self._error = error
        self._kick.set()

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body:
        self._check("get")
        return self.inner.get(kind, name, namespace)

    def list(self, kind: Kind, namespace: str | None = None) -> Listing:
        self._check("list")
        return self.inner.list(kind, namespace)

    def create(self, body: Body) -> Body:
        return self.inner.create(body)

    def update(self, body: Body) -> Body:
        return self.inner.update(body)

    def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
               resource_version: str = "") -> Body:
        return self.inner.delete(kind, name, namespace, resource_version=resource_version)

    def watch(self, kind: Kind, *, revision: str,
              stop: threading.Event | None = None) -> Iterator[WatchEvent]:
        self._check(f"watch@{revision}")
        self._kick = threading.Event()
        either = _Either(stop or threading.Event(), self._kick)
        yield from self.inner.watch(kind, revision=revision, stop=either)
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def read_secret(self, name: str, key: str) -> str | None:
        return None

    def close(self) -> None:
        return None


class Harness:
    def __init__(self, backend: FlakyBackend, *, rand: Callable[[], float] = lambda: 1.0):
        self.backend = backend
        self.out: queue.Queue[WatcherMessage] = queue.Queue()
        self.stop = threading.Event()
        self.delays: list[float] = []
        self.watcher = Watcher(backend, POOL, self.out, stop=self.stop, sleep=self._sleep,
                               rand=rand, backoff_base=0.5, backoff_cap=4.0)

    def _sleep(self, seconds: float) -> bool:
        self.delays.append(seconds)
        time.sleep(0.01)
        return self.stop.is_set()

    def __enter__(self) -> Harness:
        self.watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.watcher.join(5)
        assert not self.watcher.is_alive(), "watcher did not stop"

    def take(self, until: Callable[[list[WatcherMessage]], bool],
             timeout: float = 5.0) -> list[WatcherMessage]:
        got: list[WatcherMessage] = []
        deadline = time.monotonic() + timeout
        while not until(got):
            if time.monotonic() > deadline:
                pytest.fail(f"not delivered in {timeout}s; got {got}")
            with contextlib.suppress(queue.Empty):
                got.append(self.out.get(timeout=0.05))
        return got

    def quiet(self, seconds: float = 0.2) -> list[WatcherMessage]:
        """Whatever arrives in the next `seconds` (to show nothing more is sent)."""
        time.sleep(seconds)
        got = []
        while not self.out.empty():
            got.append(self.out.get_nowait())
        return got


def has(cls: type, **fields: Any) -> Callable[[list[WatcherMessage]], bool]:
    return lambda msgs: any(isinstance(m, cls) and all(getattr(m, k) == v
                                                       for k, v in fields.items())
                            for m in msgs)


def names(msgs: list[WatcherMessage]) -> dict[str, Body | None]:
    return {m.key[1]: m.body for m in msgs if isinstance(m, Update)}


def test_first_list_reports_up_then_every_item_then_one_in_sync() -> None:
    backend = FlakyBackend()
    backend.create(pool("a"))
    backend.create(pool("b"))
    with Harness(backend) as h:
        msgs = h.take(has(InSync))
        assert msgs[0] == Status("IPPool", True, "")
        assert [m.key for m in msgs if isinstance(m, Update)] == [("", "a"), ("", "b")]
        assert msgs[-1] == InSync("IPPool")


def test_changes_after_the_list_arrive_as_updates_and_deletions() -> None:
    backend = FlakyBackend()
    backend.create(pool("a"))
    with Harness(backend) as h:
        h.take(has(InSync))
        b = backend.create(pool("b"))
        backend.delete(POOL, "a")
        msgs = h.take(lambda m: len(names(m)) == 2)
        assert names(msgs) == {"b": b, "a": None}


def test_a_deletion_of_a_key_never_sent_is_dropped() -> None:
    backend = FlakyBackend()
    backend.create(pool("a"))
    with Harness(backend) as h:
        h.take(has(InSync))
        backend.create(pool("short-lived"))
        h.take(lambda m: "short-lived" in names(m))
        backend.delete(POOL, "short-lived")
        msgs = h.take(lambda m: "short-lived" in names(m))
        assert names(msgs) == {"short-lived": None}
        assert h.quiet() == []


def test_relist_after_compaction_sends_only_the_differences() -> None:
    backend = FlakyBackend()
    for n in ("keep", "change", "vanish"):
        backend.create(pool(n))
    with Harness(backend) as h:
        h.take(has(InSync))
        backend.down = True
        backend.break_watch(DatastoreUnavailable("test: connection reset"))
        h.take(has(Status, connected=False))
        # the datastore is "down" for the watcher; the test writes to the store behind it
        current = backend.inner.get(POOL, "change")
        current["spec"]["natOutgoing"] = True
        backend.inner.update(current)
        backend.inner.delete(POOL, "vanish")
        backend.inner.create(pool("new"))
        backend.inner.compact()
        backend.down = False
        msgs = h.take(lambda m: {"change", "vanish", "new"} <= set(names(m)))
        got = names(msgs)
        assert got["vanish"] is None
        assert got["change"] is not None and got["change"]["spec"]["natOutgoing"] is True
        assert "keep" not in got
        assert not any(isinstance(m, InSync) for m in msgs)
        assert h.quiet() == []
        assert any(c == "list" for c in backend.calls[2:]), "it relisted"


def test_a_watch_broken_by_compaction_relists_without_reporting_down() -> None:
    backend = FlakyBackend()
    backend.create(pool("a"))
    with Harness(backend) as h:
        h.take(has(InSync))
        backend.break_watch(Compacted("test: compacted"))
        backend.create(pool("b"))
        msgs = h.take(lambda m: "b" in names(m))
        assert not any(isinstance(m, Status) for m in msgs)
        assert backend.calls.count("list") == 2


def test_an_outage_backs_off_exponentially_reports_once_and_resumes_from_last_revision() -> None:
    backend = FlakyBackend()
    backend.create(pool("a"))
    with Harness(backend) as h:
        h.take(has(InSync))
        last = backend.inner.list(POOL).revision
        backend.down = True
        backend.break_watch(DatastoreUnavailable("test: connection reset"))
        down = h.take(has(Status, connected=False))
        assert down[-1] == Status("IPPool", False, "test: connection reset")
        deadline = time.monotonic() + 5
        while len(h.delays) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.down = False
        up = h.take(has(Status, connected=True))
        assert [m for m in up if isinstance(m, Status)] == [Status("IPPool", True, "")]
        assert h.delays[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]  # capped at 4
        backend.create(pool("b"))
        assert "b" in names(h.take(lambda m: "b" in names(m)))
        assert f"watch@{last}" in backend.calls[-3:], "resumed from the last revision"
        assert backend.calls.count("list") == 1, "no relist needed"
        # a second outage starts the backoff from the beginning again
        h.delays.clear()
        backend.break_watch(DatastoreUnavailable("test: again"))
        h.take(has(Status, connected=True))
        assert h.delays[0] == 0.5


def test_backoff_has_full_jitter_below_the_cap() -> None:
    assert backoff_delay(0, base=0.5, cap=30, rand=lambda: 0.5) == 0.25
    assert backoff_delay(3, base=0.5, cap=30, rand=lambda: 1.0) == 4.0
    assert backoff_delay(50, base=0.5, cap=30, rand=lambda: 1.0) == 30
    assert backoff_delay(50, base=0.5, cap=30, rand=lambda: 0.0) == 0.0


def test_first_list_failing_reports_down_then_up_and_in_sync() -> None:
    backend = FlakyBackend()
    backend.create(pool("a"))
    backend.down = True
    with Harness(backend) as h:
        h.take(has(Status, connected=False))
        backend.down = False
        msgs = h.take(has(InSync))
        assert Status("IPPool", True, "") in msgs
        assert names(msgs) == {"a": backend.inner.get(POOL, "a")}


def test_stop_ends_the_thread_while_watching_and_while_backing_off() -> None:
    backend = FlakyBackend()
    with Harness(backend) as h:
        h.take(has(InSync))
    assert not h.watcher.is_alive()
    backend.down = True
    with Harness(backend) as h2:
        h2.take(has(Status, connected=False))
    assert not h2.watcher.is_alive()


def test_a_write_that_changes_only_the_resource_version_is_not_resent() -> None:
    backend = FlakyBackend()
    a = backend.create(pool("a"))
    with Harness(backend) as h:
        h.take(has(InSync))
        backend.update(a)  # same content, new resourceVersion (a pod status change, say)
        a2 = backend.inner.get(POOL, "a")
        a2["spec"]["natOutgoing"] = True
        backend.update(a2)
        msgs = h.take(lambda m: "a" in names(m))
        assert names(msgs)["a"]["spec"]["natOutgoing"] is True  # type: ignore[index]
        assert h.quiet() == []


def test_it_remembers_digests_not_bodies_and_key_order_does_not_matter() -> None:
    backend = FlakyBackend()
    backend.create(pool("a", natOutgoing=True, blockSize=26))
    with Harness(backend) as h:
        h.take(has(InSync))
        assert all(isinstance(v, bytes) and len(v) == 16 for v in h.watcher._state.values())
        a = backend.inner.get(POOL, "a")
        # the same content, keys in another order, a new resourceVersion: not re-sent
        backend.update({**a, "spec": dict(reversed(list(a["spec"].items())))})
        assert h.quiet() == []
        a = backend.inner.get(POOL, "a")
        backend.update({**a, "spec": {**a["spec"], "blockSize": 27}})
        msgs = h.take(lambda m: "a" in names(m))
        assert names(msgs)["a"]["spec"]["blockSize"] == 27  # type: ignore[index]
