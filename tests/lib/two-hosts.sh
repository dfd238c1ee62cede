#!/bin/sh
# Two "hosts" on one machine for migration tests: network namespaces
# NAME-a and NAME-b joined by a veth pair, with 10.X.Y.1/30 in NAME-a and
# 10.X.Y.2/30 in NAME-b (the addresses exist only inside the namespaces).
#
#   two-hosts.sh up NAME [SUBNET]   SUBNET is the first three octets of the
#                                   /30 (default 10.231.0); prints nothing
#   two-hosts.sh shape NAME RATE    cap NAME-a -> NAME-b with tc (e.g. 20mbit)
#   two-hosts.sh cut NAME           cut the link (both ends down): a network cut
#   two-hosts.sh down NAME          remove both namespaces (and the veth pair)
#
# Run a command on a host with: ip netns exec NAME-a CMD. Needs root.
set -eu

cmd=${1:?usage: two-hosts.sh up|shape|cut|down NAME}
name=${2:?usage: two-hosts.sh up|shape|cut|down NAME}
# 8 hex digits from the name: a veth name fits in 15 bytes (a CRC of fewer
# than 8 decimal digits, cut to 8 characters, took cksum's space along)
veth_id() { echo "$name" | cksum | awk '{ printf "%08x", $1 }'; }
a=$name-a
b=$name-b

case $cmd in
up)
	net=${3:-10.231.0}
	# A failed step removes what this `up` made (a caller cleans up only
	# after an `up` that worked).
	ip netns add "$a"
	trap 'ip netns del "$a"' EXIT
	ip netns add "$b"
	trap 'ip netns del "$a"; ip netns del "$b"' EXIT
	# veth names are at most 15 bytes: derive short ones from the namespace names.
	va=v$(veth_id)a
	vb=v$(veth_id)b
	ip link add "$va" netns "$a" type veth peer name "$vb" netns "$b"
	ip -n "$a" addr add "$net.1/30" dev "$va"
	ip -n "$b" addr add "$net.2/30" dev "$vb"
	for ns in "$a" "$b"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$a" link set "$va" up
	ip -n "$b" link set "$vb" up
	trap - EXIT
	;;
shape)
	rate=${3:?usage: two-hosts.sh shape NAME RATE}
	va=v$(veth_id)a
	ip netns exec "$a" tc qdisc replace dev "$va" root tbf rate "$rate" burst 32kbit latency 400ms
	;;
cut)
	va=v$(veth_id)a
	vb=v$(veth_id)b
	ip -n "$a" link set "$va" down
	ip -n "$b" link set "$vb" down
	;;
down)
	# Deleting a namespace deletes its end of the veth pair, and with it the peer.
	ip netns del "$a" 2>/dev/null || true
	ip netns del "$b" 2>/dev/null || true
	;;
*)
	echo "two-hosts.sh: unknown command $cmd" >&2
	exit 2
	;;
esac
