/*
 * gossip/tags.c — see tags.h. Reads and writes through lib/mp.h, the same
 * MessagePack layer as memberlist's and serf's messages; the encoder fills
 * the caller's fixed buffer, the decoder copies into the caller's array.
 */
#include "gossip/tags.h"

#include <stdio.h>
#include <string.h>

#include "lib/mp.h"

size_t tags_consul(struct tag *tags, const char *dc, const char *build, const char *id,
                   const char *rpc_port)
{
	const char *fixed[TAGS_CONSUL_MAX][2] = {
	        {"role", "node"}, {"dc", dc},       {"build", build}, {"vsn", "2"},
	        {"vsn_min", "2"}, {"vsn_max", "3"}, {"id", id},       {"rpc_port", rpc_port},
	};
	size_t n = 0;
	for (size_t i = 0; i < TAGS_CONSUL_MAX; i++) {
		if (fixed[i][1] == NULL)
			continue;
		snprintf(tags[n].key, sizeof(tags[n].key), "%s", fixed[i][0]);
		snprintf(tags[n].value, sizeof(tags[n].value), "%s", fixed[i][1]);
		n++;
	}
	return n;
}

int tags_encode(uint8_t *buf, size_t cap, const struct tag *tags, size_t n)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, TAGS_MAGIC);
	mp_write_map(&w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		mp_write_str(&w, tags[i].key);
		mp_write_str(&w, tags[i].value);
	}
	return wcursor_done(&w);
}

/* A tag key or value: str or bin (serf writes raw), not nil, shorter than
 * cap, no NUL (tags are C strings from here on). */
static int tag_str(struct cursor *c, char *dst, size_t cap)
{
	if (mp_read_nil(c) == MP_OK)
		return MP_BAD;
	return mp_read_str(c, dst, cap);
}

/*
 * Serf < 0.8 (protocol < 3) put a bare role in meta; later ones the magic
 * byte and a map. Bytes after the map are ignored, as serf's decoder does.
 * Never reads more tags than max: a longer map is an error, not a cut.
 */
int tags_decode(const uint8_t *meta, size_t len, struct tag *tags, size_t max)
{
	if (len == 0 || meta[0] != TAGS_MAGIC) {
		/* len 0: meta may be NULL, which memchr and memcpy must not see */
		if (max == 0 || len > TAG_VALUE_MAX ||
		    (len > 0 && memchr(meta, '\0', len) != NULL)) {
			mp_fail("tags: role: too long or has NUL");
			return MP_BAD;
		}
		strcpy(tags[0].key, "role");
		if (len > 0)
			memcpy(tags[0].value, meta, len);
		tags[0].value[len] = '\0';
		return 1;
	}
	struct cursor c = {meta + 1, meta + len};
	uint32_t n;
	if (mp_read_map(&c, &n) != MP_OK) {
		mp_fail("tags: not a map");
		return MP_BAD;
	}
	if (n > max) {
		mp_fail("tags: %u tags, room for %zu", n, max);
		return MP_BAD;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (tag_str(&c, tags[i].key, sizeof(tags[i].key)) != MP_OK ||
		    tag_str(&c, tags[i].value, sizeof(tags[i].value)) != MP_OK) {
			mp_fail("tags: tag %u: not a string, too long or has NUL", i);
			return MP_BAD;
		}
	}
	return (int)n;
}

/* A decimal port, 1..65535, and nothing else. */
static bool is_port(const char *v)
{
	long p = 0;
	if (*v == '\0' || strlen(v) > 5)
		return false;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return false;
		p = p * 10 + (*v - '0');
	}
	return p > 0 && p < 65536;
}

/* One pass over the map: two C strings on the stack, no tag array (this
 * runs once per identity a member takes, in the agent and the simulator).
 * Whether the build tag is rumor's and whether rpc_port is a port; false
 * when meta is not a tag map. */
static bool scan_rumor(const uint8_t *meta, size_t len, bool *build, bool *port)
{
	static const char suffix[] = ":rumor";
	*build = *port = false;
	if (meta == NULL || len == 0 || meta[0] != TAGS_MAGIC)
		return false;
	struct cursor c = {meta + 1, meta + len};
	uint32_t n;
	if (mp_read_map(&c, &n) != MP_OK)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		char key[TAG_KEY_MAX + 1], value[TAG_VALUE_MAX + 1];
		if (tag_str(&c, key, sizeof(key)) != MP_OK ||
		    tag_str(&c, value, sizeof(value)) != MP_OK)
			return false;
		size_t vl = strlen(value);
		if (strcmp(key, "build") == 0)
			*build = vl >= sizeof(suffix) - 1 &&
			         strcmp(value + vl - (sizeof(suffix) - 1), suffix) == 0;
		else if (strcmp(key, "rpc_port") == 0)
			*port = is_port(value);
	}
	return true;
}

bool tags_is_rumor(const uint8_t *meta, size_t len)
{
	bool build, port;
	return scan_rumor(meta, len, &build, &port) && build && port;
}

bool tags_is_rumor_build(const uint8_t *meta, size_t len)
{
	bool build, port;
	return scan_rumor(meta, len, &build, &port) && build;
}
