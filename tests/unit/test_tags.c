/*
 * tests/unit/test_tags.c — gossip/tags.h: serf's tags in node meta, both
 * forms (the 0xff map and the bare role of serf < 0.8), and empty meta,
 * which a member with no tags has (meta NULL, length 0: it reads as an
 * empty role, and must not reach memchr or memcpy, which UBSan caught when
 * the catalog began reading every member's tags).
 */
#include <stdlib.h>
#include <string.h>

#include "gossip/tags.h"
#include "tests/unit/check.h"

static void test_empty_meta_reads_as_empty_role(void)
{
	struct tag t[TAGS_MAX];
	REQUIRE_INT(1, tags_decode(NULL, 0, t, TAGS_MAX), "NULL meta of length 0");
	CHECK_STR("role", t[0].key);
	CHECK_STR("", t[0].value);
	uint8_t none[1] = {0};
	REQUIRE_INT(1, tags_decode(none, 0, t, TAGS_MAX), "meta of length 0");
	CHECK_STR("", t[0].value);
}

static void test_bare_role_and_map_round_trip(void)
{
	struct tag t[TAGS_MAX], back[TAGS_MAX];
	REQUIRE_INT(1, tags_decode((const uint8_t *)"web", 3, t, TAGS_MAX), "a bare role");
	CHECK_STR("role", t[0].key);
	CHECK_STR("web", t[0].value);
	CHECK(tags_decode((const uint8_t *)"a\0b", 3, t, TAGS_MAX) < 0, "a NUL in a bare role");
	size_t n = tags_consul(t, "dc1", "0.1.0:rumor", "id-1", "8300");
	uint8_t buf[512];
	int len = tags_encode(buf, sizeof(buf), t, n);
	REQUIRE(len > 0, "encodes");
	REQUIRE_INT((int)n, tags_decode(buf, (size_t)len, back, TAGS_MAX), "decodes");
	for (size_t i = 0; i < n; i++) {
		CHECK_STR(t[i].key, back[i].key);
		CHECK_STR(t[i].value, back[i].value);
	}
	CHECK(tags_decode(buf, (size_t)len, back, 2) < 0, "more tags than room: an error");
}

int main(void)
{
	RUN(test_empty_meta_reads_as_empty_role);
	RUN(test_bare_role_and_map_round_trip);
	return check_exit_code();
}
