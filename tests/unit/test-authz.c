/*
 * Unit tests for daemon/authz.c: QEMU's authz-simple and authz-list
 * verdicts (first matching rule, exact or glob, the list's policy for the
 * rest, deny by default), the id namespace shared with other objects, the
 * bounds, and a lookup of an object that is gone.
 */
#include "config.h"

#include <check.h>
#include <string.h>

#include "daemon/authz.h"

static bool taken(const char *id)
{
	return strcmp(id, "tls0") == 0;
}

static int add(const char *json)
{
	json_error_t jerr;
	json_t *args = json_loads(json, 0, &jerr);
	struct error *err = NULL;
	int r;

	ck_assert_ptr_nonnull(args);
	r = authz_object_add(args, taken, &err);
	error_free(err);
	json_decref(args);
	return r;
}

static int allowed(const char *id, const char *identity)
{
	struct error *err = NULL;
	int r = authz_is_allowed(id, identity, &err);

	if (r < 0) {
		ck_assert_str_eq(err->msg, "Cannot find QAuthZ object ID nosuch");
	}
	error_free(err);
	return r;
}

START_TEST(test_simple)
{
	ck_assert_int_eq(add("{\"qom-type\": \"authz-simple\", \"id\": \"s\", "
			     "\"identity\": \"CN=a\"}"),
			 0);
	ck_assert_int_eq(allowed("s", "CN=a"), 1);
	ck_assert_int_eq(allowed("s", "CN=ab"), 0);
	ck_assert_int_eq(allowed("s", "CN=*"), 0);
	ck_assert_int_eq(allowed("nosuch", "CN=a"), -ENOENT);
	ck_assert_int_eq(authz_object_del("s"), 0);
	ck_assert_int_eq(authz_object_del("s"), -ENOENT);
	ck_assert_int_eq(allowed("nosuch", "CN=a"), -ENOENT);
}
END_TEST

START_TEST(test_list)
{
	ck_assert_int_eq(add("{\"qom-type\": \"authz-list\", \"id\": \"l\", \"rules\": ["
			     "{\"match\": \"CN=bad*\", \"policy\": \"deny\", \"format\": "
			     "\"glob\"},"
			     "{\"match\": \"CN=b*\", \"policy\": \"allow\", \"format\": \"glob\"},"
			     "{\"match\": \"CN=c*\", \"policy\": \"allow\"}]}"),
			 0);
	ck_assert_int_eq(allowed("l", "CN=bob"), 1);
	ck_assert_int_eq(allowed("l", "CN=badger"), 0); /* the first match decides */
	ck_assert_int_eq(allowed("l", "CN=c*"), 1);	/* exact: the star is a star */
	ck_assert_int_eq(allowed("l", "CN=carol"), 0);
	ck_assert_int_eq(allowed("l", "CN=dave"), 0); /* QEMU's default policy: deny */
	ck_assert_int_eq(add("{\"qom-type\": \"authz-list\", \"id\": \"open\", \"policy\": "
			     "\"allow\", \"rules\": [{\"match\": \"mallory\", \"policy\": "
			     "\"deny\"}]}"),
			 0);
	ck_assert_int_eq(allowed("open", "alice"), 1);
	ck_assert_int_eq(allowed("open", "mallory"), 0);
	ck_assert_int_eq(add("{\"qom-type\": \"authz-list\", \"id\": \"empty\"}"), 0);
	ck_assert_int_eq(allowed("empty", "alice"), 0);
	ck_assert_int_eq(authz_object_del("l"), 0);
	ck_assert_int_eq(authz_object_del("open"), 0);
	ck_assert_int_eq(authz_object_del("empty"), 0);
}
END_TEST

START_TEST(test_ids_and_bounds)
{
	char json[4096], big[AUTHZ_MAX_STRING + 2];

	ck_assert_int_eq(add("{\"qom-type\": \"authz-simple\", \"id\": \"tls0\", "
			     "\"identity\": \"x\"}"),
			 -EEXIST);
	ck_assert_int_eq(add("{\"qom-type\": \"authz-simple\", \"id\": \"a\", "
			     "\"identity\": \"x\"}"),
			 0);
	ck_assert_int_eq(add("{\"qom-type\": \"authz-list\", \"id\": \"a\"}"), -EEXIST);
	ck_assert_int_eq(add("{\"qom-type\": \"authz-list\", \"id\": \"b\", \"policy\": "
			     "\"maybe\"}"),
			 -EINVAL);
	ck_assert_int_eq(add("{\"qom-type\": \"authz-simple\", \"id\": \"c\"}"), -EINVAL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(json, sizeof(json),
		 "{\"qom-type\": \"authz-simple\", \"id\": \"d\", \"identity\": \"%s\"}", big);
	ck_assert_int_eq(add(json), -EINVAL);
	big[sizeof(big) - 2] = '\0';
	snprintf(json, sizeof(json),
		 "{\"qom-type\": \"authz-simple\", \"id\": \"d\", \"identity\": \"%s\"}", big);
	ck_assert_int_eq(add(json), 0);
	ck_assert_int_eq(allowed("d", big), 1);
	ck_assert_int_eq(authz_object_del("a"), 0);
	ck_assert_int_eq(authz_object_del("d"), 0);
	for (unsigned i = 0; i < AUTHZ_MAX_OBJECTS; i++) {
		snprintf(json, sizeof(json),
			 "{\"qom-type\": \"authz-simple\", \"id\": \"o%u\", \"identity\": "
			 "\"x\"}",
			 i);
		ck_assert_int_eq(add(json), 0);
	}
	ck_assert_int_eq(add("{\"qom-type\": \"authz-simple\", \"id\": \"one-more\", "
			     "\"identity\": \"x\"}"),
			 -ENOSPC);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("authz");
	TCase *tc = tcase_create("authz");

	tcase_add_test(tc, test_simple);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_ids_and_bounds);
	suite_add_tcase(s, tc);
	return s;
}

#include "check-main.h"
