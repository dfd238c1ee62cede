#!/bin/sh
# The README's demo: what a new user sees first.
set -eu
B=${1:?builddir}
echo "vmmd demo: the daemon and its clients are built."
"$B/vmmd" --version
"$B/vmctl" --version
"$B/vmm-img" --version
