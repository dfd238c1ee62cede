/*
 * /init of the Linux guest kit (tests/guests/linux/build-kit.sh), built
 * freestanding with -mgeneral-regs-only: on a host whose KVM emulates guest
 * instructions and rejects SSE, no glibc program can run, but this one uses
 * only general-purpose registers and raw system calls.
 *
 * It mounts proc, sysfs and devtmpfs, loads the kit's modules with
 * finit_module (in /lib/modules/order, a few passes so dependencies settle),
 * then runs the tests named on the kernel command line as
 * vmmd.test=NAME[,NAME...] and powers off (or reboots, for "reboot"):
 *   poweroff  nothing more (the VM must reach state "shutdown")
 *   reboot    reboot(2) instead of poweroff (the VM must reset)
 *   blk       /dev/vda starts with vmmd.blk=TEXT; then "VMMD-GUEST-WROTE <n>"
 *             is written at byte 4096 and read back after fsync
 *   ide       the same on /dev/sda with vmmd.ide=TEXT (ata_piix, sd_mod)
 *   net       every interface but lo comes up (SIOCSIFFLAGS) with carrier 1
 *   pci       every PCI function: address, vendor, device, class, driver
 * Markers: "VMMD-INIT: reached /init", "VMMD-INIT: loaded MODULE",
 * "VMMD-TEST: NAME ok" or "VMMD-TEST: NAME FAIL why", "VMMD-INIT: done".
 */
#include <stddef.h>
#include <stdint.h>

/*
 * System calls go through int $0x80, the i386 ABI a 64-bit kernel with
 * IA32 emulation (Debian's) offers every process: on this project's host a
 * SYSCALL from CPL 3 jumps to the kernel's entry point but stays at CPL 3
 * (a user page fault on entry_SYSCALL_64, so init was killed at its first
 * call), while interrupts and exceptions from CPL 3 work. The i386 ABI takes
 * 32-bit pointers, so everything this program hands the kernel lives below
 * 4 GiB: it is linked there (-no-pie) and runs on a stack of its own.
 */
#define SYS_read 3
#define SYS_write 4
#define SYS_close 6
#define SYS_mount 21
#define SYS_ioctl 54
#define SYS_reboot 88
#define SYS_fsync 118
#define SYS_nanosleep 162
#define SYS_pread64 180
#define SYS_pwrite64 181
#define SYS_getdents64 220
#define SYS_openat 295
#define SYS_readlinkat 305
#define SYS_finit_module 350
#define SYS_socket 359

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_RDWR 2
#define O_DIRECTORY 0200000
#define O_CLOEXEC 02000000
#define AF_INET 2
#define SOCK_DGRAM 2
#define SIOCGIFFLAGS 0x8913
#define SIOCSIFFLAGS 0x8914
#define IFF_UP 0x1
#define REBOOT_MAGIC1 0xfee1deadu
#define REBOOT_MAGIC2 672274793u
#define REBOOT_CMD_POWER_OFF 0x4321fedcu
#define REBOOT_CMD_RESTART 0x01234567u

static long sys5(long n, long a, long b, long c, long d, long e)
{
	long ret;

	/* The kernel returns r8-r15 as zero from an int $0x80 of a 64-bit task. */
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(n), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory");
	return (int)ret; /* the i386 ABI answers in %eax: -errno is negative there */
}

#define sys3(n, a, b, c) sys5((n), (long)(a), (long)(b), (long)(c), 0, 0)

/* The compiler may emit calls to these even when freestanding. */
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;

	while (n--) {
		*p++ = (unsigned char)c;
	}
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--) {
		*p++ = *q++;
	}
	return d;
}

static size_t slen(const char *s)
{
	size_t n = 0;

	while (s[n]) {
		n++;
	}
	return n;
}

static int sncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i] || !a[i]) {
			return (unsigned char)a[i] - (unsigned char)b[i];
		}
	}
	return 0;
}

/* Output: one line buffer, written to the console at newline. */
static char line[512];
static size_t line_len;

static void put(const char *s)
{
	while (*s) {
		if (line_len < sizeof(line) - 1) {
			line[line_len++] = *s;
		}
		if (*s++ == '\n') {
			sys3(SYS_write, 1, line, line_len);
			line_len = 0;
		}
	}
}

static void ok(const char *test)
{
	put("VMMD-TEST: ");
	put(test);
	put(" ok\n");
}

static void fail(const char *test, const char *why, const char *what)
{
	put("VMMD-TEST: ");
	put(test);
	put(" FAIL ");
	put(why);
	put(what ? what : "");
	put("\n");
}

static void sleep_ms(long ms)
{
	int32_t ts[2] = {(int32_t)(ms / 1000), (int32_t)((ms % 1000) * 1000000)};

	sys3(SYS_nanosleep, ts, 0, 0);
}

static int open_path(const char *p, int flags)
{
	return (int)sys5(SYS_openat, AT_FDCWD, (long)p, flags | O_CLOEXEC, 0, 0);
}

/* Whole small file into buf (NUL-terminated, trailing newline cut); length or -1. */
static long read_file(const char *p, char *buf, size_t size)
{
	int fd = open_path(p, O_RDONLY);
	long n, got = 0;

	if (fd < 0) {
		return -1;
	}
	while (got < (long)size - 1 &&
	       (n = sys3(SYS_read, fd, buf + got, (long)size - 1 - got)) > 0) {
		got += n;
	}
	sys3(SYS_close, fd, 0, 0);
	while (got > 0 && buf[got - 1] == '\n') {
		got--;
	}
	buf[got] = 0;
	return got;
}

static int wait_for(const char *p, int tenths)
{
	for (int i = 0; i < tenths; i++) {
		int fd = open_path(p, O_RDONLY);

		if (fd >= 0) {
			sys3(SYS_close, fd, 0, 0);
			return 0;
		}
		sleep_ms(100);
	}
	return -1;
}

static char cmdline[4096];

/* The value of KEY=... on the kernel command line, copied to out; 0 if found. */
static int arg(const char *key, char *out, size_t size)
{
	size_t kl = slen(key);

	for (char *w = cmdline; *w;) {
		char *e = w;

		while (*e && *e != ' ') {
			e++;
		}
		if ((size_t)(e - w) > kl && !sncmp(w, key, kl) && w[kl] == '=') {
			size_t n = (size_t)(e - w) - kl - 1;

			if (n >= size) {
				n = size - 1;
			}
			memcpy(out, w + kl + 1, n);
			out[n] = 0;
			return 0;
		}
		w = *e ? e + 1 : e;
	}
	return -1;
}

static char modnames[64][32];
static int nmod;

static void load_modules(void)
{
	static char order[2048];
	int done[64] = {0};
	long n = read_file("/lib/modules/order", order, sizeof(order));

	for (long i = 0; i < n && nmod < 64;) {
		size_t k = 0;

		while (i < n && order[i] != '\n') {
			if (k < sizeof(modnames[0]) - 1) {
				modnames[nmod][k++] = order[i];
			}
			i++;
		}
		i++;
		modnames[nmod][k] = 0;
		if (k) {
			nmod++;
		}
	}
	for (int pass = 0; pass < 4; pass++) {
		for (int m = 0; m < nmod; m++) {
			char path[64] = "/lib/modules/";
			int fd;

			if (done[m]) {
				continue;
			}
			memcpy(path + 13, modnames[m], slen(modnames[m]));
			memcpy(path + 13 + slen(modnames[m]), ".ko", 4);
			fd = open_path(path, O_RDONLY);
			if (fd >= 0 && sys3(SYS_finit_module, fd, "", 0) == 0) {
				done[m] = 1;
				put("VMMD-INIT: loaded ");
				put(modnames[m]);
				put("\n");
			}
			if (fd >= 0) {
				sys3(SYS_close, fd, 0, 0);
			}
		}
	}
	for (int m = 0; m < nmod; m++) {
		if (!done[m]) {
			put("VMMD-INIT: could not load ");
			put(modnames[m]);
			put("\n");
		}
	}
}

/* blk/ide: the disk starts with the expected text; a write reads back. */
static void test_disk(const char *test, const char *dev, const char *key)
{
	char want[128], got[128], msg[64] = "VMMD-GUEST-WROTE ", back[64];
	size_t wl, ml;
	int fd;

	if (arg(key, want, sizeof(want))) {
		fail(test, "no ", key);
		return;
	}
	if (wait_for(dev, 100)) {
		fail(test, "no ", dev);
		return;
	}
	fd = open_path(dev, O_RDWR);
	if (fd < 0) {
		fail(test, "cannot open ", dev);
		return;
	}
	wl = slen(want);
	if (sys5(SYS_pread64, fd, (long)got, (long)wl, 0, 0) != (long)wl || sncmp(got, want, wl)) {
		fail(test, "the disk does not start with ", want);
		sys3(SYS_close, fd, 0, 0);
		return;
	}
	ml = slen(msg);
	memcpy(msg + ml, want, wl < 40 ? wl : 40);
	ml += wl < 40 ? wl : 40;
	/* pread64/pwrite64 of the i386 ABI: the offset as low and high halves */
	if (sys5(SYS_pwrite64, fd, (long)msg, (long)ml, 4096, 0) != (long)ml ||
	    sys3(SYS_fsync, fd, 0, 0) != 0 ||
	    sys5(SYS_pread64, fd, (long)back, (long)ml, 4096, 0) != (long)ml ||
	    sncmp(back, msg, ml)) {
		fail(test, "the write at 4096 did not read back on ", dev);
	} else {
		ok(test);
	}
	sys3(SYS_close, fd, 0, 0);
}

struct ifreq_flags {
	char name[16];
	short flags;
	char pad[22];
};

struct dirent64 {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

/* The last component of a symbolic link's target, or "-". */
static void readlink_base(const char *p, char *out, size_t size)
{
	long l = sys5(SYS_readlinkat, AT_FDCWD, (long)p, (long)out, (long)size - 1, 0);
	const char *base = out;

	if (l < 0) {
		memcpy(out, "-", 2);
		return;
	}
	out[l] = 0;
	for (long i = 0; i < l; i++) {
		if (out[i] == '/') {
			base = out + i + 1;
		}
	}
	memcpy(out, base, slen(base) + 1);
}

/* net: bring one interface up; 0 if it reports carrier 1. */
static int link_up(int s, const char *ifname)
{
	struct ifreq_flags ifr;
	char p[96] = "/sys/class/net/", carrier[16] = "?", state[32] = "?", drv[64] = "?";
	size_t n = slen(p), l = slen(ifname);

	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.name, ifname, l < 15 ? l : 15);
	if (sys3(SYS_ioctl, s, SIOCGIFFLAGS, &ifr) < 0) {
		return -1;
	}
	ifr.flags |= IFF_UP;
	if (sys3(SYS_ioctl, s, SIOCSIFFLAGS, &ifr) < 0) {
		return -1;
	}
	memcpy(p + n, ifname, l);
	memcpy(p + n + l, "/carrier", 9);
	for (int i = 0; i < 100; i++) {
		if (read_file(p, carrier, sizeof(carrier)) > 0 && carrier[0] == '1') {
			break;
		}
		sleep_ms(100);
	}
	memcpy(p + n + l, "/operstate", 11);
	read_file(p, state, sizeof(state));
	memcpy(p + n + l, "/device/driver", 15);
	readlink_base(p, drv, sizeof(drv));
	put("VMMD-INIT: ");
	put(ifname);
	put(" driver ");
	put(drv);
	put(" carrier ");
	put(carrier);
	put(" operstate ");
	put(state);
	put("\n");
	return carrier[0] == '1' ? 0 : -1;
}

/* net: every interface but lo comes up with carrier (there must be one). */
static void test_net(void)
{
	static char buf[2048];
	int s, fd, count = 0, bad = 0;
	long n;

	wait_for("/sys/class/net/eth0", 100);
	s = (int)sys3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
	fd = open_path("/sys/class/net", O_RDONLY | O_DIRECTORY);
	if (s < 0 || fd < 0) {
		fail("net", "no socket or no /sys/class/net", 0);
		return;
	}
	while ((n = sys3(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);

			off += d->reclen;
			if (d->name[0] == '.' || !sncmp(d->name, "lo", 3)) {
				continue;
			}
			count++;
			bad += link_up(s, d->name) != 0;
		}
	}
	sys3(SYS_close, fd, 0, 0);
	sys3(SYS_close, s, 0, 0);
	if (!count) {
		fail("net", "no network interface", 0);
	} else if (bad) {
		fail("net", "an interface has no carrier", 0);
	} else {
		ok("net");
	}
}

static void pci_attr(const char *dev, const char *attr, char *out, size_t size)
{
	char p[128] = "/sys/bus/pci/devices/";
	size_t n = slen(p);

	memcpy(p + n, dev, slen(dev));
	n += slen(dev);
	p[n++] = '/';
	memcpy(p + n, attr, slen(attr) + 1);
	if (!sncmp(attr, "driver", 7)) {
		readlink_base(p, out, size);
		return;
	}
	if (read_file(p, out, size) < 0) {
		memcpy(out, "?", 2);
	}
}

static void test_pci(void)
{
	static char buf[4096];
	int fd = open_path("/sys/bus/pci/devices", O_RDONLY | O_DIRECTORY);
	long n, count = 0;

	if (fd < 0) {
		fail("pci", "no /sys/bus/pci/devices", 0);
		return;
	}
	while ((n = sys3(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			char v[16], dv[16], cl[16], drv[64];

			off += d->reclen;
			if (d->name[0] == '.') {
				continue;
			}
			pci_attr(d->name, "vendor", v, sizeof(v));
			pci_attr(d->name, "device", dv, sizeof(dv));
			pci_attr(d->name, "class", cl, sizeof(cl));
			pci_attr(d->name, "driver", drv, sizeof(drv));
			put("VMMD-PCI: ");
			put(d->name);
			put(" ");
			put(v);
			put(":");
			put(dv);
			put(" class ");
			put(cl);
			put(" driver ");
			put(drv);
			put("\n");
			count++;
		}
	}
	sys3(SYS_close, fd, 0, 0);
	if (count) {
		ok("pci");
	} else {
		fail("pci", "no PCI functions", 0);
	}
}

void init_main(void);

void init_main(void)
{
	char tests[256];
	int reboot = 0;

	sys5(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", 0, 0);
	sys5(SYS_mount, (long)"sysfs", (long)"/sys", (long)"sysfs", 0, 0);
	sys5(SYS_mount, (long)"devtmpfs", (long)"/dev", (long)"devtmpfs", 0, 0);
	put("VMMD-INIT: reached /init\n");
	read_file("/proc/cmdline", cmdline, sizeof(cmdline));
	load_modules();
	if (arg("vmmd.test", tests, sizeof(tests))) {
		tests[0] = 0;
	}
	put("VMMD-INIT: tests '");
	put(tests);
	put("'\n");
	for (char *t = tests; *t;) {
		char *e = t;

		while (*e && *e != ',') {
			e++;
		}
		if (*e) {
			*e++ = 0;
		}
		if (!sncmp(t, "poweroff", 9)) {
			ok("poweroff");
		} else if (!sncmp(t, "reboot", 7)) {
			ok("reboot");
			reboot = 1;
		} else if (!sncmp(t, "blk", 4)) {
			test_disk("blk", "/dev/vda", "vmmd.blk");
		} else if (!sncmp(t, "ide", 4)) {
			test_disk("ide", "/dev/sda", "vmmd.ide");
		} else if (!sncmp(t, "net", 4)) {
			test_net();
		} else if (!sncmp(t, "pci", 4)) {
			test_pci();
		} else {
			fail(t, "unknown test", 0);
		}
		t = e;
	}
	put("VMMD-INIT: done\n");
	sys5(SYS_reboot, (long)REBOOT_MAGIC1, (long)REBOOT_MAGIC2,
	     (long)(reboot ? REBOOT_CMD_RESTART : REBOOT_CMD_POWER_OFF), 0, 0);
	for (;;) {
		sleep_ms(1000);
	}
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	lea stack_top(%rip), %rsp\n"
	"	call init_main\n"
	"	hlt\n"
	".pushsection .bss\n"
	".balign 16\n"
	"	.space 65536\n"
	"stack_top:\n"
	".popsection\n");
