/*
 * agent/server_rpc_wire.c — see server_rpc_wire.h. Every read goes through
 * lib/cursor.h, so no byte is looked at before it is known to be there.
 * The strings a HELLO carries end up in log lines and in Raft's peer
 * addresses, so no control byte and no space is taken (UTF-8 is).
 */
#include "agent/server_rpc_wire.h"

#include "agent/server_rpc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/cursor.h"

long server_rpc_frame_next(const uint8_t *p, size_t len, size_t max, uint8_t *type,
                           const uint8_t **payload, size_t *plen, char *err, size_t errlen)
{
	if (len < 4)
		return 0;
	uint32_t n = be32_get(p);
	if (n == 0 || n > max) {
		snprintf(err, errlen, "server rpc frame: bad length %u (1 to %zu)", n, max);
		return -1;
	}
	if (len - 4 < n)
		return 0;
	*type = p[4];
	*payload = p + 5;
	*plen = n - 1;
	return (long)n + 4;
}

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
			return false;
	return true;
}

/* One u8-length string; false with err naming the field. */
static bool get_str(struct cursor *c, const char *field, const char **s, size_t *n, char *err,
                    size_t errlen)
{
	uint8_t len;
	if (!cursor_u8(c, &len)) {
		snprintf(err, errlen, "hello: %s length: truncated", field);
		return false;
	}
	if (!cursor_has(c, len)) {
		snprintf(err, errlen, "hello: %s: %u bytes announced, %zu left", field, len,
		         cursor_avail(c));
		return false;
	}
	*s = (const char *)c->p;
	*n = len;
	c->p += len;
	if (!printable(*s, *n)) {
		snprintf(err, errlen, "hello: %s: a control byte or a space", field);
		return false;
	}
	return true;
}

int server_rpc_decode_hello(const uint8_t *p, size_t n, struct server_rpc_hello *h, char *err,
                            size_t errlen)
{
	struct cursor c = {p, p + n};
	memset(h, 0, sizeof(*h));
	if (!cursor_be64(&c, &h->server_id)) {
		snprintf(err, errlen, "hello: server_id: truncated (%zu bytes)", n);
		return -1;
	}
	if (!get_str(&c, "addr", &h->addr, &h->addr_len, err, errlen) ||
	    !get_str(&c, "node", &h->node, &h->node_len, err, errlen))
		return -1;
	if (cursor_avail(&c) != 0) {
		snprintf(err, errlen, "hello: %zu bytes after the node name", cursor_avail(&c));
		return -1;
	}
	if ((h->server_id != 0) != (h->addr_len != 0)) {
		snprintf(err, errlen, "hello: server_id %s but addr %s",
		         h->server_id != 0 ? "set" : "0 (a client)",
		         h->addr_len != 0 ? "given" : "empty");
		return -1;
	}
	if (h->node_len == 0) {
		snprintf(err, errlen, "hello: node: empty");
		return -1;
	}
	return 0;
}

size_t server_rpc_encode_hello(uint8_t *out, size_t cap, const struct server_rpc_hello *h)
{
	if (h->addr_len > 255 || h->node_len > 255 || h->node_len == 0 ||
	    (h->server_id != 0) != (h->addr_len != 0) || !printable(h->addr, h->addr_len) ||
	    !printable(h->node, h->node_len))
		return 0;
	size_t n = 8 + 1 + h->addr_len + 1 + h->node_len;
	if (cap < n)
		return 0;
	be64_put(out, h->server_id);
	out[8] = (uint8_t)h->addr_len;
	memcpy(out + 9, h->addr, h->addr_len);
	out[9 + h->addr_len] = (uint8_t)h->node_len;
	memcpy(out + 10 + h->addr_len, h->node, h->node_len);
	return n;
}

int server_rpc_decode_msg(const uint8_t *p, size_t n, const char *what, struct server_rpc_msg *m,
                          char *err, size_t errlen)
{
	struct cursor c = {p, p + n};
	memset(m, 0, sizeof(*m));
	if (!cursor_be64(&c, &m->req_id)) {
		snprintf(err, errlen, "%s: req_id: truncated (%zu bytes)", what, n);
		return -1;
	}
	if (!cursor_u8(&c, &m->code)) {
		snprintf(err, errlen, "%s: %s: truncated", what,
		         strcmp(what, "reply") == 0 ? "status" : "method");
		return -1;
	}
	m->body = c.p;
	m->body_len = cursor_avail(&c);
	return 0;
}

int server_rpc_decode_part(const uint8_t *p, size_t n, uint32_t *total, const uint8_t **piece,
                           size_t *piece_len, char *err, size_t errlen)
{
	struct cursor c = {p, p + n};
	if (!cursor_be32(&c, total)) {
		snprintf(err, errlen, "part: total: truncated (%zu bytes)", n);
		return -1;
	}
	if (*total <= SERVER_RPC_PART_SIZE || *total > SERVER_RPC_MESSAGE_MAX) {
		snprintf(err, errlen, "part: total %u out of range (%u..%u)", *total,
		         SERVER_RPC_PART_SIZE + 1, SERVER_RPC_MESSAGE_MAX);
		return -1;
	}
	*piece = c.p;
	*piece_len = cursor_avail(&c);
	if (*piece_len == 0 || *piece_len > *total) {
		snprintf(err, errlen, "part: a piece of %zu bytes for a %u-byte message",
		         *piece_len, *total);
		return -1;
	}
	return 0;
}

void server_rpc_encode_msg_head(uint8_t out[SERVER_RPC_MSG_HEAD], uint64_t req_id, uint8_t code)
{
	be64_put(out, req_id);
	out[8] = code;
}
