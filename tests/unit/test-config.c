/* Unit tests for daemon/config.c: defaults, the settings-file format, limits. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/settings.h"

static struct daemon_config cfg;

static void setup(void)
{
	struct error *err = NULL;

	ck_assert_int_eq(config_defaults(&cfg, false, &err), 0);
}

static void teardown(void)
{
	config_release(&cfg);
}

static const char *parse(const char *text)
{
	static char msg[512];
	struct error *err = NULL;

	if (config_parse_text(&cfg, text, "vmmd.conf", &err) == 0) {
		return "ok";
	}
	snprintf(msg, sizeof(msg), "%s", err->msg);
	error_free(err);
	return msg;
}

START_TEST(defaults)
{
	ck_assert_str_eq(cfg.config_path, "/etc/vmmd/vmmd.conf");
	ck_assert_str_eq(cfg.socket_path, "/run/vmmd/vmmd.sock");
	ck_assert_str_eq(cfg.state_dir, "/var/lib/vmmd");
	ck_assert_str_eq(cfg.run_dir, "/run/vmmd");
	ck_assert_uint_eq(cfg.socket_mode, 0660);
	ck_assert_ptr_null(cfg.image_roots);
	ck_assert_uint_eq(cfg.lim.max_clients, MONITOR_DEFAULT_MAX_CLIENTS);
	ck_assert(cfg.keep_vms);
	ck_assert_str_eq(parse("keep-vms-on-restart = off\n"), "ok");
	ck_assert(!cfg.keep_vms);
	ck_assert_uint_eq(cfg.populate_rate, 0);
	ck_assert_str_eq(parse("restore-populate-rate = 64M\n"), "ok");
	ck_assert_uint_eq(cfg.populate_rate, 64ull << 20);
	ck_assert_uint_eq(cfg.job_nice, 10);
	ck_assert_str_eq(parse("job-nice = 0\n"), "ok");
	ck_assert_uint_eq(cfg.job_nice, 0);
	ck_assert_uint_eq(cfg.start_timeout, 60);
	ck_assert_str_eq(parse("start-timeout = 600\n"), "ok");
	ck_assert_uint_eq(cfg.start_timeout, 600);
}
END_TEST

START_TEST(user_session)
{
	struct daemon_config u;
	struct error *err = NULL;

	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	setenv("XDG_STATE_HOME", "/home/u/.state", 1);
	unsetenv("XDG_CONFIG_HOME");
	setenv("HOME", "/home/u", 1);
	ck_assert_int_eq(config_defaults(&u, true, &err), 0);
	ck_assert_str_eq(u.socket_path, "/run/user/1000/vmmd/vmmd.sock");
	ck_assert_str_eq(u.run_dir, "/run/user/1000/vmmd");
	ck_assert_str_eq(u.state_dir, "/home/u/.state/vmmd");
	ck_assert_str_eq(u.config_path, "/home/u/.config/vmmd/vmmd.conf");
	config_release(&u);
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_lt(config_defaults(&u, true, &err), 0);
	ck_assert_str_eq(err->msg, "--user-session needs $XDG_RUNTIME_DIR (an absolute path)");
	error_free(err);
}
END_TEST

START_TEST(full_file)
{
	ck_assert_str_eq(parse("# vmmd settings\n"
			       "\n"
			       "socket = /tmp/x.sock\n"
			       "  socket-group =  kvm  \n"
			       "socket-mode = 0600\n"
			       "state-dir = /srv/state\n"
			       "run-dir = /srv/run\n"
			       "image-roots = /srv/vm /var/lib/vmmd/images\n"
			       "image-roots = /data\n"
			       "max-clients = 10\n"
			       "max-message-size = 64K\n"
			       "max-nesting-depth = 32\n"
			       "output-queue-size = 1M\n"
			       "negotiation-timeout = 0\n"
			       "max-vms = 3\n"
			       "log-level = debug\n"
			       "log-target = journal\n"),
			 "ok");
	ck_assert_str_eq(cfg.socket_path, "/tmp/x.sock");
	ck_assert_str_eq(cfg.socket_group, "kvm");
	ck_assert_uint_eq(cfg.socket_mode, 0600);
	ck_assert_str_eq(cfg.state_dir, "/srv/state");
	ck_assert_str_eq(cfg.run_dir, "/srv/run");
	ck_assert_str_eq(cfg.image_roots[0], "/srv/vm");
	ck_assert_str_eq(cfg.image_roots[1], "/var/lib/vmmd/images");
	ck_assert_str_eq(cfg.image_roots[2], "/data");
	ck_assert_ptr_null(cfg.image_roots[3]);
	ck_assert_uint_eq(cfg.lim.max_clients, 10);
	ck_assert_uint_eq(cfg.lim.max_message, 65536);
	ck_assert_uint_eq(cfg.lim.max_depth, 32);
	ck_assert_uint_eq(cfg.lim.max_output, 1 << 20);
	ck_assert_uint_eq(cfg.lim.negotiation_timeout, 0);
	ck_assert_uint_eq(cfg.max_vms, 3);
	ck_assert_int_eq(cfg.log_level, 7);
	ck_assert_int_eq(cfg.log_target, CONFIG_LOG_JOURNAL);
}
END_TEST

START_TEST(errors_name_the_line)
{
	ck_assert_str_eq(parse("\n\nsockett = /x\n"), "vmmd.conf:3: unknown setting 'sockett'");
	ck_assert_str_eq(parse("socket /x\n"),
			 "vmmd.conf:1: expected 'key = value', got 'socket /x'");
	ck_assert_str_eq(parse("socket = relative\n"),
			 "vmmd.conf:1: socket must be an absolute path, not 'relative'");
	ck_assert_str_eq(parse("max-clients = 0\n"),
			 "vmmd.conf:1: max-clients '0' must be a number between 1 and 100000");
	ck_assert_str_eq(parse("max-clients = -1\n"),
			 "vmmd.conf:1: max-clients '-1' must be a number between 1 and 100000");
	ck_assert_str_eq(parse("max-message-size = 2G\n"),
			 "vmmd.conf:1: max-message-size '2G' must be a size between 1024 and "
			 "1073741824");
	ck_assert_str_eq(parse("socket-mode = 0999\n"),
			 "vmmd.conf:1: socket-mode '0999' must be octal, at most 0777, and allow "
			 "the owner to read and write (e.g. 0660)");
	ck_assert_str_eq(parse("socket-mode = 0060\n"),
			 "vmmd.conf:1: socket-mode '0060' must be octal, at most 0777, and allow "
			 "the owner to read and write (e.g. 0660)");
	ck_assert_str_eq(parse("log-level = loud\n"),
			 "vmmd.conf:1: log-level 'loud' is not one of err, warning, notice, info, "
			 "debug");
	ck_assert_str_eq(parse("image-roots = srv\n"),
			 "vmmd.conf:1: image root 'srv' is not an absolute path");
	ck_assert_str_eq(parse("log-target = syslog\n"),
			 "vmmd.conf:1: log-target 'syslog' is not one of auto, stderr, journal");
	ck_assert_str_eq(parse("keep-vms-on-restart = yes\n"),
			 "vmmd.conf:1: keep-vms-on-restart 'yes' must be on or off");
	ck_assert_str_eq(parse("restore-populate-rate = 2T\n"),
			 "vmmd.conf:1: restore-populate-rate '2T' must be a size between 0 and "
			 "1099511627776");
	ck_assert_str_eq(parse("job-nice = 20\n"),
			 "vmmd.conf:1: job-nice '20' must be a number between 0 and 19");
	ck_assert_str_eq(parse("start-timeout = 0\n"),
			 "vmmd.conf:1: start-timeout '0' must be a number between 1 and 3600");
}
END_TEST

/* Capabilities and resource limits (daemon/privilege.h). */
START_TEST(privilege)
{
	ck_assert_uint_eq(cfg.priv.caps_keep, PRIVILEGE_CAPS_DEFAULT);
	ck_assert_uint_eq(cfg.priv.limit_core, 0);
	ck_assert_uint_eq(cfg.priv.limit_nofile, 0);
	ck_assert_uint_eq(cfg.priv.limit_memlock, PRIVILEGE_LIMIT_KEEP);
	ck_assert_str_eq(parse("capabilities = CAP_NET_ADMIN, chown\nlimit-core = unlimited\n"
			       "limit-nofile = 4096\nlimit-memlock = 64M\n"),
			 "ok");
	ck_assert_uint_eq(cfg.priv.caps_keep, (1u << 12) | 1u);
	ck_assert_uint_eq(cfg.priv.limit_core, PRIVILEGE_LIMIT_INFINITY);
	ck_assert_uint_eq(cfg.priv.limit_nofile, 4096);
	ck_assert_uint_eq(cfg.priv.limit_memlock, 64u << 20);
	ck_assert_str_eq(parse("capabilities = none\n"), "ok");
	ck_assert_uint_eq(cfg.priv.caps_keep, 0);
	ck_assert_str_eq(parse("capabilities = all\n"), "ok");
	ck_assert_uint_eq(cfg.priv.caps_keep, PRIVILEGE_CAPS_ALL);
	ck_assert_str_eq(parse("capabilities = net_admin,sys_godmode\n"),
			 "vmmd.conf:1: capabilities: 'sys_godmode' is not a capability name (or "
			 "all, none)");
	ck_assert_str_eq(parse("limit-nofile = lots\n"),
			 "vmmd.conf:1: limit-nofile: 'lots' is not a number, unlimited or keep");
}
END_TEST

/* The greeting's QEMU version and package (issue 15). */
START_TEST(qmp_version)
{
	ck_assert_uint_eq(cfg.version.major, 7);
	ck_assert_uint_eq(cfg.version.minor, 2);
	ck_assert_uint_eq(cfg.version.micro, 0);
	ck_assert_str_eq(cfg.version.package, "vmmd-" PACKAGE_VERSION);
	ck_assert_str_eq(parse("qmp-version = 7.2.22\nqmp-package = Debian 1:7.2+dfsg-7\n"), "ok");
	ck_assert_uint_eq(cfg.version.micro, 22);
	ck_assert_str_eq(cfg.version.package, "Debian 1:7.2+dfsg-7");
	ck_assert_ptr_nonnull(strstr(parse("qmp-version = 7.2"), "MAJOR.MINOR.MICRO"));
	ck_assert_ptr_nonnull(strstr(parse("qmp-version = 7.2.0x"), "MAJOR.MINOR.MICRO"));
}
END_TEST

START_TEST(load_file_missing)
{
	struct error *err = NULL;

	ck_assert_int_eq(config_set_string(&cfg.config_path, "/nonexistent/vmmd.conf", &err), 0);
	ck_assert_int_eq(config_load_file(&cfg, false, &err), 0);
	ck_assert_int_lt(config_load_file(&cfg, true, &err), 0);
	ck_assert_str_eq(err->msg, "cannot read /nonexistent/vmmd.conf: No such file or directory");
	error_free(err);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, user_session);
	tcase_add_test(tc, full_file);
	tcase_add_test(tc, errors_name_the_line);
	tcase_add_test(tc, load_file_missing);
	tcase_add_test(tc, qmp_version);
	tcase_add_test(tc, privilege);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
