/* gossip/tags.c — see tags.h. */
#include "gossip/tags.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

struct fixed_buf {
	uint8_t *p;
	size_t len, cap;
	int overflow;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
	struct fixed_buf *fb = data;
	if (fb->len + len > fb->cap) {
		fb->overflow = 1;
		return -1;
	}
	memcpy(fb->p + fb->len, buf, len);
	fb->len += len;
	return 0;
}

static void pack_raw(msgpack_packer *pk, const char *s)
{
	size_t l = strlen(s);
	msgpack_pack_v4raw(pk, l);
	msgpack_pack_v4raw_body(pk, s, l);
}

size_t tags_consul(struct tag *tags, const char *dc, const char *build, const char *id,
		   const char *rpc_port)
{
	const char *fixed[TAGS_CONSUL_MAX][2] = {
		{"role", "node"}, {"dc", dc},	     {"build", build}, {"vsn", "2"},
		{"vsn_min", "2"}, {"vsn_max", "3"}, {"id", id},	      {"rpc_port", rpc_port},
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
	if (cap < 1)
		return -1;
	buf[0] = TAGS_MAGIC;
	struct fixed_buf fb = {buf, 1, cap, 0};
	msgpack_packer pk;
	msgpack_packer_init(&pk, &fb, fixed_write);
	msgpack_pack_map(&pk, n);
	for (size_t i = 0; i < n; i++) {
		pack_raw(&pk, tags[i].key);
		pack_raw(&pk, tags[i].value);
	}
	return fb.overflow ? -1 : (int)fb.len;
}

static int copy_str(const msgpack_object *o, char *dst, size_t cap)
{
	const char *p;
	size_t l;
	if (o->type == MSGPACK_OBJECT_STR) {
		p = o->via.str.ptr;
		l = o->via.str.size;
	} else if (o->type == MSGPACK_OBJECT_BIN) {
		p = o->via.bin.ptr;
		l = o->via.bin.size;
	} else {
		return -1;
	}
	if (l >= cap || memchr(p, '\0', l) != NULL)
		return -1;
	memcpy(dst, p, l);
	dst[l] = '\0';
	return 0;
}

int tags_decode(const uint8_t *meta, size_t len, struct tag *tags, size_t max)
{
	if (len == 0 || meta[0] != TAGS_MAGIC) {
		if (max == 0 || len > TAG_VALUE_MAX || memchr(meta, '\0', len) != NULL)
			return -1;
		strcpy(tags[0].key, "role");
		memcpy(tags[0].value, meta, len);
		tags[0].value[len] = '\0';
		return 1;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	int n = -1;
	if (msgpack_unpack_next(&u, (const char *)meta + 1, len - 1, &off) ==
		    MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP) {
		const msgpack_object_map *m = &u.data.via.map;
		n = 0;
		for (uint32_t i = 0; i < m->size; i++) {
			if ((size_t)n >= max) {
				n = -1;
				break;
			}
			if (copy_str(&m->ptr[i].key, tags[n].key, sizeof(tags[n].key)) < 0 ||
			    copy_str(&m->ptr[i].val, tags[n].value, sizeof(tags[n].value)) < 0) {
				n = -1;
				break;
			}
			n++;
		}
	}
	msgpack_unpacked_destroy(&u);
	return n;
}
