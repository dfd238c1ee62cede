#!/bin/sh
# A real single-node Ceph cluster for tests, from Debian's ceph-mon and
# ceph-osd: one monitor on a free loopback port, one OSD on memstore (RAM),
# a pool "rbd" initialised for RBD, no authentication (loopback only).
#
#   ceph-cluster.sh start DIR   prints "CONF=DIR/ceph.conf" when the pool is usable
#   ceph-cluster.sh stop DIR    kills the daemons and removes DIR
#
# CEPH_CLUSTER_ADDR (default 127.0.0.1) and CEPH_CLUSTER_NET (default
# 127.0.0.0/8) put it on another address, e.g. inside a network namespace
# of tests/lib/two-hosts.sh where both "hosts" reach it.
#
# Exit status 77 (skip) only when a Ceph program is missing, which on a
# machine set up by ./run is a bug (./run installs ceph-mon and ceph-osd).
set -eu

cmd=${1:?usage: ceph-cluster.sh start|stop DIR}
dir=${2:?usage: ceph-cluster.sh start|stop DIR}

# The pid in pid file $1 if it is still a Ceph daemon's: once a daemon is
# gone its pid may be another process's.
daemon_pid() {
	pid=$(cat "$1" 2>/dev/null || true)
	[ -n "$pid" ] || return 1
	case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
	ceph-*) echo "$pid" ;;
	*) return 1 ;;
	esac
}

stop() {
	for pidf in "$dir"/run/*.pid; do
		[ -f "$pidf" ] || continue
		pid=$(daemon_pid "$pidf") && kill "$pid" 2>/dev/null || true
	done
	# give them a moment to go, then make sure
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		alive=no
		for pidf in "$dir"/run/*.pid; do
			[ -f "$pidf" ] || continue
			daemon_pid "$pidf" >/dev/null && alive=yes
		done
		[ $alive = no ] && break
		sleep 0.5
	done
	for pidf in "$dir"/run/*.pid; do
		[ -f "$pidf" ] || continue
		pid=$(daemon_pid "$pidf") && kill -9 "$pid" 2>/dev/null || true
	done
	rm -rf "$dir"
}

if [ "$cmd" = stop ]; then
	stop
	exit 0
fi
case "$cmd" in start | start-once) ;; *) echo "usage: ceph-cluster.sh start|stop DIR" >&2; exit 2 ;; esac

for p in ceph-mon ceph-osd ceph monmaptool ceph-authtool rbd; do
	command -v $p >/dev/null || { echo "ceph-cluster: $p not installed" >&2; exit 77; }
done

if [ "$cmd" = start ]; then
	# A start that fails for a reason not understood yet is retried from scratch.
	for try in 1 2 3; do
		# traced: a failed try shows the command that failed
		if sh -x "$0" start-once "$dir" >"${TMPDIR:-/tmp}/ceph-cluster.$$.log" 2>&1; then
			rm -f "${TMPDIR:-/tmp}/ceph-cluster.$$.log"
			echo "CONF=$dir/ceph.conf"
			exit 0
		fi
		echo "ceph-cluster: try $try failed:" >&2
		tail -n 3 "${TMPDIR:-/tmp}/ceph-cluster.$$.log" "$dir/log/osd-start.log" 2>/dev/null |
			grep -v '^$' >&2 || true
		grep -h -iE 'error|fsid|fail' "$dir"/log/*.log 2>/dev/null | tail -n 5 >&2 || true
		stop
		sleep 1
	done
	rm -f "${TMPDIR:-/tmp}/ceph-cluster.$$.log"
	exit 1
fi

# start-once: one try at a cluster (a separate process, so that set -e holds)
mkdir -p "$dir/mon" "$dir/osd" "$dir/run" "$dir/log"
fsid=$(cat /proc/sys/kernel/random/uuid)
addr=${CEPH_CLUSTER_ADDR:-127.0.0.1}
net=${CEPH_CLUSTER_NET:-127.0.0.0/8}
# a free port for the monitor
port=$(python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$addr")
conf=$dir/ceph.conf
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:$addr:$port
mon initial members = a
public network = $net
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
keyring = $dir/keyring
[mon]
mon data = $dir/mon/\$id
[osd]
osd data = $dir/osd/\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd max object name len = 256
osd max object namespace len = 64
osd heartbeat grace = 60
osd client watch timeout = 10
# The OSD's own monitor commands at start ("osd crush set-device-class",
# "osd crush create-or-move") can leave before its client has the monitor
# map, carrying fsid 0: the monitor answers "wrong fsid" and the OSD exits.
# The script places it in the CRUSH map instead.
osd crush update on start = false
osd class update on start = false
EOF

ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
	--cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v1:$addr:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -c "$conf" -i a 2>>"$dir/log/mon-start.log"

c() { timeout 60 ceph -c "$conf" --connect-timeout 30 "$@"; }
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
id=$(c osd create "$osd_uuid")
c osd crush add "osd.$id" 1.0 root=default >/dev/null 2>&1
mkdir -p "$dir/osd/$id"
ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.log" 2>&1
ceph-osd -c "$conf" -i "$id" 2>>"$dir/log/osd-start.log"

# the OSD is up and in, then the pool's placement groups are active
deadline=$(($(date +%s) + 120))
until c osd stat 2>/dev/null | grep -q '1 up.*1 in'; do
	[ "$(date +%s)" -lt $deadline ] || { echo "ceph-cluster: the OSD did not come up" >&2; exit 1; }
	sleep 1
done
c osd pool create rbd 8 8 >/dev/null 2>&1
c osd pool application enable rbd rbd >/dev/null 2>&1
# a write that completes proves the placement groups are active
until timeout 30 rbd -c "$conf" create --size 1M rbd/.probe 2>/dev/null; do
	[ "$(date +%s)" -lt $deadline ] || { echo "ceph-cluster: the pool did not become active" >&2; exit 1; }
	sleep 1
done
rbd -c "$conf" rm rbd/.probe >/dev/null 2>&1 || true
