# Stage 2 of the Wren test VM: PID 1 on the host root after switch_root (run by busybox sh,
# copied to /run/wren by init.sh, so it does not depend on the host's shell).
#
# Why a separate stage: PID 1 must never exit (the kernel panics), and the test script's exit
# code must reach the host. This runs the named script as a child, writes its code to
# isa-debug-exit (port 0xf4; qemu then exits with 2*code+1) and powers off as a fallback.

BB=/run/wren/busybox
. /run/wren/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp
export PYTHONDONTWRITEBYTECODE=1
export LANG=C.UTF-8

$BB ip link set lo up 2>/dev/null
$BB hostname wren-vm

echo "wren-vm: running $WREN_VM_SCRIPT in $WREN_VM_CHECKOUT"
cd "$WREN_VM_CHECKOUT" || code=110
if [ -z "$code" ]; then
    $BB sh "$WREN_VM_SCRIPT"
    code=$?
fi
[ "$code" -gt 127 ] && code=127
echo "wren-vm: script exit $code"
$BB sync
printf "\\$($BB printf '%03o' "$code")" | $BB dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
$BB poweroff -f
