/*
 * gossip/wire.c — memberlist message codec (see wire.h for the contract).
 *
 * Encoding facts, checked against serf 0.8.2's own bytes (tests/fixtures):
 *  - hashicorp/go-msgpack with MsgpackHandle{} writes a struct as a map whose
 *    keys are the field names, in *sorted* (byte-wise) order, not declaration
 *    order: ping is {Node, SeqNo, SourceAddr, SourceNode, SourcePort}.
 *  - strings and []byte (including Vsn, which is []uint8) are written as the
 *    old msgpack "raw": fixraw 0xa0|n for n < 32, raw16 0xda for n < 65536,
 *    raw32 0xdb beyond; never str8 (0xd9) nor bin. A nil slice is 0xc0.
 *  - unsigned and int fields use the smallest form (fixint, 0xcc, 0xcd,
 *    0xce), bools 0xc2/0xc3; omitempty fields that are zero are left out of
 *    the map and the map length counts only the fields written.
 * Each message is described once, as a table of fields (name, kind, offset);
 * one generic encoder and one generic decoder walk the tables. Both go
 * through lib/mp.h (the project's one MessagePack layer) on a fixed buffer:
 * the encoders write with a wcursor that never grows, the decoders read
 * with a bounds-checked cursor and never allocate.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/wire.h"
#include "lib/cursor.h"
#include "lib/mp.h"

const char *ml_wire_error(void)
{
	return mp_error();
}

/* ---- field tables -------------------------------------------------------- */

enum fkind {
	F_U32,     /* uint32_t */
	F_U16,     /* uint16_t */
	F_U8,      /* uint8_t */
	F_BOOL,    /* bool */
	F_STR,     /* char[max + 1], longer is an error */
	F_STR_CUT, /* char[max + 1], longer is cut */
	F_BYTES,   /* uint8_t[max] at off, uint16_t length at off2; empty = nil */
	F_IP,      /* struct ml_addr at off: ip/len; empty = nil */
	F_PORT,    /* struct ml_addr at off: port */
	F_VSN,     /* uint8_t[6] at off, bool at off2 */
	F_VIEW,    /* struct ml_slice at off (decode only; points into input) */
};

struct field {
	const char *name;
	enum fkind kind;
	bool omitempty;
	size_t off;
	size_t off2;
	uint64_t max; /* strings/bytes: longest; ints: largest (0 = type max) */
};

struct msgdesc {
	const char *name;
	size_t size;
	const struct field *fields;
	int nfields;
};

#define FLD(n, k, o, T, f, m)                                                                      \
	{                                                                                          \
		n, k, o, offsetof(T, f), 0, m                                                      \
	}
#define FLD2(n, k, o, T, f, f2, m)                                                                 \
	{                                                                                          \
		n, k, o, offsetof(T, f), offsetof(T, f2), m                                        \
	}
#define DESC(n, T, tab)                                                                            \
	{                                                                                          \
		n, sizeof(T), tab, (int)(sizeof(tab) / sizeof(tab[0]))                             \
	}

/* every table is in go-msgpack's order: field names sorted byte-wise */
static const struct field ping_fields[] = {
        FLD("Node", F_STR, false, struct ml_ping, node, ML_NAME_MAX),
        FLD("SeqNo", F_U32, false, struct ml_ping, seq, 0),
        FLD("SourceAddr", F_IP, true, struct ml_ping, source, 0),
        FLD("SourceNode", F_STR, true, struct ml_ping, source_node, ML_NAME_MAX),
        FLD("SourcePort", F_PORT, true, struct ml_ping, source, 0),
};
static const struct field iping_fields[] = {
        FLD("Nack", F_BOOL, false, struct ml_indirect_ping, nack, 0),
        FLD("Node", F_STR, false, struct ml_indirect_ping, node, ML_NAME_MAX),
        FLD("Port", F_PORT, false, struct ml_indirect_ping, target, 0),
        FLD("SeqNo", F_U32, false, struct ml_indirect_ping, seq, 0),
        FLD("SourceAddr", F_IP, true, struct ml_indirect_ping, source, 0),
        FLD("SourceNode", F_STR, true, struct ml_indirect_ping, source_node, ML_NAME_MAX),
        FLD("SourcePort", F_PORT, true, struct ml_indirect_ping, source, 0),
        FLD("Target", F_IP, false, struct ml_indirect_ping, target, 0),
};
static const struct field ack_fields[] = {
        FLD2("Payload", F_BYTES, false, struct ml_ack, payload, payload_len, ML_PAYLOAD_MAX),
        FLD("SeqNo", F_U32, false, struct ml_ack, seq, 0),
};
static const struct field nack_fields[] = {
        FLD("SeqNo", F_U32, false, struct ml_nack, seq, 0),
};
static const struct field err_fields[] = {
        FLD("Error", F_STR_CUT, false, struct ml_err_resp, error, ML_ERRMSG_MAX),
};
static const struct field suspect_fields[] = {
        FLD("From", F_STR, false, struct ml_suspect, from, ML_NAME_MAX),
        FLD("Incarnation", F_U32, false, struct ml_suspect, incarnation, 0),
        FLD("Node", F_STR, false, struct ml_suspect, node, ML_NAME_MAX),
};
static const struct field alive_fields[] = {
        FLD("Addr", F_IP, false, struct ml_alive, addr, 0),
        FLD("Incarnation", F_U32, false, struct ml_alive, incarnation, 0),
        FLD2("Meta", F_BYTES, false, struct ml_alive, meta, meta_len, ML_META_MAX),
        FLD("Node", F_STR, false, struct ml_alive, node, ML_NAME_MAX),
        FLD("Port", F_PORT, false, struct ml_alive, addr, 0),
        FLD2("Vsn", F_VSN, false, struct ml_alive, vsn, has_vsn, 0),
};
static const struct field digest_fields[] = {
        FLD2("Digest", F_BYTES, false, struct ml_digest, digest, digest_len, 8),
        FLD("Members", F_U32, false, struct ml_digest, members, 0),
        FLD("Node", F_STR, false, struct ml_digest, node, ML_NAME_MAX),
};
static const struct field pph_fields[] = {
        FLD("Join", F_BOOL, false, struct ml_push_pull_header, join, 0),
        FLD("Nodes", F_U32, false, struct ml_push_pull_header, nodes, ML_PUSH_STATE_MAX),
        FLD("UserStateLen", F_U32, false, struct ml_push_pull_header, user_state_len,
            ML_PUSH_STATE_MAX),
};
static const struct field pnode_fields[] = {
        FLD("Addr", F_IP, false, struct ml_push_node, addr, 0),
        FLD("Incarnation", F_U32, false, struct ml_push_node, incarnation, 0),
        FLD2("Meta", F_BYTES, false, struct ml_push_node, meta, meta_len, ML_META_MAX),
        FLD("Name", F_STR, false, struct ml_push_node, name, ML_NAME_MAX),
        FLD("Port", F_PORT, false, struct ml_push_node, addr, 0),
        FLD("State", F_U8, false, struct ml_push_node, state, ML_STATE_LEFT),
        FLD2("Vsn", F_VSN, false, struct ml_push_node, vsn, has_vsn, 0),
};
static const struct field umh_fields[] = {
        FLD("UserMsgLen", F_U32, false, struct ml_user_msg_header, len, ML_PUSH_STATE_MAX),
};

struct compress_view {
	uint8_t algo;
	struct ml_slice buf;
};
static const struct field compress_fields[] = {
        FLD("Algo", F_U8, false, struct compress_view, algo, 0),
        FLD("Buf", F_VIEW, false, struct compress_view, buf, 0),
};

static const struct msgdesc d_ping = DESC("ping", struct ml_ping, ping_fields);
static const struct msgdesc d_iping = DESC("indirect ping", struct ml_indirect_ping, iping_fields);
static const struct msgdesc d_ack = DESC("ack", struct ml_ack, ack_fields);
static const struct msgdesc d_nack = DESC("nack", struct ml_nack, nack_fields);
static const struct msgdesc d_err = DESC("err", struct ml_err_resp, err_fields);
static const struct msgdesc d_suspect = DESC("suspect", struct ml_suspect, suspect_fields);
static const struct msgdesc d_dead = DESC("dead", struct ml_suspect, suspect_fields);
static const struct msgdesc d_alive = DESC("alive", struct ml_alive, alive_fields);
static const struct msgdesc d_digest = DESC("digest", struct ml_digest, digest_fields);
static const struct msgdesc d_pph =
        DESC("push-pull header", struct ml_push_pull_header, pph_fields);
static const struct msgdesc d_pnode = DESC("push node", struct ml_push_node, pnode_fields);
static const struct msgdesc d_umh = DESC("user msg header", struct ml_user_msg_header, umh_fields);
static const struct msgdesc d_compress = DESC("compress", struct compress_view, compress_fields);

/* ---- generic encode ------------------------------------------------------ */

static bool field_empty(const struct field *f, const uint8_t *base)
{
	const struct ml_addr *a = (const void *)(base + f->off);
	switch (f->kind) {
	case F_U32:
		return *(const uint32_t *)(const void *)(base + f->off) == 0;
	case F_U16:
		return *(const uint16_t *)(const void *)(base + f->off) == 0;
	case F_U8:
		return base[f->off] == 0;
	case F_BOOL:
		return !*(const bool *)(const void *)(base + f->off);
	case F_STR:
	case F_STR_CUT:
		return base[f->off] == 0;
	case F_BYTES:
		return *(const uint16_t *)(const void *)(base + f->off2) == 0;
	case F_IP:
		return a->len == 0;
	case F_PORT:
		return a->port == 0;
	case F_VSN:
		return !*(const bool *)(const void *)(base + f->off2);
	case F_VIEW:
		return ((const struct ml_slice *)(const void *)(base + f->off))->len == 0;
	}
	return true;
}

/* Write one field's value. -1 when the struct holds something the wire
 * cannot carry (a string not terminated within its array, an IP that is
 * not 4 or 16 bytes): a caller bug, reported rather than sent. */
static int pack_field(struct wcursor *w, const struct field *f, const uint8_t *base)
{
	const void *fp = base + f->off;
	const struct ml_addr *a = fp;
	size_t n;
	switch (f->kind) {
	case F_U32:
		mp_write_uint(w, *(const uint32_t *)fp);
		return 0;
	case F_U16:
		mp_write_uint(w, *(const uint16_t *)fp);
		return 0;
	case F_U8:
		mp_write_uint(w, *(const uint8_t *)fp);
		return 0;
	case F_BOOL:
		mp_write_bool(w, *(const bool *)fp);
		return 0;
	case F_STR:
	case F_STR_CUT:
		n = strnlen(fp, f->max + 1);
		if (n > f->max)
			return -1; /* not terminated within its array */
		mp_write_raw(w, fp, n);
		return 0;
	case F_BYTES:
		n = *(const uint16_t *)(const void *)(base + f->off2);
		if (n > f->max)
			return -1;
		mp_write_bytes(w, fp, n);
		return 0;
	case F_IP:
		if (a->len != 0 && a->len != 4 && a->len != 16)
			return -1;
		mp_write_bytes(w, a->ip, a->len);
		return 0;
	case F_PORT:
		mp_write_uint(w, a->port);
		return 0;
	case F_VSN:
		if (!*(const bool *)(const void *)(base + f->off2))
			mp_write_nil(w);
		else
			mp_write_raw(w, fp, 6);
		return 0;
	case F_VIEW: {
		const struct ml_slice *s = fp;
		mp_write_bytes(w, s->p, s->len);
		return 0;
	}
	}
	return -1;
}

/* Pack the struct as a map into w (no type byte): the omitempty fields that
 * are zero are counted out first, since the map header comes before them. */
static int pack_struct(struct wcursor *w, const struct msgdesc *d, const void *m)
{
	const uint8_t *base = m;
	uint32_t count = 0;
	for (int i = 0; i < d->nfields; i++)
		if (!(d->fields[i].omitempty && field_empty(&d->fields[i], base)))
			count++;
	mp_write_map(w, count);
	for (int i = 0; i < d->nfields; i++) {
		const struct field *f = &d->fields[i];
		if (f->omitempty && field_empty(f, base))
			continue;
		mp_write_str(w, f->name);
		if (pack_field(w, f, base) != 0)
			return -1;
	}
	return 0;
}

/* type < 0: no type byte (push-pull pieces). Bytes written or -1. */
static int encode_msg(uint8_t *buf, size_t cap, int type, const struct msgdesc *d, const void *m)
{
	struct wcursor w = {.p = buf, .cap = cap};
	if (type >= 0)
		wcursor_u8(&w, (uint8_t)type);
	if (pack_struct(&w, d, m) != 0)
		return -1;
	return wcursor_done(&w);
}

/* ---- generic decode ------------------------------------------------------ */

/* Name the message and field in the error text; keeps rc. */
static int field_fail(const struct msgdesc *d, const struct field *f, int rc, const char *why)
{
	if (rc == ML_AGAIN)
		mp_fail("%s: %s: truncated", d->name, f->name);
	else
		mp_fail("%s: %s: %s", d->name, f->name, why);
	return rc;
}

/*
 * One field's value into the struct. Limits are enforced here, not
 * truncated: a name longer than ML_NAME_MAX is an error (only the err
 * message text, F_STR_CUT, is cut). Nil reads as the zero value, as Go
 * decodes it.
 */
static int decode_field(struct cursor *r, const struct msgdesc *d, const struct field *f,
                        uint8_t *base)
{
	void *fp = base + f->off;
	struct ml_addr *a = fp;
	const uint8_t *p;
	size_t len;
	uint64_t v, max;
	int rc;

	switch (f->kind) {
	case F_U32:
	case F_U16:
	case F_U8:
	case F_PORT:
		if (mp_read_nil(r) == MP_OK)
			v = 0;
		else if ((rc = mp_read_uint(r, &v)) != ML_OK)
			return field_fail(d, f, rc, "not an unsigned integer");
		max = f->kind == F_U32 ? UINT32_MAX : f->kind == F_U8 ? UINT8_MAX : UINT16_MAX;
		if (f->max != 0 && f->max < max)
			max = f->max;
		if (v > max)
			return field_fail(d, f, ML_BAD, "out of range");
		if (f->kind == F_U32)
			*(uint32_t *)fp = (uint32_t)v;
		else if (f->kind == F_U8)
			*(uint8_t *)fp = (uint8_t)v;
		else if (f->kind == F_U16)
			*(uint16_t *)fp = (uint16_t)v;
		else
			a->port = (uint16_t)v;
		return ML_OK;
	case F_BOOL:
		if ((rc = mp_read_bool(r, fp)) != ML_OK)
			return field_fail(d, f, rc, "not a bool");
		return ML_OK;
	default:
		break;
	}

	if (f->kind == F_VSN && cursor_has(r, 1) && (r->p[0] & 0xf0) == 0x90) {
		/* tolerate Vsn written as an array of small ints */
		uint32_t n = r->p[0] & 0x0f;
		struct cursor t = *r;
		t.p++;
		if (n != 6)
			return field_fail(d, f, ML_BAD, "want 6 versions");
		uint8_t tmp[6];
		for (uint32_t i = 0; i < n; i++) {
			if (mp_read_nil(&t) == MP_OK)
				v = 0;
			else if ((rc = mp_read_uint(&t, &v)) != ML_OK)
				return field_fail(d, f, rc, "not a version number");
			if (v > UINT8_MAX)
				return field_fail(d, f, ML_BAD, "out of range");
			tmp[i] = (uint8_t)v;
		}
		memcpy(fp, tmp, 6);
		*(bool *)(void *)(base + f->off2) = true;
		*r = t;
		return ML_OK;
	}

	if ((rc = mp_read_raw(r, &p, &len)) != ML_OK)
		return field_fail(d, f, rc, "not a string or bytes");
	switch (f->kind) {
	case F_STR:
	case F_STR_CUT:
		if (len > f->max) {
			if (f->kind == F_STR)
				return field_fail(d, f, ML_BAD, "too long");
			len = f->max;
		}
		if (len > 0 && memchr(p, 0, len) != NULL)
			return field_fail(d, f, ML_BAD, "contains NUL");
		if (len > 0)
			memcpy(fp, p, len);
		((char *)fp)[len] = 0;
		return ML_OK;
	case F_BYTES:
		if (len > f->max)
			return field_fail(d, f, ML_BAD, "too long");
		if (len > 0)
			memcpy(fp, p, len);
		*(uint16_t *)(void *)(base + f->off2) = (uint16_t)len;
		return ML_OK;
	case F_IP:
		if (len != 0 && len != 4 && len != 16)
			return field_fail(d, f, ML_BAD, "not a 4 or 16 byte IP");
		if (len > 0)
			memcpy(a->ip, p, len);
		a->len = (uint8_t)len;
		return ML_OK;
	case F_VSN:
		if (len == 0)
			return ML_OK;
		if (len != 6)
			return field_fail(d, f, ML_BAD, "want 6 versions");
		memcpy(fp, p, 6);
		*(bool *)(void *)(base + f->off2) = true;
		return ML_OK;
	case F_VIEW:
		((struct ml_slice *)fp)->p = p;
		((struct ml_slice *)fp)->len = len;
		return ML_OK;
	default:
		return field_fail(d, f, ML_BAD, "internal");
	}
}

/*
 * A message map into the struct d describes. Unknown keys are skipped
 * (newer memberlist versions add fields), missing ones stay zero. *pos
 * moves only on ML_OK, so a stream reader retries an ML_AGAIN from the
 * same place once more bytes arrived.
 */
static int decode_struct(const uint8_t **pos, const uint8_t *end, const struct msgdesc *d, void *m)
{
	uint8_t *base = m;
	struct cursor r = {*pos, end};
	uint32_t n;
	int rc;

	memset(m, 0, d->size);
	if (*pos == NULL || end < *pos) {
		mp_fail("%s: no input", d->name);
		return ML_BAD;
	}
	if ((rc = mp_read_map(&r, &n)) != ML_OK) {
		mp_fail("%s: %s", d->name, rc == ML_AGAIN ? "truncated" : "not a map");
		return rc;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *k;
		size_t klen;
		if ((rc = mp_read_raw(&r, &k, &klen)) != ML_OK) {
			mp_fail("%s: %s", d->name,
			        rc == ML_AGAIN ? "truncated" : "map key is not a string");
			return rc;
		}
		/* Go writes the keys in our descriptor's order: try key i first */
		const struct field *f = NULL;
		if (i < (uint32_t)d->nfields && mp_key_is(d->fields[i].name, k, klen)) {
			f = &d->fields[i];
		} else {
			for (int j = 0; j < d->nfields; j++) {
				if (mp_key_is(d->fields[j].name, k, klen)) {
					f = &d->fields[j];
					break;
				}
			}
		}
		if (f == NULL) {
			if ((rc = mp_skip(&r)) != ML_OK) {
				mp_fail("%s: unknown key: %s", d->name,
				        rc == ML_AGAIN ? "truncated" : "bad value");
				return rc;
			}
			continue;
		}
		if ((rc = decode_field(&r, d, f, base)) != ML_OK)
			return rc;
	}
	*pos = r.p;
	return ML_OK;
}

/* ---- message entry points ------------------------------------------------ */

int ml_encode_ping(uint8_t *buf, size_t cap, const struct ml_ping *m)
{
	return encode_msg(buf, cap, ML_PING, &d_ping, m);
}

int ml_encode_indirect_ping(uint8_t *buf, size_t cap, const struct ml_indirect_ping *m)
{
	return encode_msg(buf, cap, ML_INDIRECT_PING, &d_iping, m);
}

int ml_encode_ack(uint8_t *buf, size_t cap, const struct ml_ack *m)
{
	return encode_msg(buf, cap, ML_ACK, &d_ack, m);
}

int ml_encode_nack(uint8_t *buf, size_t cap, const struct ml_nack *m)
{
	return encode_msg(buf, cap, ML_NACK, &d_nack, m);
}

int ml_encode_suspect(uint8_t *buf, size_t cap, const struct ml_suspect *m)
{
	return encode_msg(buf, cap, ML_SUSPECT, &d_suspect, m);
}

int ml_encode_dead(uint8_t *buf, size_t cap, const struct ml_suspect *m)
{
	return encode_msg(buf, cap, ML_DEAD, &d_dead, m);
}

int ml_encode_alive(uint8_t *buf, size_t cap, const struct ml_alive *m)
{
	return encode_msg(buf, cap, ML_ALIVE, &d_alive, m);
}

int ml_encode_err(uint8_t *buf, size_t cap, const struct ml_err_resp *m)
{
	return encode_msg(buf, cap, ML_ERR, &d_err, m);
}

int ml_encode_digest(uint8_t *buf, size_t cap, const struct ml_digest *m)
{
	return encode_msg(buf, cap, ML_RUMOR_DIGEST, &d_digest, m);
}

int ml_encode_user(uint8_t *buf, size_t cap, const uint8_t *data, size_t len)
{
	if (cap < 1 || len > cap - 1 || len > (size_t)INT32_MAX - 1)
		return -1;
	buf[0] = ML_USER;
	if (len > 0)
		memcpy(buf + 1, data, len);
	return (int)(len + 1);
}

int ml_decode_ping(const uint8_t **pos, const uint8_t *end, struct ml_ping *m)
{
	return decode_struct(pos, end, &d_ping, m);
}

int ml_decode_indirect_ping(const uint8_t **pos, const uint8_t *end, struct ml_indirect_ping *m)
{
	return decode_struct(pos, end, &d_iping, m);
}

int ml_decode_ack(const uint8_t **pos, const uint8_t *end, struct ml_ack *m)
{
	return decode_struct(pos, end, &d_ack, m);
}

int ml_decode_nack(const uint8_t **pos, const uint8_t *end, struct ml_nack *m)
{
	return decode_struct(pos, end, &d_nack, m);
}

int ml_decode_suspect(const uint8_t **pos, const uint8_t *end, struct ml_suspect *m)
{
	return decode_struct(pos, end, &d_suspect, m);
}

int ml_decode_dead(const uint8_t **pos, const uint8_t *end, struct ml_suspect *m)
{
	return decode_struct(pos, end, &d_dead, m);
}

int ml_decode_alive(const uint8_t **pos, const uint8_t *end, struct ml_alive *m)
{
	return decode_struct(pos, end, &d_alive, m);
}

int ml_decode_err(const uint8_t **pos, const uint8_t *end, struct ml_err_resp *m)
{
	return decode_struct(pos, end, &d_err, m);
}

int ml_decode_digest(const uint8_t **pos, const uint8_t *end, struct ml_digest *m)
{
	const uint8_t *start = *pos;
	int rc = decode_struct(pos, end, &d_digest, m);
	if (rc == ML_OK && m->digest_len != 8) {
		*pos = start; /* as every decoder: *pos moves only on ML_OK */
		mp_fail("digest: Digest: want 8 bytes");
		return ML_BAD;
	}
	return rc;
}

int ml_encode_push_pull_header(uint8_t *buf, size_t cap, const struct ml_push_pull_header *h)
{
	return encode_msg(buf, cap, -1, &d_pph, h);
}

int ml_encode_push_node(uint8_t *buf, size_t cap, const struct ml_push_node *n)
{
	return encode_msg(buf, cap, -1, &d_pnode, n);
}

int ml_decode_push_pull_header(const uint8_t **pos, const uint8_t *end,
                               struct ml_push_pull_header *h)
{
	return decode_struct(pos, end, &d_pph, h);
}

int ml_decode_push_node(const uint8_t **pos, const uint8_t *end, struct ml_push_node *n)
{
	return decode_struct(pos, end, &d_pnode, n);
}

int ml_encode_user_msg_header(uint8_t *buf, size_t cap, const struct ml_user_msg_header *h)
{
	return encode_msg(buf, cap, -1, &d_umh, h);
}

int ml_decode_user_msg_header(const uint8_t **pos, const uint8_t *end, struct ml_user_msg_header *h)
{
	return decode_struct(pos, end, &d_umh, h);
}

/* ---- compound ------------------------------------------------------------ */

int ml_compound_encode(uint8_t *buf, size_t cap, const struct ml_slice *parts, int n)
{
	if (n < 0 || n > ML_COMPOUND_MAX)
		return -1;
	size_t need = 2 + 2 * (size_t)n;
	for (int i = 0; i < n; i++) {
		if (parts[i].len > UINT16_MAX)
			return -1;
		need += parts[i].len;
	}
	if (need > cap || need > (size_t)INT32_MAX)
		return -1;
	buf[0] = ML_COMPOUND;
	buf[1] = (uint8_t)n;
	size_t o = 2;
	for (int i = 0; i < n; i++, o += 2)
		be16_put(buf + o, (uint16_t)parts[i].len);
	for (int i = 0; i < n; i++) {
		if (parts[i].len > 0)
			memcpy(buf + o, parts[i].p, parts[i].len);
		o += parts[i].len;
	}
	return (int)o;
}

/*
 * memberlist's decodeCompoundMessage: a part whose length runs past the
 * packet ends the list and is counted as truncated, not as an error (the
 * parts before it are still delivered), while a length table that does not
 * fit is an error. Parts are views into p; nothing is copied.
 */
int ml_compound_decode(const uint8_t *p, size_t len, struct ml_slice *parts, int max, int *trunc)
{
	if (trunc != NULL)
		*trunc = 0;
	if (p == NULL || len < 1) {
		mp_fail("compound: missing length byte");
		return -1;
	}
	size_t n = p[0];
	if (len - 1 < 2 * n) {
		mp_fail("compound: truncated length table");
		return -1;
	}
	if (n > (size_t)(max < 0 ? 0 : max)) {
		mp_fail("compound: %zu parts, room for %d", n, max);
		return -1;
	}
	size_t off = 1 + 2 * n;
	for (size_t i = 0; i < n; i++) {
		size_t plen = be16_get(p + 1 + 2 * i);
		if (len - off < plen) {
			if (trunc != NULL)
				*trunc = (int)(n - i);
			return (int)i;
		}
		parts[i].p = p + off;
		parts[i].len = plen;
		off += plen;
	}
	return (int)n;
}

/* ---- CRC ----------------------------------------------------------------- */

/* Slicing-by-8 (Intel's, as zlib's and the kernel's generic crc32 do it):
 * eight table lookups per 8 bytes instead of one per byte. Every UDP packet
 * memberlist v5 sends carries this CRC, and a join storm sends millions. */
static uint32_t crc_table[8][256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = crc_table[0][crc_table[t - 1][i] & 0xff] ^
			                  (crc_table[t - 1][i] >> 8);
}

uint32_t ml_crc32(const uint8_t *p, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, crc_table_init);
	uint32_t crc = 0xffffffffu;
	while (len >= 8) {
		/* bytes in stream order, independent of the host's byte order */
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		                     (uint32_t)p[3] << 24);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
		      crc_table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

/* msg may already sit in buf (the packet is built in place): memmove. */
int ml_crc_wrap(uint8_t *buf, size_t cap, const uint8_t *msg, size_t len)
{
	if (cap < 5 || len > cap - 5 || len > (size_t)INT32_MAX - 5)
		return -1;
	uint32_t crc = ml_crc32(msg, len);
	memmove(buf + 5, msg, len);
	buf[0] = ML_HAS_CRC;
	be32_put(buf + 1, crc);
	return (int)(len + 5);
}

int ml_crc_check(const uint8_t *p, size_t len, struct ml_slice *msg)
{
	if (p == NULL || len < 5 || p[0] != ML_HAS_CRC) {
		mp_fail("crc: too short or not a crc message");
		return ML_BAD;
	}
	uint32_t want = be32_get(p + 1);
	uint32_t got = ml_crc32(p + 5, len - 5);
	if (want != got) {
		mp_fail("crc: mismatch (header %08x, payload %08x)", want, got);
		return ML_BAD;
	}
	msg->p = p + 5;
	msg->len = len - 5;
	return ML_OK;
}

/* ---- compress ------------------------------------------------------------ */

/* type byte, fixmap, "Algo", 0, "Buf", raw32 header */
#define COMPRESS_HDR_MAX (1 + 1 + 5 + 1 + 4 + 5)

/*
 * The header's length field depends on the compressed size, known only
 * after compressing: LZW writes at the largest header's offset, then the
 * bytes move down behind the real header. One buffer, no scratch copy of
 * the (up to 20 MiB) push-pull state.
 */
int ml_compress_encode(uint8_t *buf, size_t cap, const uint8_t *msg, size_t len)
{
	if (cap <= COMPRESS_HDR_MAX)
		return -1;
	int z = ml_lzw_compress(msg, len, buf + COMPRESS_HDR_MAX, cap - COMPRESS_HDR_MAX);
	if (z < 0)
		return -1;
	uint8_t hdr[COMPRESS_HDR_MAX];
	struct wcursor w = {.p = hdr, .cap = sizeof(hdr)};
	wcursor_u8(&w, ML_COMPRESS);
	mp_write_map(&w, 2);
	mp_write_str(&w, "Algo");
	mp_write_uint(&w, 0);
	mp_write_str(&w, "Buf");
	mp_write_raw_header(&w, (size_t)z); /* the LZW bytes are in place after it */
	if (wcursor_done(&w) < 0)
		return -1;
	memmove(buf + w.len, buf + COMPRESS_HDR_MAX, (size_t)z);
	memcpy(buf, hdr, w.len);
	return (int)(w.len + (size_t)z);
}

int ml_compress_frame(const uint8_t **pos, const uint8_t *end, struct ml_slice *lzw)
{
	struct compress_view c;
	const uint8_t *p = *pos;
	int rc = decode_struct(&p, end, &d_compress, &c);
	if (rc != ML_OK)
		return rc;
	if (c.algo != 0) {
		mp_fail("compress: Algo: unknown algorithm %u", c.algo);
		return ML_BAD;
	}
	*lzw = c.buf;
	*pos = p;
	return ML_OK;
}

int ml_compress_decode_stream(const uint8_t **pos, const uint8_t *end, uint8_t *out, size_t cap,
                              size_t *out_len)
{
	struct ml_slice lzw;
	const uint8_t *p = *pos;
	int rc = ml_compress_frame(&p, end, &lzw);
	if (rc != ML_OK)
		return rc;
	int n = ml_lzw_decompress(lzw.p, lzw.len, out, cap);
	if (n < 0) {
		mp_fail("compress: Buf: bad LZW data or output too large");
		return ML_BAD;
	}
	*out_len = (size_t)n;
	*pos = p;
	return ML_OK;
}

int ml_compress_decode(const uint8_t *p, size_t len, uint8_t *out, size_t cap)
{
	size_t n;
	if (p == NULL)
		return -1;
	if (ml_compress_decode_stream(&p, p + len, out, cap, &n) != ML_OK || n > (size_t)INT32_MAX)
		return -1;
	return (int)n;
}

/* ---- addresses ----------------------------------------------------------- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* 4-byte view of an IPv4 or IPv4-mapped address, or NULL */
/* Go's net.IP.To4(): a v4-mapped v6 address is the same node as its v4
 * form, for printing and for comparing. */
static const uint8_t *addr_v4(const struct ml_addr *a)
{
	if (a->len == 4)
		return a->ip;
	if (a->len == 16 && memcmp(a->ip, v4_mapped, 12) == 0)
		return a->ip + 12;
	return NULL;
}

const char *ml_addr_str(const struct ml_addr *a, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	const uint8_t *v4 = addr_v4(a);
	if (cap == 0)
		return buf;
	if (v4 != NULL)
		snprintf(buf, cap, "%u.%u.%u.%u:%u", v4[0], v4[1], v4[2], v4[3], a->port);
	else if (a->len == 16 && inet_ntop(AF_INET6, a->ip, ip, sizeof(ip)) != NULL)
		snprintf(buf, cap, "[%s]:%u", ip, a->port);
	else
		snprintf(buf, cap, ":%u", a->port);
	return buf;
}

static int parse_port(const char *s, uint16_t *port)
{
	if (*s == 0)
		return -1;
	unsigned long v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

static int parse_ip(const char *s, size_t n, struct ml_addr *out)
{
	char tmp[INET6_ADDRSTRLEN + 1];
	if (n == 0 || n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	if (inet_pton(AF_INET, tmp, out->ip) == 1) {
		out->len = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, out->ip) == 1) {
		out->len = 16;
		return 0;
	}
	return -1;
}

int ml_addr_parse(const char *s, uint16_t default_port, struct ml_addr *out)
{
	struct ml_addr a;
	memset(&a, 0, sizeof(a));
	a.port = default_port;
	if (s == NULL)
		return -1;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || parse_ip(s + 1, (size_t)(close - s - 1), &a) != 0 ||
		    a.len != 16)
			return -1;
		if (close[1] == ':') {
			if (parse_port(close + 2, &a.port) != 0)
				return -1;
		} else if (close[1] != 0) {
			return -1;
		}
	} else {
		const char *colon = strchr(s, ':');
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {
			if (parse_ip(s, (size_t)(colon - s), &a) != 0 || a.len != 4 ||
			    parse_port(colon + 1, &a.port) != 0)
				return -1;
		} else if (parse_ip(s, strlen(s), &a) != 0) {
			return -1; /* bare IPv4 or IPv6 without port */
		}
	}
	*out = a;
	return 0;
}

bool ml_addr_equal(const struct ml_addr *a, const struct ml_addr *b)
{
	if (a->port != b->port)
		return false;
	const uint8_t *a4 = addr_v4(a), *b4 = addr_v4(b);
	if (a4 != NULL || b4 != NULL)
		return a4 != NULL && b4 != NULL && memcmp(a4, b4, 4) == 0;
	return a->len == b->len && memcmp(a->ip, b->ip, a->len) == 0;
}
