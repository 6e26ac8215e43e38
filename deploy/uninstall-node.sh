#!/bin/sh
# Remove what Wren left on this node, after `kubectl delete -k deploy/` (run as root on each node,
# or from a privileged pod: kubectl debug node/NODE -it --image=wren-node:0.1.0 -- chroot /host sh).
# Pods still running on the node lose their network: drain the node first.
#
#   uninstall-node.sh [--dry-run]     --dry-run prints the commands instead of running them
#
# What it removes (names from wren/constants.py and agent/kernel/):
#   /etc/cni/net.d/10-wren.conflist, /etc/cni/net.d/wren-kubeconfig   CNI configuration
#   /opt/cni/bin/wren, /opt/cni/bin/wren-ipam, /opt/wren              the plugins and their Python
#   /var/run/wren, /var/lib/wren                                      sockets, MTU file
#   routes with protocol 80 (IPv4 and IPv6)                           the agent's and the plugin's
#   cali* veths, vxlan.calico; tunl0 down and without addresses      (tunl0 belongs to the ipip
#                                                                     module and cannot be deleted)
#   jumps from built-in chains to cali-*/wren-* chains, then those chains, for iptables-nft and
#   iptables-legacy, tables filter/nat/mangle/raw
#   ipsets cali40*, cali60*, cali4-wren-tmp
set -u

RUN=
if [ "${1:-}" = "--dry-run" ]; then
    RUN=echo
fi
ROUTE_PROTOCOL=80

run() { $RUN "$@" || true; }
have() { command -v "$1" >/dev/null 2>&1; }

# CNI first, so the runtime stops creating Wren pods on this node.
run rm -f /etc/cni/net.d/10-wren.conflist /etc/cni/net.d/wren-kubeconfig
run rm -f /opt/cni/bin/wren /opt/cni/bin/wren-ipam
run rm -rf /opt/wren /var/run/wren /var/lib/wren

if have ip; then
    run ip -4 route flush proto "$ROUTE_PROTOCOL"
    run ip -6 route flush proto "$ROUTE_PROTOCOL"
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^cali'); do
        run ip link del "$link"
    done
    if ip link show vxlan.calico >/dev/null 2>&1; then
        run ip link del vxlan.calico
    fi
    if ip link show tunl0 >/dev/null 2>&1; then
        run ip addr flush dev tunl0
        run ip link set tunl0 down
    fi
fi

# Netfilter: delete the rules in other chains that jump to ours, then flush and delete ours.
for backend in iptables-nft iptables-legacy ip6tables-nft ip6tables-legacy; do
    have "$backend" || continue
    for table in filter nat mangle raw; do
        dump=$("$backend-save" -t "$table" 2>/dev/null) || continue
        echo "$dump" | grep -E '^-A [^ ]+ .*-j (cali|wren)-' | grep -vE '^-A (cali|wren)-' |
            while read -r _ chain rest; do
                # shellcheck disable=SC2086 # the rule's words are separate arguments
                eval run "$backend" -t "$table" -D "$chain" $rest
            done
        for chain in $(echo "$dump" | sed -n 's/^:\(\(cali\|wren\)-[^ ]*\) .*/\1/p'); do
            run "$backend" -t "$table" -F "$chain"
        done
        for chain in $(echo "$dump" | sed -n 's/^:\(\(cali\|wren\)-[^ ]*\) .*/\1/p'); do
            run "$backend" -t "$table" -X "$chain"
        done
    done
done

# IP sets last: iptables rules no longer reference them.
if have ipset; then
    for set in $(ipset list -n 2>/dev/null | grep -E '^(cali40|cali60|cali4-wren-tmp)'); do
        run ipset destroy "$set"
    done
fi
