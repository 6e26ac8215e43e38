"""RouteTable logic against the in-memory kernel (FakeNetlink)."""

import errno
import ipaddress

import pytest

from agent.kernel.fake import FakeNetlink
from agent.kernel.netlink import RT_SCOPE_LINK, RTN_BLACKHOLE, LinkInfo, RouteMsg
from agent.kernel.route_table import Route, RouteTable
from wren.errors import ValidationError

NET = ipaddress.ip_network
ADDR = ipaddress.ip_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kernel() -> FakeNetlink:
    return FakeNetlink({"lo": 1, "eth0": 2, "cali1": 10, "cali2": 11})


def table(kernel: FakeNetlink, clock: Clock | None = None, **kw: object) -> RouteTable:
    return RouteTable(kernel, clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def test_workload_route_is_written_as_a_scope_link_route_of_our_protocol(
        kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.1/32"), "cali1"))
    result = rt.apply()
    assert result.ok and result.updated == 1
    assert kernel.routes_to(NET("10.0.0.1/32")) == [
        RouteMsg(dst=NET("10.0.0.1/32"), oif=10, scope=RT_SCOPE_LINK, protocol=80)]
    assert rt.counters.routes_programmed == 1


def test_a_fresh_table_over_a_programmed_kernel_changes_nothing(kernel: FakeNetlink) -> None:
    wanted = [Route.workload(NET(f"10.0.0.{i}/32"), "cali1") for i in range(1, 50)] + [
        Route.blackhole(NET("10.1.0.0/26")),
        Route.via(NET("10.2.0.0/26"), ADDR("192.168.0.2"), iface="eth0", onlink=True)]
    first = table(kernel)
    first.replace_all(wanted)
    assert first.apply().updated == 51
    sent = len(kernel.sent_ops)

    restarted = table(kernel)
    restarted.replace_all(wanted)
    result = restarted.apply()
    assert (result.updated, result.deleted) == (0, 0)
    assert len(kernel.sent_ops) == sent
    assert kernel.dump_calls == 2  # the restarted table looked before writing


def test_second_apply_without_changes_sends_nothing(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.blackhole(NET("10.1.0.0/26")))
    rt.apply()
    calls = kernel.send_calls
    assert rt.apply().updated == 0
    assert kernel.send_calls == calls


def test_route_whose_interface_does_not_exist_waits_quietly_then_lands(
        kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.9/32"), "cali9"))
    result = rt.apply()
    assert result.ok and result.updated == 0 and result.waiting_for_iface == 1
    assert rt.counters.errors == 0
    kernel.add_link("cali9", 19)
    rt.on_link(LinkInfo(index=19, name="cali9", up=True), deleted=False)
    assert rt.apply().updated == 1
    assert kernel.routes_to(NET("10.0.0.9/32"))[0].oif == 19


def test_interface_vanishing_between_resolve_and_write_is_not_an_error(
        kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.apply()
    kernel.del_link("cali2")  # our cache still has it
    rt.set_route(Route.workload(NET("10.0.0.2/32"), "cali2"))
    result = rt.apply()
    assert result.failures == () and rt.counters.errors == 0
    assert rt.apply().waiting_for_iface == 1  # link cache refreshed: now it waits


def test_foreign_routes_are_never_touched(kernel: FakeNetlink) -> None:
    foreign = [RouteMsg(dst=NET("0.0.0.0/0"), oif=2, gateway=ADDR("192.168.0.1"), protocol=3),
               RouteMsg(dst=NET("192.168.0.0/24"), oif=2, protocol=2, scope=RT_SCOPE_LINK),
               RouteMsg(dst=NET("10.0.0.1/32"), oif=10, protocol=2, scope=RT_SCOPE_LINK)]
    for r in foreign:
        kernel.add_route(r)
    rt = table(kernel)
    rt.set_route(Route.blackhole(NET("10.1.0.0/26")))
    assert rt.apply().deleted == 0
    assert all(kernel.routes_to(r.dst) == [r] for r in foreign)


def test_desired_route_over_someone_elses_route_is_a_conflict_not_a_clobber(
        kernel: FakeNetlink) -> None:
    theirs = RouteMsg(dst=NET("10.5.0.0/26"), oif=2, gateway=ADDR("192.168.0.9"), protocol=4)
    kernel.add_route(theirs)
    rt = table(kernel)
    rt.set_route(Route.blackhole(NET("10.5.0.0/26")))
    result = rt.apply()
    assert result.conflicts == (NET("10.5.0.0/26"),)
    assert kernel.routes_to(NET("10.5.0.0/26")) == [theirs]
    assert rt.counters.conflicts == 1
    kernel.remove_route(NET("10.5.0.0/26"))  # they withdraw theirs: ours goes in
    rt.queue_resync()
    assert rt.apply().updated == 1
    assert rt.counters.conflicts == 0


def test_other_protocol_route_on_our_interface_is_replaced(kernel: FakeNetlink) -> None:
    kernel.add_route(RouteMsg(dst=NET("10.0.0.3/32"), oif=10, protocol=3, scope=RT_SCOPE_LINK))
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.3/32"), "cali1"))
    assert rt.apply().updated == 1
    assert kernel.routes_to(NET("10.0.0.3/32"))[0].protocol == 80


def test_our_route_that_is_no_longer_desired_is_deleted(kernel: FakeNetlink) -> None:
    kernel.add_route(RouteMsg(dst=NET("10.7.0.0/26"), type=RTN_BLACKHOLE, protocol=80))
    rt = table(kernel)
    assert rt.apply().deleted == 1
    assert kernel.routes_to(NET("10.7.0.0/26")) == []


def test_unknown_route_on_a_workload_interface_survives_the_cni_grace_period(
        kernel: FakeNetlink) -> None:
    clock = Clock()
    cni_route = RouteMsg(dst=NET("10.0.0.4/32"), oif=10, scope=RT_SCOPE_LINK)
    kernel.add_route(cni_route)
    rt = table(kernel, clock, workload_grace=10.0)
    first = rt.apply()
    assert first.deleted == 0 and first.retry_after == 10.0
    clock.now += 9
    assert rt.apply().deleted == 0
    clock.now += 2
    assert rt.apply().deleted == 1
    assert kernel.routes_to(NET("10.0.0.4/32")) == []


def test_agent_learning_the_pod_within_the_grace_period_keeps_the_route(
        kernel: FakeNetlink) -> None:
    clock = Clock()
    kernel.add_route(RouteMsg(dst=NET("10.0.0.4/32"), oif=10, scope=RT_SCOPE_LINK))
    rt = table(kernel, clock)
    rt.apply()
    clock.now += 5
    rt.set_route(Route.workload(NET("10.0.0.4/32"), "cali1"))
    clock.now += 60
    result = rt.apply()
    assert (result.updated, result.deleted) == (0, 0)


def test_one_refused_route_does_not_stop_the_others_and_is_retried(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.replace_all([Route.workload(NET(f"10.0.0.{i}/32"), "cali1") for i in range(1, 6)])
    kernel.fail_dst[NET("10.0.0.3/32")] = errno.EINVAL
    result = rt.apply()
    assert result.updated == 4
    assert [(str(f.op.route.dst), f.errno) for f in result.failures] == [
        ("10.0.0.3/32", errno.EINVAL)]
    assert rt.counters.errors == 1
    del kernel.fail_dst[NET("10.0.0.3/32")]
    retry = rt.apply()
    assert retry.ok and retry.updated == 1
    assert [op.route.dst for op in kernel.sent_ops[-1:]] == [NET("10.0.0.3/32")]


def test_lost_replies_make_the_table_look_again_before_writing(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.blackhole(NET("10.1.0.0/26")))
    kernel.fail_sends = 1
    assert rt.apply().error is not None
    dumps = kernel.dump_calls
    assert rt.apply().updated == 1
    assert kernel.dump_calls == dumps + 1


def test_route_deleted_by_hand_is_repaired_on_resync_and_counted(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.1/32"), "cali1"))
    rt.apply()
    kernel.remove_route(NET("10.0.0.1/32"))
    assert rt.apply().updated == 0  # nothing told us yet
    rt.queue_resync()
    assert rt.apply().updated == 1
    assert rt.counters.drift_repaired == 1 and rt.counters.resyncs == 2


def test_periodic_resync_happens_without_being_asked(kernel: FakeNetlink) -> None:
    clock = Clock()
    rt = table(kernel, clock, resync_interval=30.0)
    rt.set_route(Route.blackhole(NET("10.1.0.0/26")))
    rt.apply()
    kernel.remove_route(NET("10.1.0.0/26"))
    clock.now += 31
    assert rt.apply().updated == 1


def test_route_delete_event_repairs_without_a_dump(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.1/32"), "cali1"))
    rt.apply()
    (programmed,) = kernel.routes_to(NET("10.0.0.1/32"))
    kernel.remove_route(NET("10.0.0.1/32"))
    rt.on_route(programmed, deleted=True)
    dumps = kernel.dump_calls
    assert rt.apply().updated == 1
    assert kernel.dump_calls == dumps
    assert rt.counters.drift_repaired == 1


def test_echo_of_our_own_write_changes_nothing(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.1/32"), "cali1"))
    rt.apply()
    (programmed,) = kernel.routes_to(NET("10.0.0.1/32"))
    rt.on_route(programmed, deleted=False)
    assert rt.apply().updated == 0


def test_link_deleted_forgets_its_routes_and_rewrites_them_when_it_returns(
        kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.workload(NET("10.0.0.1/32"), "cali1"))
    rt.apply()
    kernel.del_link("cali1")
    rt.on_link(LinkInfo(index=10, name="cali1", up=False), deleted=True)
    assert rt.apply().waiting_for_iface == 1
    kernel.add_link("cali1", 30)
    rt.on_link(LinkInfo(index=30, name="cali1", up=True), deleted=False)
    assert rt.apply().updated == 1
    assert kernel.routes_to(NET("10.0.0.1/32"))[0].oif == 30


def test_metric_change_leaves_exactly_one_route(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    rt.set_route(Route.blackhole(NET("10.1.0.0/26")))
    rt.apply()
    rt.set_route(Route(dst=NET("10.1.0.0/26"), type="blackhole", priority=50))
    rt.apply()
    assert [r.priority for r in kernel.routes_to(NET("10.1.0.0/26"))] == [50]


def test_ipv6_routes_compare_equal_after_the_kernel_fills_in_metric_and_lo(
        kernel: FakeNetlink) -> None:
    rt = table(kernel, ip_version=6)
    rt.replace_all([Route.blackhole(NET("fd00:1::/122")),
                    Route.workload(NET("fd00:2::5/128"), "cali2"),
                    Route.via(NET("fd00:3::/122"), ADDR("fd00::3"), iface="eth0", onlink=True)])
    assert rt.apply().updated == 3
    rt.queue_resync()
    result = rt.apply()
    assert (result.updated, result.deleted) == (0, 0)


def test_table_rejects_routes_of_the_other_ip_version(kernel: FakeNetlink) -> None:
    with pytest.raises(ValidationError, match="IPv4"):
        table(kernel).set_route(Route.blackhole(NET("fd00::/64")))


def test_set_routes_is_set_route_of_each(kernel: FakeNetlink) -> None:
    """The batch form (how a burst of learned routes arrives) ends where one call per route
    does: the same routes, interfaces re-pointed, a route waiting for its device."""
    first = [Route.via(NET("10.2.0.0/26"), ADDR("192.168.0.2"), iface="eth0", onlink=True),
             Route.workload(NET("10.0.0.1/32"), "cali1"), Route.blackhole(NET("10.1.0.0/26"))]
    then = [Route.workload(NET("10.0.0.1/32"), "cali2"), first[0],
            Route.workload(NET("10.0.0.9/32"), "cali9")]
    names = {link.name: index for index, link in kernel.links.items()}
    one_by_one, batched = FakeNetlink(names), FakeNetlink(names)
    results = []
    for fake, batch in ((one_by_one, False), (batched, True)):
        rt = table(fake)
        for routes in (first, then):
            if batch:
                rt.set_routes(routes)
            else:
                for route in routes:
                    rt.set_route(route)
            result = rt.apply()
            results.append((result.updated, result.deleted, result.waiting_for_iface))
        fake.add_link("cali9", 19)
        rt.on_link(LinkInfo(index=19, name="cali9", up=True), deleted=False)
        rt.apply()
    assert results[:2] == results[2:] == [(3, 0, 0), (1, 0, 1)]
    assert sorted(map(repr, one_by_one.dump_routes(family=2))) == sorted(
        map(repr, batched.dump_routes(family=2)))
    assert batched.routes_to(NET("10.0.0.1/32"))[0].oif == 11
    assert batched.routes_to(NET("10.0.0.9/32"))[0].oif == 19


def test_a_batch_with_a_route_the_table_cannot_hold_takes_none(kernel: FakeNetlink) -> None:
    rt = table(kernel)
    with pytest.raises(ValidationError, match="fd00::/64"):
        rt.set_routes([Route.blackhole(NET("10.1.0.0/26")), Route.blackhole(NET("fd00::/64"))])
    assert rt.apply().updated == 0 and kernel.routes_to(NET("10.1.0.0/26")) == []


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"type": "blackhole", "iface": "cali1"}, "type"),
    ({}, "iface"),
    ({"gateway": ADDR("fd00::1")}, "gateway"),
    ({"iface": "eth0", "onlink": True}, "onlink"),
])
def test_inconsistent_route_is_rejected_naming_the_field(kwargs: dict[str, object],
                                                         field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Route(dst=NET("10.0.0.0/26"), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field and "10.0.0.0/26" in str(info.value)
