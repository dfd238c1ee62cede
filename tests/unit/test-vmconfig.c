/* Unit tests for hw/core/vm-config.c: the VM definition parser and its canonical form. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <string.h>

#include "strdup-fail.h"
#include "vmmd/block.h"
#include "vmmd/vm.h"

#define BOOT "\"boot\": {\"kernel\": \"/k\"}"

static struct vm_config *ok(const char *text)
{
	struct vm_config *cfg = NULL;
	struct error *err = NULL;
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);

	ck_assert_msg(j, "bad JSON in test: %s", jerr.text);
	if (vm_config_from_json(j, true, &cfg, &err) < 0) {
		ck_abort_msg("rejected %s: %s", text, err->msg);
	}
	json_decref(j);
	return cfg;
}

/* Must fail with @code and a message containing @needle. */
static void bad(const char *text, int code, const char *needle)
{
	struct vm_config *cfg = NULL;
	struct error *err = NULL;
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	int r;

	ck_assert_msg(j, "bad JSON in test: %s", jerr.text);
	r = vm_config_from_json(j, false, &cfg, &err);
	ck_assert_msg(r == -code, "%s: got %d, want %d", text, r, -code);
	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err->msg, needle), "message \"%s\" lacks \"%s\"", err->msg, needle);
	error_free(err);
	json_decref(j);
}

START_TEST(defaults)
{
	struct vm_config *c = ok("{\"name\": \"web1\", " BOOT "}");

	ck_assert_str_eq(c->name, "web1");
	ck_assert_uint_eq(c->vcpus, 1);
	ck_assert_uint_eq(c->memory, 256ull << 20);
	ck_assert_str_eq(c->cpu, "host");
	ck_assert_str_eq(c->boot.kernel, "/k");
	ck_assert_ptr_null(c->boot.initrd);
	ck_assert_uint_eq(c->n_disks, 0);
	ck_assert_uint_eq(c->n_nics, 0);
	ck_assert_str_eq(c->on_reboot, "reset");
	ck_assert(c->acpi);
	ck_assert(!c->autostart);
	ck_assert(!c->rng);
	ck_assert_str_eq(c->mem_backend, "anonymous");
	ck_assert(c->mem_thp);
	ck_assert_ptr_null(c->serial_log);
	/* The default is not written out: older daemons read definitions too. */
	{
		json_t *j = vm_config_to_json(c);

		ck_assert_ptr_null(json_object_get(j, "mem_thp"));
		json_decref(j);
	}
	vm_config_free(c);
}
END_TEST

START_TEST(full_example)
{
	struct vm_config *c = ok(
		"{\"name\": \"web1\", \"vcpus\": 2, \"memory\": \"512M\", \"cpu\": "
		"\"baseline,-cx16,+popcnt\","
		" \"boot\": {\"kernel\": \"/srv/vmlinuz\", \"initrd\": \"/srv/initrd\", "
		"\"cmdline\": "
		"\"console=ttyS0\"},"
		" \"disks\": [{\"id\": \"vda\", \"file\": \"/srv/a.qcow2\", \"format\": \"qcow2\", "
		"\"readonly\": false, \"cache\": \"none\"},"
		"             {\"id\": \"cd\", \"driver\": \"ide-cd\"}],"
		" \"nics\": [{\"id\": \"net0\", \"backend\": \"user\", \"hostfwd\": "
		"[\"tcp::2222-:22\"]},"
		"          {\"id\": \"net1\", \"backend\": \"tap\", \"ifname\": \"tap0\", \"mac\": "
		"\"52:54:00:12:34:56\"}],"
		" \"serial\": {\"log\": \"/var/log/c\"}, \"on_reboot\": \"shutdown\", "
		"\"autostart\": "
		"true, \"acpi\": false, \"rng\": true, \"mem_backend\": \"memfd\", \"mem_thp\": "
		"false, \"start\": true}");

	ck_assert_uint_eq(c->vcpus, 2);
	ck_assert_uint_eq(c->memory, 512ull << 20);
	ck_assert_str_eq(c->boot.cmdline, "console=ttyS0");
	ck_assert_uint_eq(c->n_disks, 2);
	ck_assert_str_eq(c->disks[0].format, "qcow2");
	ck_assert_str_eq(c->disks[0].cache, "none");
	ck_assert_str_eq(c->disks[0].driver, "virtio-blk");
	ck_assert_str_eq(c->disks[0].werror, "report");
	ck_assert_str_eq(c->disks[1].driver, "ide-cd");
	ck_assert(c->disks[1].readonly);
	ck_assert_uint_eq(c->n_nics, 2);
	ck_assert_str_eq(c->nics[0].driver, "virtio-net");
	ck_assert_str_eq(c->nics[0].hostfwd[0], "tcp::2222-:22");
	ck_assert_ptr_null(c->nics[0].hostfwd[1]);
	ck_assert_str_eq(c->nics[1].ifname, "tap0");
	ck_assert_str_eq(c->serial_log, "/var/log/c");
	ck_assert(!c->acpi);
	ck_assert(c->rng);
	ck_assert(c->autostart);
	ck_assert(!c->mem_thp);

	/* Canonical form round-trips to an equal definition. */
	{
		json_t *j1 = vm_config_to_json(c), *j2;
		struct vm_config *c2 = NULL;
		struct error *err = NULL;

		ck_assert(json_is_false(json_object_get(j1, "mem_thp")));
		ck_assert_int_eq(vm_config_from_json(j1, false, &c2, &err), 0);
		j2 = vm_config_to_json(c2);
		ck_assert(json_equal(j1, j2));
		json_decref(j1);
		json_decref(j2);
		vm_config_free(c2);
	}
	{
		struct vm_config *copy = NULL;

		ck_assert_int_eq(vm_config_copy(c, &copy, NULL), 0);
		ck_assert_str_eq(copy->nics[1].mac, "52:54:00:12:34:56");
		vm_config_free(copy);
	}
	vm_config_free(c);
}
END_TEST

START_TEST(sizes_and_ranges)
{
	struct vm_config *c;

	c = ok("{\"name\": \"a\", \"memory\": 16777216, " BOOT "}");
	ck_assert_uint_eq(c->memory, 16ull << 20);
	vm_config_free(c);
	c = ok("{\"name\": \"a\", \"memory\": \"64G\", \"vcpus\": 64, " BOOT "}");
	ck_assert_uint_eq(c->memory, 64ull << 30);
	ck_assert_uint_eq(c->vcpus, 64);
	vm_config_free(c);
	bad("{\"name\": \"a\", \"memory\": \"15M\", " BOOT "}", ERANGE, "between 16M and");
	bad("{\"name\": \"a\", \"memory\": \"1P\", " BOOT "}", ERANGE, "\"memory\"");
	bad("{\"name\": \"a\", \"memory\": \"lots\", " BOOT "}", EINVAL, "not a size");
	bad("{\"name\": \"a\", \"memory\": -5, " BOOT "}", EINVAL, "negative");
	bad("{\"name\": \"a\", \"memory\": 16777217, " BOOT "}", EINVAL, "multiple of 1M");
	bad("{\"name\": \"a\", \"memory\": true, " BOOT "}", EINVAL, "\"memory\"");
	bad("{\"name\": \"a\", \"vcpus\": 0, " BOOT "}", ERANGE, "between 1 and 64");
	bad("{\"name\": \"a\", \"vcpus\": 65, " BOOT "}", ERANGE, "between 1 and 64");
	bad("{\"name\": \"a\", \"vcpus\": \"2\", " BOOT "}", EINVAL, "must be an integer");
	bad("{\"name\": \"a\", \"memory\": \"17M\", \"mem_backend\": \"hugepages\", " BOOT "}",
	    EINVAL, "multiple of 2M");
}
END_TEST

START_TEST(strictness)
{
	bad("[]", EINVAL, "JSON object");
	bad("{\"name\": \"a\", \"colour\": 1, " BOOT "}", EINVAL, "unknown key \"colour\"");
	bad("{\"name\": \"a\", \"start\": true, " BOOT "}", EINVAL, "unknown key \"start\"");
	bad("{" BOOT "}", EINVAL, "\"name\" is required");
	bad("{\"name\": \"\", " BOOT "}", EINVAL, "[A-Za-z0-9_.-]");
	bad("{\"name\": \"a/b\", " BOOT "}", EINVAL, "[A-Za-z0-9_.-]");
	bad("{\"name\": \"..\", " BOOT "}", EINVAL, "\"..\"");
	bad("{\"name\": "
	    "\"a1234567890123456789012345678901234567890123456789012345678901234\", " BOOT "}",
	    EINVAL, "64");
	bad("{\"name\": 7, " BOOT "}", EINVAL, "must be a string");
	bad("{\"name\": \"a\"}", EINVAL, "\"boot\" is required");
	bad("{\"name\": \"a\", \"boot\": {}}", EINVAL, "exactly one of");
	bad("{\"name\": \"a\", \"boot\": {\"kernel\": \"/k\", \"firmware\": \"/f\"}}", EINVAL,
	    "exactly one of");
	bad("{\"name\": \"a\", \"boot\": {\"firmware\": \"/f\", \"initrd\": \"/i\"}}", EINVAL,
	    "need \"kernel\"");
	bad("{\"name\": \"a\", \"boot\": {\"kernel\": \"/k\", \"bogus\": 1}}", EINVAL,
	    "boot: unknown key \"bogus\"");
	bad("{\"name\": \"a\", \"on_reboot\": \"explode\", " BOOT "}", EINVAL,
	    "must be one of: reset, shutdown");
	bad("{\"name\": \"a\", \"acpi\": 1, " BOOT "}", EINVAL, "true or false");
	bad("{\"name\": \"a\", \"mem_thp\": \"on\", " BOOT "}", EINVAL,
	    "\"mem_thp\" must be true or false");
	bad("{\"name\": \"a\", \"cpu\": \"pentium\", " BOOT "}", EINVAL, "unknown CPU model");
	bad("{\"name\": \"a\", \"cpu\": \"host,-warp\", " BOOT "}", EINVAL,
	    "unknown CPU feature \"warp\"");
	bad("{\"name\": \"a\", \"cpu\": \"host,cx16\", " BOOT "}", EINVAL, "+name or -name");
	bad("{\"name\": \"a\", \"serial\": {\"log\": \"/x\", \"socket\": 1}, " BOOT "}", EINVAL,
	    "serial: unknown key");
}
END_TEST

START_TEST(usb_devices)
{
	struct vm_config *c, *copy = NULL;
	struct error *err = NULL;

	c = ok("{\"name\": \"a\", \"disks\": [{\"id\": \"u\", \"file\": \"/x\", \"driver\": "
	       "\"usb-storage\", \"removable\": true}], \"input\": [{\"id\": \"k\", \"driver\": "
	       "\"usb-kbd\"}, {\"id\": \"t\", \"driver\": \"usb-tablet\"}], " BOOT "}");
	ck_assert_str_eq(c->disks[0].driver, "usb-storage");
	ck_assert(c->disks[0].removable);
	ck_assert_uint_eq(c->n_inputs, 2);
	ck_assert_str_eq(c->inputs[1].driver, "usb-tablet");
	/* the canonical form keeps them */
	ck_assert_int_eq(vm_config_copy(c, &copy, &err), 0);
	ck_assert_uint_eq(copy->n_inputs, 2);
	ck_assert_str_eq(copy->inputs[0].id, "k");
	ck_assert(copy->disks[0].removable);
	vm_config_free(copy);
	vm_config_free(c);
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"removable\": "
	    "true}], " BOOT "}",
	    EINVAL, "\"removable\" applies to \"usb-storage\" only");
	bad("{\"name\": \"a\", \"input\": [{\"id\": \"k\", \"driver\": \"usb-mouse\"}], " BOOT "}",
	    EINVAL, "usb-kbd, usb-tablet");
	bad("{\"name\": \"a\", \"input\": [{\"id\": \"k\"}], " BOOT "}", EINVAL,
	    "input[0]: \"id\" and \"driver\" are required");
	bad("{\"name\": \"a\", \"input\": {}, " BOOT "}", EINVAL, "\"input\" must be an array");
	bad("{\"name\": \"a\", \"input\": [{\"id\": \"k\", \"driver\": \"usb-kbd\", \"bus\": "
	    "1}], " BOOT "}",
	    EINVAL, "input[0]: unknown key \"bus\"");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"k\", \"file\": \"/x\"}], \"input\": "
	    "[{\"id\": \"k\", \"driver\": \"usb-kbd\"}], " BOOT "}",
	    EEXIST, "\"k\" is used twice");
	bad("{\"name\": \"a\", \"input\": [{\"id\": \"a\", \"driver\": \"usb-kbd\"}, {\"id\": "
	    "\"b\", "
	    "\"driver\": \"usb-kbd\"}, {\"id\": \"c\", \"driver\": \"usb-kbd\"}, {\"id\": \"d\", "
	    "\"driver\": \"usb-kbd\"}, {\"id\": \"e\", \"driver\": \"usb-kbd\"}], " BOOT "}",
	    E2BIG, "at most 4");
}
END_TEST

START_TEST(disks_and_nics)
{
	bad("{\"name\": \"a\", \"disks\": {}, " BOOT "}", EINVAL, "must be an array");
	bad("{\"name\": \"a\", \"disks\": [{\"file\": \"/x\"}], " BOOT "}", EINVAL,
	    "disks[0]: \"id\" is required");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\"}], " BOOT "}", EINVAL,
	    "one of \"file\" or \"node\"");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"node\": "
	    "\"n\"}], " BOOT "}",
	    EINVAL, "exclude");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"format\": "
	    "\"vdi\"}], " BOOT "}",
	    EINVAL, "raw, qcow2");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"serial\": "
	    "\"123456789012345678901\"}], " BOOT "}",
	    EINVAL, "longer than 20");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"queues\": "
	    "65}], " BOOT "}",
	    ERANGE, "queues");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"speed\": 1}], " BOOT
	    "}",
	    EINVAL, "disks[0]: unknown key \"speed\"");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"x\", \"file\": \"/x\"}], \"nics\": [{\"id\": "
	    "\"x\"}], " BOOT "}",
	    EEXIST, "\"x\" is used twice");
	/* aio: QEMU's engines; native only with O_DIRECT, and only for a file */
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"aio\": "
	    "\"native\"}], " BOOT "}",
	    EINVAL, "disks[0]: \"aio\": \"native\" needs \"cache\": \"none\"");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": \"/x\", \"aio\": "
	    "\"posix\"}], " BOOT "}",
	    EINVAL, "io_uring, native, threads");
	bad("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"node\": \"n\", \"aio\": "
	    "\"threads\"}], " BOOT "}",
	    EINVAL, "\"aio\" applies to \"file\", not \"node\"");
	{
		struct vm_config *c = ok("{\"name\": \"a\", \"disks\": [{\"id\": \"d\", \"file\": "
					 "\"/x\", \"aio\": \"native\", \"cache\": \"none\"}, "
					 "{\"id\": \"e\", \"file\": \"/y\", \"aio\": \"threads\"}, "
					 "{\"id\": \"f\", \"file\": \"/z\"}], " BOOT "}");
		json_t *j = vm_config_to_json(c);

		ck_assert_uint_eq(vm_disk_block_flags(&c->disks[0]),
				  BLOCK_O_NOCACHE | BLOCK_O_AIO_NATIVE);
		ck_assert_uint_eq(vm_disk_block_flags(&c->disks[1]), BLOCK_O_AIO_THREADS);
		ck_assert_uint_eq(vm_disk_block_flags(&c->disks[2]), 0);
		/* kept in the canonical form; absent when not given */
		ck_assert_str_eq(json_string_value(json_object_get(
					 json_array_get(json_object_get(j, "disks"), 0), "aio")),
				 "native");
		ck_assert_ptr_null(
			json_object_get(json_array_get(json_object_get(j, "disks"), 2), "aio"));
		json_decref(j);
		vm_config_free(c);
	}
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"mac\": \"53:54:00:12:34:56\"}], " BOOT
	    "}",
	    EINVAL, "unicast");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"mac\": \"52:54:00:12:34\"}], " BOOT "}",
	    EINVAL, "\"mac\"");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"backend\": \"tap\"}], " BOOT "}",
	    EINVAL, "exactly one of \"ifname\" or \"fd\"");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"ifname\": \"tap0\"}], " BOOT "}",
	    EINVAL, "need backend \"tap\"");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"hostfwd\": [\"tcp::22\"]}], " BOOT "}",
	    EINVAL, "hostfwd");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"hostfwd\": [\"tcp::0-:22\"]}], " BOOT
	    "}",
	    EINVAL, "hostfwd");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"hostfwd\": [5]}], " BOOT "}", EINVAL,
	    "hostfwd");
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"backend\": \"tap\", \"fd\": \"f\", "
	    "\"hostfwd\": [\"tcp::1-:2\"]}], " BOOT "}",
	    EINVAL, "needs backend \"user\"");
	{
		struct vm_config *c =
			ok("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"hostfwd\": "
			   "[\"udp:127.0.0.1:5353-10.0.2.15:53\"]}], " BOOT "}");

		ck_assert_str_eq(c->nics[0].backend, "user");
		vm_config_free(c);
	}
}
END_TEST

START_TEST(list_copy_out_of_memory)
{
	/* a copy that fails fails the definition: the list used to end there */
	strdup_fail_on = "tcp::8080-:80";
	bad("{\"name\": \"a\", \"nics\": [{\"id\": \"n\", \"hostfwd\": "
	    "[\"tcp::2222-:22\", \"tcp::8080-:80\", \"tcp::4433-:443\"]}], " BOOT "}",
	    ENOMEM, "out of memory");
	strdup_fail_on = "network";
	bad("{\"name\": \"a\", \"boot\": {\"firmware\": \"/f\", \"order\": [\"disk\", "
	    "\"network\"]}}",
	    ENOMEM, "out of memory");
	strdup_fail_on = NULL;
}
END_TEST

START_TEST(too_many)
{
	char buf[8192];
	size_t n = 0;

	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"name\": \"a\", " BOOT ", \"disks\": [");
	for (int i = 0; i < 33; i++) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      "%s{\"id\": \"d%d\", \"file\": \"/x\"}", i ? "," : "", i);
	}
	snprintf(buf + n, sizeof(buf) - n, "]}");
	bad(buf, E2BIG, "at most 32");
}
END_TEST

START_TEST(state_names)
{
	ck_assert_str_eq(vm_run_state_name(VM_STATE_PRELAUNCH), "prelaunch");
	ck_assert_str_eq(vm_run_state_name(VM_STATE_INTERNAL_ERROR), "internal-error");
	ck_assert_str_eq(vm_run_state_name(VM_STATE_GUEST_PANICKED), "guest-panicked");
	ck_assert_str_eq(vm_run_state_name(VM_STATE_IO_ERROR), "io-error");
	ck_assert_str_eq(vm_run_state_name((enum vm_run_state)99), "unknown");
}
END_TEST

/*
 * A memory device's default memdev, ID-mem, is written into the canonical
 * form the daemon stores; it must parse again, so an ID too long for it is
 * refused at once (it was accepted, and the VM skipped at the next start).
 */
START_TEST(memdev_default_must_parse_again)
{
#define ID59 "m2345678901234567890123456789012345678901234567890123456789"
#define MEMDEV(id) \
	"\"maxmem\": \"1G\", \"memory_devices\": [{\"id\": \"" id "\", \"size\": \"256M\"}]"
	struct vm_config *c = ok("{\"name\": \"v\", " BOOT ", " MEMDEV(ID59) "}");
	struct vm_config *again = NULL;
	struct error *err = NULL;
	json_t *canon = vm_config_to_json(c);

	ck_assert_str_eq(c->memdevs[0].memdev, ID59 "-mem");
	ck_assert_int_eq(vm_config_from_json(canon, false, &again, &err), 0);
	ck_assert_str_eq(again->memdevs[0].memdev, ID59 "-mem");
	json_decref(canon);
	vm_config_free(again);
	vm_config_free(c);
	bad("{\"name\": \"v\", " BOOT ", " MEMDEV(ID59 "0") "}", EINVAL,
	    "memory_devices[0]: \"memdev\" is required with an \"id\" over 59 characters");
	c = ok("{\"name\": \"v\", " BOOT
	       ", \"maxmem\": \"1G\", \"memory_devices\": [{\"id\": \"" ID59
	       "0\", \"memdev\": \"m0\", \"size\": \"256M\"}]}");
	vm_config_free(c);
#undef MEMDEV
#undef ID59
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("vmconfig");
	TCase *tc = tcase_create("vmconfig");

	tcase_add_test(tc, defaults);
	tcase_add_test(tc, full_example);
	tcase_add_test(tc, sizes_and_ranges);
	tcase_add_test(tc, strictness);
	tcase_add_test(tc, disks_and_nics);
	tcase_add_test(tc, usb_devices);
	tcase_add_test(tc, list_copy_out_of_memory);
	tcase_add_test(tc, too_many);
	tcase_add_test(tc, state_names);
	tcase_add_test(tc, memdev_default_must_parse_again);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
