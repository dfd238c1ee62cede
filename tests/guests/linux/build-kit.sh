#!/bin/sh
# Build the Linux guest kit from Debian packages, outside the source tree:
#   tests/guests/linux/build-kit.sh [CACHE_DIR]
# CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/vmmd/linux-kit. It ends up holding
#   bzImage         the stock kernel as packaged (linux-image-amd64's versioned package)
#   vmlinux         the ELF kernel extracted from bzImage's compressed payload
#   initramfs.gz    /init (tests/guests/linux/init.c, built freestanding without SSE) and
#                   the modules for virtio-pci/blk/net, ata_piix + sd_mod and e1000
#   kernel-version  the kernel release string
# and the script prints "KIT=CACHE_DIR" last. A second run with the same packages and
# /init does nothing but check. Exit 77 if the packages cannot be downloaded (no
# network or no apt), 1 on any other failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/vmmd/linux-kit}
MODULES="virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
	virtio_blk failover net_failover virtio_net scsi_common scsi_mod libata ata_piix
	crc64 crc64-rocksoft crc64_rocksoft_generic crct10dif_common crct10dif_generic
	crc-t10dif t10-pi sd_mod e1000"

say() { echo "build-kit: $*" >&2; }
die() { say "$*"; exit 1; }
skip() { say "$*"; exit 77; }

for t in apt-get apt-cache dpkg-deb python3 gzip cc objdump; do
	command -v "$t" >/dev/null 2>&1 || skip "'$t' is missing"
done
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# The versioned image package behind the linux-image-amd64 metapackage.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
[ -n "$kpkg" ] || skip "apt does not know linux-image-amd64 (run apt-get update?)"
kver=${kpkg#linux-image-}

# What the kit was built from; a match means nothing to do.
stamp="$kpkg $(cat "$here/init.c" "$0" | cksum | cut -d' ' -f1)"
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ] &&
	[ -s "$cache/vmlinux" ] && [ -s "$cache/bzImage" ] && [ -s "$cache/initramfs.gz" ]; then
	echo "KIT=$cache"
	exit 0
fi
rm -f "$cache/stamp"

debs="$cache/debs"
mkdir -p "$debs"
for p in "$kpkg"; do
	if ! ls "$debs/${p}_"*.deb >/dev/null 2>&1; then
		say "downloading $p"
		(cd "$debs" && apt-get download "$p" >/dev/null 2>"$debs/apt.log") ||
			skip "apt-get download $p failed: $(tail -n 1 "$debs/apt.log")"
	fi
done

work="$cache/work"
rm -rf "$work"
mkdir -p "$work/kernel"
dpkg-deb -x "$(ls "$debs/${kpkg}_"*.deb | head -n 1)" "$work/kernel"

vmlinuz="$work/kernel/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "no boot/vmlinuz-$kver in $kpkg"
cp "$vmlinuz" "$cache/bzImage.tmp"
mv "$cache/bzImage.tmp" "$cache/bzImage"

# vmlinux: try every compression magic found in the bzImage (the payload follows the
# setup code and the decompressor) until one decompresses to an ELF image.
python3 - "$cache/bzImage" "$cache/vmlinux.tmp" <<'EOF' || die "cannot extract vmlinux from bzImage"
import subprocess, sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
tools = [
    (b"\xfd7zXZ\x00", ["xz", "-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
    (b"\x1f\x8b\x08", ["gzip", "-dc"]),
    (b"\x02\x21\x4c\x18", ["lz4", "-dc"]),
]
for magic, cmd in tools:
    off = data.find(magic)
    while off >= 0:
        p = subprocess.run(cmd, input=data[off:], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        if p.stdout[:4] == b"\x7fELF":
            open(dst, "wb").write(p.stdout)
            print("build-kit: vmlinux from %s payload at offset %d (%d bytes)" %
                  (cmd[0], off, len(p.stdout)), file=sys.stderr)
            sys.exit(0)
        off = data.find(magic, off + 1)
sys.exit(1)
EOF
mv "$cache/vmlinux.tmp" "$cache/vmlinux"

# The initramfs tree.
root="$work/root"
mkdir -p "$root/lib/modules" "$root/proc" "$root/sys" "$root/dev"
# /init may use no SSE, x87 or AVX register: the host's emulator rejects them
# (glibc's string functions use SSE2 at once), so it is built freestanding and
# its disassembly checked.
cc -Os -static -nostdlib -ffreestanding -fno-builtin -mgeneral-regs-only \
	-fno-stack-protector -fno-pie -no-pie -fno-asynchronous-unwind-tables -Wall -Werror \
	-o "$root/init" "$here/init.c" || die "cannot build init.c"
if objdump -d "$root/init" | grep -qE '%[xyz]mm|%st|%mm[0-7]|mxcsr|fxsave|fxrstor'; then
	die "init uses SSE, x87 or AVX registers"
fi
moddir="$work/kernel/lib/modules/$kver"
for m in $MODULES; do
	f=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
	if [ -z "$f" ]; then
		say "module $m: not found (built in?)"
		continue
	fi
	case "$f" in
	*.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
	*.zst) zstd -dcq "$f" >"$root/lib/modules/$m.ko" ;;
	*) cp "$f" "$root/lib/modules/$m.ko" ;;
	esac
	echo "$m" >>"$root/lib/modules/order"
done
echo "$kver" >"$cache/kernel-version"

# newc cpio written directly, so /dev/console exists without mknod (and without root).
python3 - "$root" "$cache/initramfs.tmp" <<'EOF' || die "cannot write the initramfs"
import gzip, os, stat, sys

root, dst = sys.argv[1], sys.argv[2]
ino = [1000]

def entry(out, name, mode, data=b"", rdev=(0, 0)):
    ino[0] += 1
    hdr = "070701" + "".join("%08X" % v for v in (
        ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0))
    out.write(hdr.encode() + name.encode() + b"\0")
    out.write(b"\0" * ((4 - (110 + len(name) + 1) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))

with gzip.open(dst, "wb", compresslevel=6) as out:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(d, root)
        if rel != ".":
            entry(out, rel, stat.S_IFDIR | 0o755)
        for f in sorted(files):
            p = os.path.join(d, f)
            name = os.path.normpath(os.path.join(rel, f))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entry(out, name, stat.S_IFLNK | 0o777, os.readlink(p).encode())
            else:
                entry(out, name, stat.S_IFREG | (st.st_mode & 0o777), open(p, "rb").read())
    entry(out, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entry(out, "TRAILER!!!", 0)
EOF
mv "$cache/initramfs.tmp" "$cache/initramfs.gz"
rm -rf "$work"
echo "$stamp" >"$cache/stamp"
say "kernel $kver, $(wc -c <"$cache/vmlinux") byte vmlinux, $(wc -c <"$cache/initramfs.gz") byte initramfs"
echo "KIT=$cache"
