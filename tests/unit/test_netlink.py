"""The route codec and the batch/ACK/error logic of RouteSocket, without a kernel: the socket is
replaced by a scripted peer that parses what we send and answers like the kernel does."""

import errno
import ipaddress
import socket
import struct
from collections.abc import Callable

import pytest
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from agent.kernel import netlink as nl
from agent.kernel.netlink import (
    AF_BRIDGE,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    RT_SCOPE_LINK,
    RTN_BLACKHOLE,
    NeighMsg,
    NeighOp,
    NetlinkMessage,
    RouteMsg,
    RouteOp,
    RouteSocket,
    decode_error,
    decode_link,
    decode_neigh,
    decode_route,
    encode_neigh,
    encode_neigh_dump_request,
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


def test_routes_of_one_shape_encode_each_with_its_own_destination_flags_and_seq() -> None:
    """The encoder packs a shape once and copies it: every copy must still carry its route's
    destination, length, flags and sequence number (checked against pyroute2's encoder)."""
    gateway = ADDR("10.0.1.1")
    dsts = [NET("10.128.0.0/26"), NET("10.128.0.64/26"), NET("10.130.0.0/16"),
            NET("10.128.0.7/32"), NET("0.0.0.0/0")]
    v6 = [NET("fd00:1::/122"), NET("fd00:2::/64")]
    for k, dst in enumerate([*dsts, *dsts]):
        route = RouteMsg(dst=dst, oif=2, gateway=gateway, onlink=True)
        ours = encode_one(route, msg_type=nl.RTM_NEWROUTE, flags=k % 3, seq=1000 + k)
        assert ours == pyroute2_bytes(route, seq=1000 + k, flags=k % 3,
                                      msg_type=nl.RTM_NEWROUTE), str(dst)
    for k, dst in enumerate([*v6, *v6]):
        route = RouteMsg(dst=dst, oif=5, gateway=ADDR("fd00::9"), priority=1024)
        ours = encode_one(route, msg_type=nl.RTM_DELROUTE, flags=1, seq=k)
        assert ours == pyroute2_bytes(route, seq=k, flags=1, msg_type=nl.RTM_DELROUTE), str(dst)


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


def route_in(raw: bytes, msg: NetlinkMessage) -> RouteMsg:
    route = decode_route(raw, msg.start, msg.end)
    assert route is not None
    return route


class ScriptedKernel:
    """Plays the kernel's side of a command socket: fails the destinations in `refuse` (routes
    by prefix, neighbours by address), acknowledges messages that ask for it, and delivers
    replies in small reads."""

    def __init__(self, refuse: dict[str, int],
                 decode: Callable[[bytes, NetlinkMessage], RouteMsg | NeighMsg] = route_in
                 ) -> None:
        self.refuse = refuse
        self.decode = decode
        self.sends: list[list[tuple[int, int, int, RouteMsg | NeighMsg]]] = []
        self.pending: list[bytes] = []

    def send(self, data: memoryview) -> int:
        raw = bytes(data)
        batch = []
        for msg in iter_messages(raw, len(raw)):
            item = self.decode(raw, msg)
            batch.append((msg.seq, msg.flags, msg.type, item))
            code = self.refuse.get(str(item.dst), 0)
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


# --- neighbours --------------------------------------------------------------------------------

def encode_neigh_one(neigh: NeighMsg, *, msg_type: int = nl.RTM_NEWNEIGH, flags: int = 0x505,
                     seq: int = 7) -> bytes:
    buf = bytearray(8)  # too small on purpose: the encoder grows it
    end = encode_neigh(buf, 0, msg_type=msg_type, flags=flags, seq=seq, neigh=neigh)
    return bytes(buf[:end])


VTEP = NeighMsg(family=socket.AF_INET, ifindex=5, dst=ADDR("10.244.1.0"),
                lladdr="66:00:00:00:00:02")
VTEP_FDB = NeighMsg(family=AF_BRIDGE, ifindex=5, dst=ADDR("192.168.0.2"),
                    lladdr="66:00:00:00:00:02", state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)
NEIGHS = [
    VTEP,
    VTEP_FDB,
    NeighMsg(family=socket.AF_INET6, ifindex=300, dst=ADDR("fd00:1::5"),
             lladdr="ee:ee:ee:ee:ee:ee"),
    NeighMsg(family=AF_BRIDGE, ifindex=5, dst=ADDR("fd00::2"), lladdr="66:00:00:00:00:03",
             state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF),
    NeighMsg(family=socket.AF_INET, ifindex=5, dst=ADDR("10.244.1.0")),  # a delete: no MAC
    NeighMsg(family=AF_BRIDGE, ifindex=5, lladdr="66:00:00:00:00:02", flags=NTF_SELF),
]


def test_vtep_neighbour_encodes_to_the_exact_kernel_bytes() -> None:
    expected = bytes.fromhex(
        "30000000" "1c00" "0505" "07000000" "00000000"  # nlmsghdr: len 48, NEWNEIGH, flags, seq
        "02" "000000" "05000000" "8000" "00" "00"  # AF_INET, pad, ifindex 5, PERMANENT, 0, 0
        "0800" "0100" "0af40100"  # NDA_DST 10.244.1.0
        "0a00" "0200" "660000000002" "0000"  # NDA_LLADDR, padded to 4 bytes
    )
    assert encode_neigh_one(VTEP) == expected


def pyroute2_neigh_bytes(neigh: NeighMsg, *, seq: int, flags: int, msg_type: int) -> bytes:
    msg = ndmsg()
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["family"] = neigh.family
    msg["ifindex"] = neigh.ifindex
    msg["state"] = neigh.state
    msg["flags"] = neigh.flags
    attrs: list[list[object]] = []
    if neigh.dst is not None:
        attrs.append(["NDA_DST", str(neigh.dst)])
    if neigh.lladdr:
        attrs.append(["NDA_LLADDR", neigh.lladdr])
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize("neigh", NEIGHS)
def test_neighbour_encoding_matches_pyroute2s_encoder_byte_for_byte(neigh: NeighMsg) -> None:
    ours = encode_neigh_one(neigh, msg_type=nl.RTM_DELNEIGH, flags=1, seq=99)
    assert ours == pyroute2_neigh_bytes(neigh, seq=99, flags=1, msg_type=nl.RTM_DELNEIGH)


@pytest.mark.parametrize("neigh", NEIGHS)
def test_pyroute2s_parser_reads_back_every_field_we_pack(neigh: NeighMsg) -> None:
    parsed = ndmsg(encode_neigh_one(neigh, seq=41))
    parsed.decode()
    assert parsed["header"]["type"] == nl.RTM_NEWNEIGH
    assert parsed["header"]["sequence_number"] == 41
    assert parsed["header"]["length"] == len(encode_neigh_one(neigh))
    assert (parsed["family"], parsed["ifindex"], parsed["state"], parsed["flags"]) == (
        neigh.family, neigh.ifindex, neigh.state, neigh.flags)
    dst = parsed.get_attr("NDA_DST")
    assert (ADDR(dst) if dst is not None else None) == neigh.dst
    assert (parsed.get_attr("NDA_LLADDR") or "") == neigh.lladdr


@pytest.mark.parametrize("neigh", NEIGHS)
def test_decoding_what_we_encode_gives_the_same_neighbour(neigh: NeighMsg) -> None:
    data = encode_neigh_one(neigh)
    (msg,) = list(iter_messages(data, len(data)))
    assert msg.type == nl.RTM_NEWNEIGH and msg.seq == 7
    assert decode_neigh(data, msg.start, msg.end) == neigh


@pytest.mark.parametrize("neigh", NEIGHS)
def test_encoder_leaves_no_stale_bytes_in_a_reused_buffer(neigh: NeighMsg) -> None:
    buf = bytearray(b"\xff" * 256)
    end = encode_neigh(buf, 4, msg_type=nl.RTM_NEWNEIGH, flags=0x505, seq=7, neigh=neigh)
    assert bytes(buf[4:end]) == encode_neigh_one(neigh)


def test_neighbour_dump_request_is_zero_but_family_and_filters_by_device() -> None:
    data = encode_neigh_dump_request(seq=5, family=AF_BRIDGE, ifindex=9)
    (msg,) = list(iter_messages(data, len(data)))
    assert msg.type == nl.RTM_GETNEIGH and msg.flags == nl.NLM_F_REQUEST | nl.NLM_F_DUMP
    assert data[msg.start:msg.start + 12] == bytes([AF_BRIDGE]) + bytes(11)  # strict checking
    assert data[msg.start + 12:] == bytes.fromhex("0800" "0800" "09000000")  # NDA_IFINDEX 9
    everything = encode_neigh_dump_request(seq=6, family=socket.AF_UNSPEC)
    assert len(everything) == 16 + 12


def neigh_in(raw: bytes, msg: NetlinkMessage) -> NeighMsg:
    return decode_neigh(raw, msg.start, msg.end)


def neighbours(n: int) -> list[NeighOp]:
    return [NeighOp("replace", NeighMsg(family=socket.AF_INET, ifindex=5,
                                        dst=ADDR(f"10.244.{i // 250}.{i % 250}"),
                                        lladdr=f"66:00:00:00:{i // 256:02x}:{i % 256:02x}"))
            for i in range(n)]


def test_neighbour_batches_ack_last_and_each_error_maps_back_to_its_entry(
        route_socket: RouteSocket) -> None:
    ops = neighbours(10)
    kernel = ScriptedKernel({"10.244.0.3": errno.EAFNOSUPPORT, "10.244.0.8": errno.ENODEV},
                            decode=neigh_in)
    route_socket._sock = kernel  # type: ignore[assignment]
    failures = route_socket.send_neighs(ops)
    assert [len(b) for b in kernel.sends] == [4, 4, 2]
    for batch in kernel.sends:
        assert [bool(f & nl.NLM_F_ACK) for _, f, _, _ in batch] == [False] * (len(batch) - 1) + [
            True]
        assert {t for _, _, t, _ in batch} == {nl.RTM_NEWNEIGH}
        assert all(f & (nl.NLM_F_CREATE | nl.NLM_F_REPLACE) for _, f, _, _ in batch)
    assert [(f.op, f.errno) for f in failures] == [(ops[3], errno.EAFNOSUPPORT),
                                                   (ops[8], errno.ENODEV)]
    text = str(failures[0])
    assert "10.244.0.3" in text and "66:00:00:00:00:03" in text and "ifindex=5" in text
    assert "EAFNOSUPPORT" in text and failures[1].reason == "ENODEV (refused)"


def test_neighbour_delete_is_sent_as_delneigh_without_create_flags(
        route_socket: RouteSocket) -> None:
    kernel = ScriptedKernel({}, decode=neigh_in)
    route_socket._sock = kernel  # type: ignore[assignment]
    op = NeighOp("delete", VTEP_FDB)
    assert route_socket.send_neighs([op]) == []
    ((_seq, flags, mtype, neigh),) = kernel.sends[0]
    assert (mtype, flags, neigh) == (nl.RTM_DELNEIGH, nl.NLM_F_REQUEST | nl.NLM_F_ACK, VTEP_FDB)


class DumpingKernel:
    """Answers one dump request with `entries` (whatever it asked for) and NLMSG_DONE."""

    def __init__(self, entries: list[NeighMsg]) -> None:
        self.entries = entries
        self.requests: list[bytes] = []
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.requests.append(bytes(data))
        seq = struct.unpack_from("=I", data, 8)[0]
        replies = b"".join(encode_neigh_one(e, flags=nl.NLM_F_MULTI, seq=seq)
                           for e in self.entries)
        done = struct.pack("=IHHIIi", 20, nl.NLMSG_DONE, nl.NLM_F_MULTI, seq, 0, 0)
        self.pending = [replies, done]
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        chunk = self.pending.pop(0)
        buf[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("strict", [True, False])
def test_fdb_dump_of_one_device_with_or_without_strict_checking(
        route_socket: RouteSocket, strict: bool) -> None:
    other = VTEP_FDB._replace(ifindex=6, lladdr="66:00:00:00:00:06")
    kernel = DumpingKernel([VTEP_FDB, other])
    route_socket._sock = kernel  # type: ignore[assignment]
    route_socket._strict = strict
    assert route_socket.dump_neighs(family=AF_BRIDGE, ifindex=5) == [VTEP_FDB]
    (request,) = kernel.requests
    # Without strict checking the kernel would read an NDA_IFINDEX as part of an ifinfomsg.
    assert len(request) == (16 + 12 + 8 if strict else 16 + 12)
    assert route_socket.dump_neighs(family=AF_BRIDGE) == [VTEP_FDB, other]
