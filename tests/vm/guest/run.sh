# Runs inside the test VM (started by tools/vm/stage2.sh, cwd = the checkout): loads the tunnel
# modules the host kernel lacks, then runs every guest test in ONE pytest process (Python start
# over 9p under TCG costs 10-20 s, so one boot and one interpreter serve all of them).
#
# Leaves for the host: $WREN_VM_RESULTS/junit.xml and $WREN_VM_RESULTS/rc.

# bridge: the test fabric joins node namespaces on L2 subnets (tests/vm/guest/topology.py).
modprobe -a ipip vxlan veth dummy bridge || echo "wren-vm: modprobe failed"
echo "wren-vm: modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

"$WREN_VM_PYTHON" -m pytest tests/vm/guest \
    -p no:cacheprovider -p no:hypothesispytest --color=no \
    --junitxml="$WREN_VM_RESULTS/junit.xml" \
    -o junit_family=xunit2 \
    -v
rc=$?
echo "$rc" >"$WREN_VM_RESULTS/rc"
exit "$rc"
