#!/bin/busybox sh
# PID 1 of a `cargo xtask vmtest` VM (packed into the initramfs by
# xtask/src/vm/initramfs.rs with /vmtest/config and /vmtest/cmd.sh).
#
# Loads the modules the kernel needs for virtiofs, mounts the host's root
# (shared read-only by virtiofsd) at /newroot, makes the places a test writes
# writable (tmpfs, or an overlay with a tmpfs upper where the host's files
# must stay visible), mounts the kernel filesystems the sensor uses, then
# moves the host's root onto / and runs the command chrooted into it, so
# every binary is at the path it has on the host, as the kernel sees it too. The host reads the serial console for the
# VMTEST-* markers: INIT (init started), RUN (command starts), EXIT <code>,
# SETUP-FAILED <what> (the VM could not be set up: the command did not run).

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

up() { cut -d' ' -f1 /proc/uptime; }
finish() {
	echo
	echo "VMTEST-EXIT $1"
	poweroff -f
	sleep 60
}
fail() {
	echo
	echo "VMTEST-SETUP-FAILED $*"
	finish 254
}

echo
echo "VMTEST-INIT uptime=$(up)"
. /vmtest/config

for m in $VMTEST_MODULES; do
	insmod "/modules/$m" || fail "insmod $m"
done

R=/newroot
mkdir -p $R /rw
mount -t virtiofs -o ro hostroot $R || fail "mount -t virtiofs hostroot (virtiofsd on the host?)"

# kernel filesystems, at the paths the host has them on a systemd machine
mount -t proc proc $R/proc || fail "mount proc"
mount -t sysfs sysfs $R/sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs $R/dev || fail "mount devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm || fail "mount /dev/shm"
mount -t securityfs securityfs $R/sys/kernel/security || fail "mount securityfs"
mount -t tracefs tracefs $R/sys/kernel/tracing || fail "mount tracefs"
mount -t debugfs debugfs $R/sys/kernel/debug || fail "mount debugfs"
mount -t bpf bpf $R/sys/fs/bpf || fail "mount bpffs"
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "mount cgroup2"

# writable places: overlays first (their lower is the host's directory), then
# the empty tmpfs ones, which may lie inside an overlay (/var/tmp in /var)
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount /rw"
n=0
for d in $VMTEST_OVERLAY; do
	n=$((n + 1))
	mkdir -p /rw/$n/upper /rw/$n/work
	if ! mount -t overlay -o "lowerdir=$R$d,upperdir=/rw/$n/upper,workdir=/rw/$n/work" overlay "$R$d"; then
		echo "vmtest: no overlay on $d: an empty tmpfs instead (the host's files there are not visible)"
		mount -t tmpfs -o mode=0755 tmpfs "$R$d" || fail "mount tmpfs on $d"
	fi
done
# the checkout, when it lies in one of the empty tmpfs places (a clone in
# /tmp): an overlay of it, made before the tmpfs hides it, moved in after
k=0
for d in $VMTEST_KEPT; do
	k=$((k + 1))
	mkdir -p /rw/kept$k/upper /rw/kept$k/work /rw/kept$k/merged
	mount -t overlay -o "lowerdir=$R$d,upperdir=/rw/kept$k/upper,workdir=/rw/kept$k/work" overlay /rw/kept$k/merged || fail "overlay on $d"
done
for d in $VMTEST_TMPFS; do
	mount -t tmpfs -o mode=1777 tmpfs "$R$d" || fail "mount tmpfs on $d (does $d exist on the host?)"
done
k=0
for d in $VMTEST_KEPT; do
	k=$((k + 1))
	mkdir -p "$R$d" || fail "mkdir $d"
	mount --move /rw/kept$k/merged "$R$d" || fail "mount --move $d"
done

ip link set lo up || fail "ip link set lo up"
hostname "$VMTEST_HOSTNAME"
mkdir -p $R/run/vmtest
cp /vmtest/cmd.sh $R/run/vmtest/cmd.sh

echo "VMTEST-RUN uptime=$(up) release=$(uname -r)"
# the host's root becomes the mount at / (as switch_root does), then the
# command is chrooted into it: a sensor that walks paths to the global root
# (mcp-sensor does, like d_absolute_path) sees the host's paths, not /newroot/...
cd $R && mount --move . / || fail "mount --move $R /"
env -i chroot . /bin/sh /run/vmtest/cmd.sh </dev/null 2>&1
rc=$?
echo
echo "VMTEST-DONE uptime=$(up)"
finish $rc
