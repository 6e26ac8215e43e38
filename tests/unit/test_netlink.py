"""The route codec and the batch/ACK/error logic of RouteSocket, without a kernel: the socket is
replaced by a scripted peer that parses what we send and answers like the kernel does."""

import errno
import ipaddress
import socket
import struct

import pytest
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from agent.kernel import netlink as nl
from agent.kernel.netlink import (
    RT_SCOPE_LINK,
    RTN_BLACKHOLE,
    RouteMsg,
    RouteOp,
    RouteSocket,
    decode_error,
    decode_link,
    decode_route,
    encode_route,
    encode_route_dump_request,
    iter_messages,
)

pytestmark = pytest.mark.timeout(20)

NET = ipaddress.ip_network
ADDR = ipaddress.ip_address


def encode_one(route: RouteMsg, *, msg_type: int = nl.RTM_NEWROUTE, flags: int = 0x505,
               seq: int = 7) -> bytes:
    buf = bytearray(8)  # too small on purpose: the encoder grows it
    end = encode_route(buf, 0, msg_type=msg_type, flags=flags, seq=seq, route=route)
    return bytes(buf[:end])


def test_workload_route_encodes_to_the_exact_kernel_bytes() -> None:
    route = RouteMsg(dst=NET("10.0.0.1/32"), oif=3, scope=RT_SCOPE_LINK)
    expected = bytes.fromhex(
        "34000000" "1800" "0505" "07000000" "00000000"  # nlmsghdr: len 52, NEWROUTE, flags, seq
        "02" "20" "00" "00" "fe" "50" "fd" "01" "00000000"  # AF_INET /32 main proto80 link unicast
        "0800" "0f00" "fe000000"  # RTA_TABLE 254
        "0800" "0100" "0a000001"  # RTA_DST 10.0.0.1
        "0800" "0400" "03000000"  # RTA_OIF 3
    )
    assert encode_one(route) == expected


def pyroute2_bytes(route: RouteMsg, *, seq: int, flags: int, msg_type: int) -> bytes:
    family = socket.AF_INET if route.dst.version == 4 else socket.AF_INET6
    msg = rtmsg()
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["family"] = family
    msg["dst_len"] = route.dst.prefixlen
    msg["table"] = route.table if route.table < 256 else 252
    msg["proto"] = route.protocol
    msg["scope"] = route.scope
    msg["type"] = route.type
    msg["flags"] = 4 if route.onlink else 0
    attrs: list[list[object]] = [["RTA_TABLE", route.table],
                                 ["RTA_DST", str(route.dst.network_address)]]
    if route.oif:
        attrs.append(["RTA_OIF", route.oif])
    if route.gateway is not None:
        attrs.append(["RTA_GATEWAY", str(route.gateway)])
    if route.priority:
        attrs.append(["RTA_PRIORITY", route.priority])
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize("route", [
    RouteMsg(dst=NET("10.0.0.1/32"), oif=3, scope=RT_SCOPE_LINK),
    RouteMsg(dst=NET("10.1.2.0/26"), type=RTN_BLACKHOLE),
    RouteMsg(dst=NET("10.9.0.0/26"), oif=2, gateway=ADDR("192.168.1.2"), onlink=True),
    RouteMsg(dst=NET("10.9.0.0/26"), gateway=ADDR("192.168.1.2"), table=1000, priority=20),
    RouteMsg(dst=NET("fd00:1::/122"), oif=5, gateway=ADDR("fd00::9"), onlink=True,
             priority=1024),
    RouteMsg(dst=NET("fd00:2::7/128"), oif=5),
])
def test_encoding_matches_pyroute2s_encoder_byte_for_byte(route: RouteMsg) -> None:
    ours = encode_one(route, msg_type=nl.RTM_DELROUTE, flags=1, seq=99)
    assert ours == pyroute2_bytes(route, seq=99, flags=1, msg_type=nl.RTM_DELROUTE)


@pytest.mark.parametrize("route", [
    RouteMsg(dst=NET("10.0.0.1/32"), oif=3, scope=RT_SCOPE_LINK),
    RouteMsg(dst=NET("10.1.2.0/26"), type=RTN_BLACKHOLE, priority=3),
    RouteMsg(dst=NET("10.9.0.0/26"), oif=2, gateway=ADDR("192.168.1.2"), onlink=True),
    RouteMsg(dst=NET("0.0.0.0/0"), gateway=ADDR("192.168.1.1"), table=1000, protocol=3),
    RouteMsg(dst=NET("fd00:1::/122"), oif=5, gateway=ADDR("fd00::9"), priority=1024),
])
def test_decoding_what_we_encode_gives_the_same_route(route: RouteMsg) -> None:
    data = encode_one(route)
    (msg,) = list(iter_messages(data, len(data)))
    assert msg.type == nl.RTM_NEWROUTE and msg.seq == 7
    assert decode_route(data, msg.start, msg.end) == route


def test_cloned_cache_entries_are_not_routes() -> None:
    data = bytearray(encode_one(RouteMsg(dst=NET("10.0.0.1/32"), oif=3)))
    struct.pack_into("=I", data, 16 + 8, nl.RTM_F_CLONED)  # rtm_flags
    (msg,) = list(iter_messages(data, len(data)))
    assert decode_route(data, msg.start, msg.end) is None


def test_dump_request_carries_table_protocol_and_oif_for_kernel_filtering() -> None:
    data = encode_route_dump_request(seq=5, family=socket.AF_INET6, table=254, protocol=80,
                                     oif=9)
    (msg,) = list(iter_messages(data, len(data)))
    assert msg.type == nl.RTM_GETROUTE and msg.flags == nl.NLM_F_REQUEST | nl.NLM_F_DUMP
    family, dst_len, _, _, table, proto, scope, rtype, flags = struct.unpack_from(
        "=BBBBBBBBI", data, msg.start)
    assert (family, dst_len, table, proto, scope, rtype, flags) == (10, 0, 254, 80, 0, 0, 0)
    assert data[msg.start + 12:] == bytes.fromhex("08000f00fe000000" "0800040009000000")


def test_link_message_gives_index_name_and_up_flag() -> None:
    body = struct.pack("=BxHiII", 0, 1, 42, 1, 0)
    name = b"cali12345\x00"
    attr = struct.pack("=HH", 4 + len(name), nl.IFLA_IFNAME) + name + b"\x00" * 2
    payload = body + attr
    data = struct.pack("=IHHII", 16 + len(payload), nl.RTM_NEWLINK, 2, 1, 0) + payload
    (msg,) = list(iter_messages(data, len(data)))
    link = decode_link(data, msg.start, msg.end)
    assert (link.index, link.name, link.up) == (42, "cali12345", True)


def error_message(seq: int, code: int, text: str = "") -> bytes:
    tlvs = b""
    flags = nl.NLM_F_CAPPED
    if text:
        raw = text.encode() + b"\x00"
        tlvs = struct.pack("=HH", 4 + len(raw), nl.NLMSGERR_ATTR_MSG) + raw
        tlvs += b"\x00" * ((4 - len(tlvs) % 4) % 4)
        flags |= nl.NLM_F_ACK_TLVS
    payload = struct.pack("=i", -code) + struct.pack("=IHHII", 52, 24, 0x505, seq, 0) + tlvs
    return struct.pack("=IHHII", 16 + len(payload), nl.NLMSG_ERROR, flags, seq, 0) + payload


def test_error_message_gives_errno_and_extended_ack_text() -> None:
    data = error_message(3, errno.ENODEV, "Device not found")
    (msg,) = list(iter_messages(data, len(data)))
    assert decode_error(data, msg) == (errno.ENODEV, "Device not found")
    ack = error_message(3, 0)
    (msg,) = list(iter_messages(ack, len(ack)))
    assert decode_error(ack, msg) == (0, "")


class ScriptedKernel:
    """Plays the kernel's side of a command socket: fails the destinations in `refuse`,
    acknowledges messages that ask for it, and delivers replies in small reads."""

    def __init__(self, refuse: dict[str, int]) -> None:
        self.refuse = refuse
        self.sends: list[list[tuple[int, int, int, RouteMsg]]] = []
        self.pending: list[bytes] = []

    def send(self, data: memoryview) -> int:
        raw = bytes(data)
        batch = []
        for msg in iter_messages(raw, len(raw)):
            route = decode_route(raw, msg.start, msg.end)
            assert route is not None
            batch.append((msg.seq, msg.flags, msg.type, route))
            code = self.refuse.get(str(route.dst), 0)
            if code or msg.flags & nl.NLM_F_ACK:
                self.pending.append(error_message(msg.seq, code, "refused" if code else ""))
        self.sends.append(batch)
        return len(raw)

    def recv_into(self, buf: bytearray) -> int:
        chunk = self.pending.pop(0)  # one message per datagram, as the kernel may
        buf[:len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        pass


def routes(n: int) -> list[RouteOp]:
    return [RouteOp("replace", RouteMsg(dst=NET(f"10.0.{i // 250}.{i % 250}/32"), oif=3,
                                        scope=RT_SCOPE_LINK)) for i in range(n)]


@pytest.fixture
def route_socket() -> RouteSocket:
    rs = RouteSocket(batch_messages=4)  # opening a netlink socket changes nothing in the kernel
    rs._sock.close()
    return rs


def test_ack_is_requested_only_on_the_last_message_of_each_batch(
        route_socket: RouteSocket) -> None:
    kernel = ScriptedKernel({})
    route_socket._sock = kernel  # type: ignore[assignment]
    assert route_socket.send_routes(routes(10)) == []
    assert [len(b) for b in kernel.sends] == [4, 4, 2]
    for batch in kernel.sends:
        acks = [bool(flags & nl.NLM_F_ACK) for _, flags, _, _ in batch]
        assert acks == [False] * (len(batch) - 1) + [True]
        seqs = [seq for seq, _, _, _ in batch]
        assert seqs == list(range(seqs[0], seqs[0] + len(batch)))


def test_each_kernel_error_maps_back_to_the_route_that_caused_it(
        route_socket: RouteSocket) -> None:
    ops = routes(10)
    kernel = ScriptedKernel({"10.0.0.2/32": errno.EINVAL, "10.0.0.7/32": errno.ENODEV,
                             "10.0.0.9/32": errno.EEXIST})  # .9 is the last of its batch
    route_socket._sock = kernel  # type: ignore[assignment]
    failures = route_socket.send_routes(ops)
    assert [(f.op, f.errno, f.message) for f in failures] == [
        (ops[2], errno.EINVAL, "refused"), (ops[7], errno.ENODEV, "refused"),
        (ops[9], errno.EEXIST, "refused")]
    assert "10.0.0.7/32" in str(failures[1]) and "ENODEV" in str(failures[1])


def test_delete_is_sent_as_delroute_without_create_flags(route_socket: RouteSocket) -> None:
    kernel = ScriptedKernel({})
    route_socket._sock = kernel  # type: ignore[assignment]
    op = RouteOp("delete", RouteMsg(dst=NET("10.0.0.1/32"), oif=3))
    route_socket.send_routes([op])
    ((_seq, flags, mtype, route),) = kernel.sends[0]
    assert mtype == nl.RTM_DELROUTE
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_ACK
    assert route == op.route


def test_decoding_reuses_a_network_object_the_caller_already_holds() -> None:
    held = NET("10.0.0.1/32")
    data = encode_one(RouteMsg(dst=NET("10.0.0.1/32"), oif=3))
    (msg,) = list(iter_messages(data, len(data)))
    route = decode_route(data, msg.start, msg.end, {nl.prefix_key(held): held})
    assert route is not None and route.dst is held
    other = decode_route(data, msg.start, msg.end, {nl.prefix_key(NET("10.0.0.2/32")): held})
    assert other is not None and other.dst == NET("10.0.0.1/32") and other.dst is not held


def test_prefix_keys_differ_across_ip_versions_and_lengths() -> None:
    keys = {nl.prefix_key(NET(n)) for n in ("0.0.0.0/0", "::/0", "10.0.0.0/8", "10.0.0.0/16",
                                             "::a00:0/104", "10.0.0.1/32")}
    assert len(keys) == 6
