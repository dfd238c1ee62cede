#!/bin/sh
# scripts/check-layering.sh passes on this tree and fails, naming the file
# and the rule, on each kind of forbidden include added to a copy of it.
. "$top_srcdir/tests/lib/harness.sh"

check="$top_srcdir/scripts/check-layering.sh"
out=$("$check" "$top_srcdir" 2>&1) || fail "the tree itself breaks a rule: $out"
expect_contains "$out" "check-layering: ok"

# One forbidden include per rule: file to touch, line to add, words of the rule.
try() {
	rm -rf "$TEST_TMP/tree"
	mkdir -p "$TEST_TMP/tree"
	(cd "$top_srcdir" && cp -r hw monitor daemon "$TEST_TMP/tree/")
	echo "$2" >>"$TEST_TMP/tree/$1"
	if out=$("$check" "$TEST_TMP/tree" 2>&1); then
		fail "check-layering accepted '$2' in $1"
	fi
	expect_contains "$out" "$1:"
	expect_contains "$out" "$3"
}
try hw/core/vm.c '#include "hw/isa/serial.h"' "the machine (hw/core/) includes a device header"
try hw/pci/e1000.c '#include "hw/core/vm-int.h"' "only hw/core/ may include vm-int.h"
try hw/virtio/blk.c '#include "hw/virtio/virtio-pci.h"' "a virtio model includes the PCI transport"
try monitor/dispatch.c '#include "daemon/registry.h"' "monitor/ is a protocol library"
echo "ok"
