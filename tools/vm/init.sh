#!/bin/busybox sh
# /init of the Wren test VM (runs inside the initramfs, as PID 1).
#
# Why: Debian's kernel builds virtio and 9p as modules, so something must load them before the
# host's root (shared read-only over virtio-9p by qemu, tag `root`) can be mounted. Then it
# builds a root the tests can live in and hands over to stage2.sh:
#
#   /            host root, 9p, read-only, cache=loose (fast repeated imports)
#   /proc /sys /dev           fresh for the guest kernel (never the host's, through 9p)
#   /tmp /run /var            tmpfs (writable), /var/run -> /run (pyroute2 keeps netns there)
#   /run/wren/results         9p tag `results`, WRITABLE: junit XML and exit code for the host
#   <checkout host path>      9p tag `checkout`, read-only: the checkout may live under the
#                             host's /tmp, which the guest's tmpfs hides
#
# Kernel command line: wren.script=<path> wren.checkout=<path> wren.python=<path>.
# Any failure here is reported through isa-debug-exit (qemu exits 2*code+1) with a code >= 100,
# so the host tells "the VM could not start" apart from "a test failed".

/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "wren-init: FAILED: $2" >/dev/console
    printf "\\$(printf '%03o' "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    poweroff -f
}

mount -t proc proc /proc || fail 100 "mount /proc"
mount -t sysfs sys /sys || fail 100 "mount /sys"
mount -t devtmpfs dev /dev || fail 100 "mount /dev"

for module in /lib/modules/*.ko; do
    insmod "$module" || fail 101 "insmod $module"
done

SCRIPT=""
CHECKOUT=""
PYTHON=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        wren.script=*) SCRIPT="${word#wren.script=}" ;;
        wren.checkout=*) CHECKOUT="${word#wren.checkout=}" ;;
        wren.python=*) PYTHON="${word#wren.python=}" ;;
    esac
done
[ -n "$SCRIPT" ] || fail 102 "no wren.script= on the kernel command line"
[ -n "$CHECKOUT" ] || fail 102 "no wren.checkout= on the kernel command line"

NINEP="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$NINEP,ro,cache=loose" root /newroot || fail 103 "mount 9p root"
mount -t proc proc /newroot/proc || fail 104 "mount guest /proc"
mount -t sysfs sys /newroot/sys || fail 104 "mount guest /sys"
mount -t devtmpfs dev /newroot/dev || fail 104 "mount guest /dev"
for dir in tmp run var; do
    mount -t tmpfs -o mode=1777 tmpfs "/newroot/$dir" || fail 104 "tmpfs on /$dir"
done
ln -s /run /newroot/var/run
mkdir -p /newroot/var/tmp /newroot/var/lib /newroot/var/log /newroot/run/wren/results

mount -t 9p -o "$NINEP" results /newroot/run/wren/results || fail 105 "mount 9p results"
# Under /tmp (or /run, /var) the mount point lives on tmpfs and must be made; elsewhere it
# already exists on the read-only root.
[ -d "/newroot$CHECKOUT" ] || mkdir -p "/newroot$CHECKOUT" || fail 106 "mkdir $CHECKOUT"
mount -t 9p -o "$NINEP,ro,cache=loose" checkout "/newroot$CHECKOUT" \
    || fail 106 "mount 9p checkout at $CHECKOUT"

cp /bin/busybox /stage2.sh /newroot/run/wren/ || fail 107 "copy stage2 into /run/wren"
cat >/newroot/run/wren/env <<EOF
export WREN_IN_VM=1
export WREN_VM_SCRIPT='$SCRIPT'
export WREN_VM_CHECKOUT='$CHECKOUT'
export WREN_VM_PYTHON='${PYTHON:-$CHECKOUT/.venv/bin/python}'
export WREN_VM_RESULTS=/run/wren/results
EOF

umount /proc /sys /dev
exec switch_root /newroot /run/wren/busybox sh /run/wren/stage2.sh
