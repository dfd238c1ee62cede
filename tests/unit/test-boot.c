#include "config.h"
#include <check.h>
static Suite *make_suite(void)
{
	return suite_create("x");
}
#include "check-main.h"
