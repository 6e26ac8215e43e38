# Runs inside the qemu VM (tools/vm/stage2.sh, cwd = the checkout): `python -m lab up` for an
# IPIP mode, on Debian's kernel that has the module. The checkout is read-only here, so the
# lab's work dir goes to the guest's tmpfs; MODE and NODES come from the host in lab.env.
modprobe -a ipip vxlan veth dummy bridge || echo "wren-vm: modprobe failed"
. "$WREN_VM_RESULTS/lab.env"
# Emulated CPUs: ExaBGP and the agents take minutes, not seconds, to start.
export MODE NODES WREN_LAB_DIR=/tmp/wren-lab WREN_LAB_CONVERGE_TIMEOUT=900 PYTHONUNBUFFERED=1
"$WREN_VM_PYTHON" -m lab up >"$WREN_VM_RESULTS/lab.out" 2>&1
rc=$?
cat "$WREN_VM_RESULTS/lab.out"
exit "$rc"
