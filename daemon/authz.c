/*
 * Authorization objects (daemon/authz.h): QEMU's authz-simple and
 * authz-list, with QEMU 7.2's arguments, defaults and errors
 * (tests/functional/golden/migration-psk.json).
 */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/list.h"
#include "daemon/authz.h"

struct authz_rule {
	char *match;
	bool allow, glob;
};

struct authz {
	struct list_head link;
	char *id;
	bool list;	/* authz-list; else authz-simple */
	char *identity; /* authz-simple */
	bool allow;	/* authz-list: the policy when no rule matches */
	unsigned n_rules;
	struct authz_rule *rules;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head objects = LIST_HEAD_INIT(objects);
static unsigned n_objects;

/* Under the lock. */
static struct authz *find(const char *id)
{
	struct list_head *p;

	list_for_each (p, &objects) {
		struct authz *a = list_entry(p, struct authz, link);

		if (strcmp(a->id, id) == 0) {
			return a;
		}
	}
	return NULL;
}

static void authz_free(struct authz *a)
{
	if (!a) {
		return;
	}
	for (unsigned i = 0; i < a->n_rules; i++) {
		free(a->rules[i].match);
	}
	free(a->rules);
	free(a->identity);
	free(a->id);
	free(a);
}

bool authz_is_type(const char *type)
{
	return strcmp(type, "authz-simple") == 0 || strcmp(type, "authz-list") == 0;
}

bool authz_exists(const char *id)
{
	bool found;

	pthread_mutex_lock(&lock);
	found = find(id) != NULL;
	pthread_mutex_unlock(&lock);
	return found;
}

/* QEMU's QAuthZListPolicy: *@ret_allow, or an error naming @what. */
static int parse_policy(const char *s, bool *ret_allow, struct error **errp)
{
	if (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0) {
		return error_set(errp, EINVAL, "Parameter 'policy' does not accept value '%s'", s);
	}
	*ret_allow = strcmp(s, "allow") == 0;
	return 0;
}

static int check_length(const char *name, const char *s, struct error **errp)
{
	if (strlen(s) > AUTHZ_MAX_STRING) {
		return error_set(errp, EINVAL, "Parameter '%s' is longer than %u bytes", name,
				 AUTHZ_MAX_STRING);
	}
	return 0;
}

/*
 * The members of @args that this qom-type takes (the schema has checked
 * their JSON types and the rules' shape): QEMU's errors for the others.
 */
static int check_keys(json_t *args, bool list, struct error **errp)
{
	const char *key;
	json_t *v;

	json_object_foreach (args, key, v) {
		bool ok = strcmp(key, "qom-type") == 0 || strcmp(key, "id") == 0 ||
			  (!list && strcmp(key, "identity") == 0) ||
			  (list && (strcmp(key, "policy") == 0 || strcmp(key, "rules") == 0));

		if (!ok) {
			return error_set(errp, EINVAL, "Parameter '%s' is unexpected", key);
		}
	}
	if (!list && !json_object_get(args, "identity")) {
		return error_set(errp, EINVAL, "Parameter 'identity' is missing");
	}
	return 0;
}

static int parse_rules(struct authz *a, json_t *rules, struct error **errp)
{
	json_t *rule;
	size_t i;
	int r;

	if (json_array_size(rules) > AUTHZ_MAX_RULES) {
		return error_set(errp, E2BIG, "Parameter 'rules' has more than %u rules",
				 AUTHZ_MAX_RULES);
	}
	a->rules = calloc(json_array_size(rules) + 1, sizeof(*a->rules));
	if (!a->rules) {
		return error_set(errp, ENOMEM, "out of memory");
	}
	json_array_foreach (rules, i, rule) {
		const char *match = json_string_value(json_object_get(rule, "match"));
		const char *fmt = json_string_value(json_object_get(rule, "format"));
		struct authz_rule *ar = &a->rules[a->n_rules];

		r = parse_policy(json_string_value(json_object_get(rule, "policy")), &ar->allow,
				 errp);
		if (r < 0) {
			return r;
		}
		/* QEMU's QAuthZListFormat, exact by default. */
		if (fmt && strcmp(fmt, "exact") != 0 && strcmp(fmt, "glob") != 0) {
			return error_set(errp, EINVAL,
					 "Parameter 'format' does not accept value '%s'", fmt);
		}
		ar->glob = fmt && strcmp(fmt, "glob") == 0;
		r = check_length("match", match, errp);
		if (r < 0) {
			return r;
		}
		ar->match = strdup(match);
		if (!ar->match) {
			return error_set(errp, ENOMEM, "out of memory");
		}
		a->n_rules++;
	}
	return 0;
}

int authz_object_add(json_t *args, bool (*id_taken)(const char *id), struct error **errp)
{
	const char *type = json_string_value(json_object_get(args, "qom-type"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *identity = json_string_value(json_object_get(args, "identity"));
	const char *policy = json_string_value(json_object_get(args, "policy"));
	bool list = strcmp(type, "authz-list") == 0;
	struct authz *a;
	int r;

	r = check_keys(args, list, errp);
	if (r < 0) {
		return r;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->id = strdup(id))) {
		authz_free(a);
		return error_set(errp, ENOMEM, "out of memory");
	}
	a->list = list;
	/* QEMU's authz-list denies what no rule matches unless told otherwise. */
	r = policy ? parse_policy(policy, &a->allow, errp) : 0;
	if (r == 0 && list) {
		r = parse_rules(a, json_object_get(args, "rules"), errp);
	}
	if (r == 0 && !list) {
		r = check_length("identity", identity, errp);
		if (r == 0 && !(a->identity = strdup(identity))) {
			r = error_set(errp, ENOMEM, "out of memory");
		}
	}
	if (r < 0) {
		authz_free(a);
		return r;
	}
	pthread_mutex_lock(&lock);
	if (find(id) || id_taken(id)) {
		r = error_set(errp, EEXIST,
			      "attempt to add duplicate property '%s' to object (type "
			      "'container')",
			      id);
	} else if (n_objects >= AUTHZ_MAX_OBJECTS) {
		r = error_set(errp, ENOSPC, "at most %u authorization objects", AUTHZ_MAX_OBJECTS);
	} else {
		list_add_tail(&a->link, &objects);
		n_objects++;
		a = NULL;
	}
	pthread_mutex_unlock(&lock);
	authz_free(a);
	return r;
}

int authz_object_del(const char *id)
{
	struct authz *a;
	bool found;

	pthread_mutex_lock(&lock);
	a = find(id);
	found = a != NULL;
	if (found) {
		list_del(&a->link);
		n_objects--;
	}
	pthread_mutex_unlock(&lock);
	/* As QEMU: a migration names the object by id and looks it up when it asks. */
	authz_free(a);
	return found ? 0 : -ENOENT;
}

static bool allowed(const struct authz *a, const char *identity)
{
	if (!a->list) {
		return strcmp(a->identity, identity) == 0;
	}
	for (unsigned i = 0; i < a->n_rules; i++) {
		const struct authz_rule *r = &a->rules[i];

		if (r->glob ? fnmatch(r->match, identity, 0) == 0
			    : strcmp(r->match, identity) == 0) {
			return r->allow;
		}
	}
	return a->allow;
}

int authz_is_allowed(const char *id, const char *identity, struct error **errp)
{
	struct authz *a;
	int r;

	pthread_mutex_lock(&lock);
	a = find(id);
	r = a ? allowed(a, identity) : 0;
	pthread_mutex_unlock(&lock);
	if (!a) {
		return error_set(errp, ENOENT, "Cannot find QAuthZ object ID %s", id);
	}
	return r;
}
