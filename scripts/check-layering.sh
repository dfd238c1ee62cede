#!/bin/sh
# The include rules that keep the tree's layers apart (docs/architecture.md).
# Exits 1 and names every offending line when one is broken:
#   1. hw/core/ (the machine) includes a device header (hw/isa, hw/pci,
#      hw/platform, hw/virtio): the machine knows devices only through the
#      registry, hw/devices.h.
#   2. A file outside hw/core/ includes hw/core/vm-int.h (the VM's insides):
#      devices use hw/device.h.
#   3. A virtio device model includes hw/virtio/virtio-pci.h (the transport):
#      models use hw/virtio/virtio.h.
#   4. monitor/ (the protocol library) includes anything from daemon/.
# Usage: scripts/check-layering.sh [TOP]   (TOP defaults to this checkout)
set -u
top=${1:-$(dirname "$0")/..}
cd "$top" || exit 2

bad=0
# $1: files (one per line), $2: extended regex of a forbidden include path, $3: why.
check() {
	[ -n "$1" ] || return 0
	hits=$(echo "$1" | tr '\n' '\0' |
		xargs -0 grep -HnE "^[[:space:]]*#[[:space:]]*include[[:space:]]+\"$2\"" || true)
	[ -n "$hits" ] || return 0
	echo "$hits" | sed "s|\$|: $3|; s|^|check-layering: |" >&2
	bad=1
}

# Every C file of the tree, build output and scratch folders left out.
sources() {
	find . -path ./build -prune -o -path './build-*' -prune -o -path ./.git -prune -o \
		\( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | sort
}

all=$(sources)
core=$(echo "$all" | grep -E '^hw/core/' || true)
notcore=$(echo "$all" | grep -vE '^hw/core/' || true)
models=$(echo "$all" | grep -E '^hw/virtio/[^/]+\.c$' | grep -vE '^hw/virtio/(virtio-pci|virtqueue)\.c$' || true)
monitor=$(echo "$all" | grep -E '^monitor/' || true)

check "$core" 'hw/(isa|pci|platform|virtio)/[^"]*' \
	"the machine (hw/core/) includes a device header; go through hw/devices.h"
check "$notcore" 'hw/core/vm-int\.h' "only hw/core/ may include vm-int.h; devices use hw/device.h"
check "$models" 'hw/virtio/virtio-pci\.h' \
	"a virtio model includes the PCI transport; use hw/virtio/virtio.h"
check "$monitor" 'daemon/[^"]*' "monitor/ is a protocol library and includes nothing from daemon/"

if [ "$bad" -ne 0 ]; then
	echo "check-layering: FAILED (rules in scripts/check-layering.sh and docs/architecture.md)" >&2
	exit 1
fi
echo "check-layering: ok"
