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
 * The encoders therefore pack with msgpack-c's v4raw functions into a fixed
 * buffer. The decoders do not use msgpack-c's unpacker: it allocates a zone
 * per object and sizes arrays from the (attacker-chosen) header before the
 * elements arrive, so a 5-byte datagram could ask for gigabytes. Instead a
 * small cursor reader here checks bounds before every read, never allocates,
 * and accepts every int width and str8/bin for strings, as go-msgpack does.
 */
#include <arpa/inet.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/wire.h"

/* ---- errors -------------------------------------------------------------- */

static _Thread_local char wire_err[192];

const char *ml_wire_error(void)
{
	return wire_err;
}

static void wire_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wire_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(wire_err, sizeof(wire_err), fmt, ap);
	va_end(ap);
}

/* ---- writing: msgpack-c packer into a fixed buffer ----------------------- */

struct wbuf {
	uint8_t *p;
	size_t cap;
	size_t len;
};

static int wbuf_write(void *data, const char *buf, size_t len)
{
	struct wbuf *w = data;
	if (len > w->cap - w->len)
		return -1;
	memcpy(w->p + w->len, buf, len);
	w->len += len;
	return 0;
}

static int pack_raw(msgpack_packer *pk, const void *p, size_t len)
{
	if (msgpack_pack_v4raw(pk, len) != 0)
		return -1;
	return len > 0 ? msgpack_pack_v4raw_body(pk, p, len) : 0;
}

/* name (NUL-terminated) equals the counted key k[0..klen), which may hold
 * any bytes: one pass, no strlen. */
static bool key_is(const char *name, const uint8_t *k, size_t klen)
{
	for (size_t j = 0; j < klen; j++)
		if (name[j] == '\0' || (uint8_t)name[j] != k[j])
			return false;
	return name[klen] == '\0';
}

static int pack_key(msgpack_packer *pk, const char *name)
{
	return pack_raw(pk, name, strlen(name));
}

/* nil for an empty byte slice, as Go writes a nil []byte */
static int pack_bytes_or_nil(msgpack_packer *pk, const void *p, size_t len)
{
	if (len == 0)
		return msgpack_pack_nil(pk);
	return pack_raw(pk, p, len);
}

/* ---- reading: a bounds-checked msgpack cursor ---------------------------- */

struct rd {
	const uint8_t *p;
	const uint8_t *end;
};

static bool rd_has(const struct rd *r, size_t n)
{
	return (size_t)(r->end - r->p) >= n;
}

static uint64_t be_load(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* big-endian length/int of n bytes after the tag byte */
static int rd_tagged(struct rd *r, unsigned n, uint64_t *v)
{
	if (!rd_has(r, 1 + (size_t)n))
		return ML_AGAIN;
	*v = be_load(r->p + 1, n);
	r->p += 1 + n;
	return ML_OK;
}

/* map header */
static int rd_map(struct rd *r, uint32_t *n)
{
	uint64_t v;
	int rc;
	if (!rd_has(r, 1))
		return ML_AGAIN;
	uint8_t b = r->p[0];
	if ((b & 0xf0) == 0x80) {
		*n = b & 0x0f;
		r->p++;
		return ML_OK;
	}
	if (b == 0xde)
		rc = rd_tagged(r, 2, &v);
	else if (b == 0xdf)
		rc = rd_tagged(r, 4, &v);
	else
		return ML_BAD;
	if (rc == ML_OK)
		*n = (uint32_t)v;
	return rc;
}

/* raw/str/bin (and nil as empty): a view of the bytes, which must be present */
static int rd_raw(struct rd *r, const uint8_t **p, size_t *len)
{
	uint64_t n;
	int rc;
	if (!rd_has(r, 1))
		return ML_AGAIN;
	struct rd t = *r;
	uint8_t b = t.p[0];
	if ((b & 0xe0) == 0xa0) {
		n = b & 0x1f;
		t.p++;
	} else if (b == 0xc0) {
		*p = NULL;
		*len = 0;
		r->p++;
		return ML_OK;
	} else {
		unsigned w;
		switch (b) {
		case 0xd9: /* str8 */
		case 0xc4: /* bin8 */
			w = 1;
			break;
		case 0xda: /* raw16 / str16 */
		case 0xc5:
			w = 2;
			break;
		case 0xdb:
		case 0xc6:
			w = 4;
			break;
		default:
			return ML_BAD;
		}
		if ((rc = rd_tagged(&t, w, &n)) != ML_OK)
			return rc;
	}
	if (!rd_has(&t, n))
		return ML_AGAIN;
	*p = t.p;
	*len = (size_t)n;
	r->p = t.p + n;
	return ML_OK;
}

/* any integer that is >= 0 (nil reads as 0, as Go decodes nil into an int) */
static int rd_uint(struct rd *r, uint64_t *v)
{
	int rc;
	if (!rd_has(r, 1))
		return ML_AGAIN;
	uint8_t b = r->p[0];
	if (b <= 0x7f || b == 0xc0) {
		*v = b == 0xc0 ? 0 : b;
		r->p++;
		return ML_OK;
	}
	if (b >= 0xe0)
		return ML_BAD; /* negative fixint */
	unsigned w;
	bool sign = false;
	switch (b) {
	case 0xcc: w = 1; break;
	case 0xcd: w = 2; break;
	case 0xce: w = 4; break;
	case 0xcf: w = 8; break;
	case 0xd0: w = 1; sign = true; break;
	case 0xd1: w = 2; sign = true; break;
	case 0xd2: w = 4; sign = true; break;
	case 0xd3: w = 8; sign = true; break;
	default:
		return ML_BAD;
	}
	struct rd t = *r;
	uint64_t x;
	if ((rc = rd_tagged(&t, w, &x)) != ML_OK)
		return rc;
	if (sign && (x >> (w * 8 - 1)) & 1)
		return ML_BAD; /* negative */
	*v = x;
	*r = t;
	return ML_OK;
}

static int rd_bool(struct rd *r, bool *v)
{
	if (!rd_has(r, 1))
		return ML_AGAIN;
	uint8_t b = r->p[0];
	if (b != 0xc2 && b != 0xc3 && b != 0xc0)
		return ML_BAD;
	*v = b == 0xc3;
	r->p++;
	return ML_OK;
}

/* Skip one object of any type, iteratively (no recursion on nesting). */
static int rd_skip(struct rd *r)
{
	struct rd t = *r;
	uint64_t pending = 1;
	int rc;
	while (pending > 0) {
		pending--;
		if (!rd_has(&t, 1))
			return ML_AGAIN;
		uint8_t b = t.p[0];
		uint64_t n = 0;
		if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3)) {
			t.p++;
		} else if ((b & 0xf0) == 0x80) { /* fixmap */
			pending += 2u * (b & 0x0f);
			t.p++;
		} else if ((b & 0xf0) == 0x90) { /* fixarray */
			pending += b & 0x0f;
			t.p++;
		} else if ((b & 0xe0) == 0xa0) { /* fixraw */
			n = b & 0x1f;
			if (!rd_has(&t, 1 + n))
				return ML_AGAIN;
			t.p += 1 + n;
		} else {
			unsigned w = 0; /* width of the length field */
			uint64_t fixed = 0; /* payload without length field */
			int kind = 0; /* 0 fixed, 1 bytes, 2 array, 3 map, 4 ext */
			switch (b) {
			case 0xc4: case 0xd9: w = 1; kind = 1; break;
			case 0xc5: case 0xda: w = 2; kind = 1; break;
			case 0xc6: case 0xdb: w = 4; kind = 1; break;
			case 0xc7: w = 1; kind = 4; break;
			case 0xc8: w = 2; kind = 4; break;
			case 0xc9: w = 4; kind = 4; break;
			case 0xca: fixed = 4; break;
			case 0xcb: fixed = 8; break;
			case 0xcc: case 0xd0: fixed = 1; break;
			case 0xcd: case 0xd1: fixed = 2; break;
			case 0xce: case 0xd2: fixed = 4; break;
			case 0xcf: case 0xd3: fixed = 8; break;
			case 0xd4: fixed = 2; break;
			case 0xd5: fixed = 3; break;
			case 0xd6: fixed = 5; break;
			case 0xd7: fixed = 9; break;
			case 0xd8: fixed = 17; break;
			case 0xdc: w = 2; kind = 2; break;
			case 0xdd: w = 4; kind = 2; break;
			case 0xde: w = 2; kind = 3; break;
			case 0xdf: w = 4; kind = 3; break;
			default:
				return ML_BAD; /* 0xc1: never used */
			}
			if (kind == 0) {
				if (!rd_has(&t, 1 + fixed))
					return ML_AGAIN;
				t.p += 1 + fixed;
				continue;
			}
			if ((rc = rd_tagged(&t, w, &n)) != ML_OK)
				return rc;
			if (kind == 2) {
				pending += n;
			} else if (kind == 3) {
				pending += 2 * n;
			} else {
				if (kind == 4)
					n += 1; /* ext type byte */
				if (!rd_has(&t, n))
					return ML_AGAIN;
				t.p += n;
			}
		}
	}
	*r = t;
	return ML_OK;
}

/* ---- field tables -------------------------------------------------------- */

enum fkind {
	F_U32,	  /* uint32_t */
	F_U16,	  /* uint16_t */
	F_U8,	  /* uint8_t */
	F_BOOL,	  /* bool */
	F_STR,	  /* char[max + 1], longer is an error */
	F_STR_CUT,/* char[max + 1], longer is cut */
	F_BYTES,  /* uint8_t[max] at off, uint16_t length at off2; empty = nil */
	F_IP,	  /* struct ml_addr at off: ip/len; empty = nil */
	F_PORT,	  /* struct ml_addr at off: port */
	F_VSN,	  /* uint8_t[6] at off, bool at off2 */
	F_VIEW,	  /* struct ml_slice at off (decode only; points into input) */
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

#define FLD(n, k, o, T, f, m) { n, k, o, offsetof(T, f), 0, m }
#define FLD2(n, k, o, T, f, f2, m) { n, k, o, offsetof(T, f), offsetof(T, f2), m }
#define DESC(n, T, tab) { n, sizeof(T), tab, (int)(sizeof(tab) / sizeof(tab[0])) }

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
static const struct msgdesc d_pph = DESC("push-pull header", struct ml_push_pull_header, pph_fields);
static const struct msgdesc d_pnode = DESC("push node", struct ml_push_node, pnode_fields);
static const struct msgdesc d_umh = DESC("user msg header", struct ml_user_msg_header, umh_fields);
static const struct msgdesc d_compress = DESC("compress", struct compress_view, compress_fields);

/* ---- generic encode ------------------------------------------------------ */

static bool field_empty(const struct field *f, const uint8_t *base)
{
	const struct ml_addr *a = (const void *)(base + f->off);
	switch (f->kind) {
	case F_U32: return *(const uint32_t *)(const void *)(base + f->off) == 0;
	case F_U16: return *(const uint16_t *)(const void *)(base + f->off) == 0;
	case F_U8: return base[f->off] == 0;
	case F_BOOL: return !*(const bool *)(const void *)(base + f->off);
	case F_STR:
	case F_STR_CUT: return base[f->off] == 0;
	case F_BYTES: return *(const uint16_t *)(const void *)(base + f->off2) == 0;
	case F_IP: return a->len == 0;
	case F_PORT: return a->port == 0;
	case F_VSN: return !*(const bool *)(const void *)(base + f->off2);
	case F_VIEW: return ((const struct ml_slice *)(const void *)(base + f->off))->len == 0;
	}
	return true;
}

static int pack_field(msgpack_packer *pk, const struct field *f, const uint8_t *base)
{
	const void *fp = base + f->off;
	const struct ml_addr *a = fp;
	size_t n;
	switch (f->kind) {
	case F_U32: return msgpack_pack_uint32(pk, *(const uint32_t *)fp);
	case F_U16: return msgpack_pack_uint16(pk, *(const uint16_t *)fp);
	case F_U8: return msgpack_pack_uint8(pk, *(const uint8_t *)fp);
	case F_BOOL: return *(const bool *)fp ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	case F_STR:
	case F_STR_CUT:
		n = strnlen(fp, f->max + 1);
		if (n > f->max)
			return -1; /* not terminated within its array */
		return pack_raw(pk, fp, n);
	case F_BYTES:
		n = *(const uint16_t *)(const void *)(base + f->off2);
		if (n > f->max)
			return -1;
		return pack_bytes_or_nil(pk, fp, n);
	case F_IP:
		if (a->len != 0 && a->len != 4 && a->len != 16)
			return -1;
		return pack_bytes_or_nil(pk, a->ip, a->len);
	case F_PORT: return msgpack_pack_uint16(pk, a->port);
	case F_VSN:
		if (!*(const bool *)(const void *)(base + f->off2))
			return msgpack_pack_nil(pk);
		return pack_raw(pk, fp, 6);
	case F_VIEW: {
		const struct ml_slice *s = fp;
		return pack_bytes_or_nil(pk, s->p, s->len);
	}
	}
	return -1;
}

/* Pack the struct as a map into w (no type byte). */
static int pack_struct(struct wbuf *w, const struct msgdesc *d, const void *m)
{
	const uint8_t *base = m;
	msgpack_packer pk;
	msgpack_packer_init(&pk, w, wbuf_write);
	size_t count = 0;
	for (int i = 0; i < d->nfields; i++)
		if (!(d->fields[i].omitempty && field_empty(&d->fields[i], base)))
			count++;
	if (msgpack_pack_map(&pk, count) != 0)
		return -1;
	for (int i = 0; i < d->nfields; i++) {
		const struct field *f = &d->fields[i];
		if (f->omitempty && field_empty(f, base))
			continue;
		if (pack_key(&pk, f->name) != 0 || pack_field(&pk, f, base) != 0)
			return -1;
	}
	return 0;
}

static int encode_msg(uint8_t *buf, size_t cap, int type, const struct msgdesc *d, const void *m)
{
	struct wbuf w = { buf, cap, 0 };
	if (type >= 0) {
		if (cap < 1)
			return -1;
		buf[w.len++] = (uint8_t)type;
	}
	if (pack_struct(&w, d, m) != 0 || w.len > (size_t)INT32_MAX)
		return -1;
	return (int)w.len;
}

/* ---- generic decode ------------------------------------------------------ */

static int field_fail(const struct msgdesc *d, const struct field *f, int rc, const char *why)
{
	if (rc == ML_AGAIN)
		wire_fail("%s: %s: truncated", d->name, f->name);
	else
		wire_fail("%s: %s: %s", d->name, f->name, why);
	return rc;
}

static int decode_field(struct rd *r, const struct msgdesc *d, const struct field *f, uint8_t *base)
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
		if ((rc = rd_uint(r, &v)) != ML_OK)
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
		if ((rc = rd_bool(r, fp)) != ML_OK)
			return field_fail(d, f, rc, "not a bool");
		return ML_OK;
	default:
		break;
	}

	if (f->kind == F_VSN && rd_has(r, 1) && (r->p[0] & 0xf0) == 0x90) {
		/* tolerate Vsn written as an array of small ints */
		uint32_t n = r->p[0] & 0x0f;
		struct rd t = *r;
		t.p++;
		if (n != 6)
			return field_fail(d, f, ML_BAD, "want 6 versions");
		uint8_t tmp[6];
		for (uint32_t i = 0; i < n; i++) {
			if ((rc = rd_uint(&t, &v)) != ML_OK)
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

	if ((rc = rd_raw(r, &p, &len)) != ML_OK)
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

static int decode_struct(const uint8_t **pos, const uint8_t *end, const struct msgdesc *d, void *m)
{
	uint8_t *base = m;
	struct rd r = { *pos, end };
	uint32_t n;
	int rc;

	memset(m, 0, d->size);
	if (*pos == NULL || end < *pos) {
		wire_fail("%s: no input", d->name);
		return ML_BAD;
	}
	if ((rc = rd_map(&r, &n)) != ML_OK) {
		wire_fail("%s: %s", d->name, rc == ML_AGAIN ? "truncated" : "not a map");
		return rc;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *k;
		size_t klen;
		if ((rc = rd_raw(&r, &k, &klen)) != ML_OK) {
			wire_fail("%s: %s", d->name, rc == ML_AGAIN ? "truncated" : "map key is not a string");
			return rc;
		}
		/* Go writes the keys in our descriptor's order: try key i first */
		const struct field *f = NULL;
		if (i < (uint32_t)d->nfields && key_is(d->fields[i].name, k, klen)) {
			f = &d->fields[i];
		} else {
			for (int j = 0; j < d->nfields; j++) {
				if (key_is(d->fields[j].name, k, klen)) {
					f = &d->fields[j];
					break;
				}
			}
		}
		if (f == NULL) {
			if ((rc = rd_skip(&r)) != ML_OK) {
				wire_fail("%s: unknown key: %s", d->name,
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

int ml_encode_push_pull_header(uint8_t *buf, size_t cap, const struct ml_push_pull_header *h)
{
	return encode_msg(buf, cap, -1, &d_pph, h);
}

int ml_encode_push_node(uint8_t *buf, size_t cap, const struct ml_push_node *n)
{
	return encode_msg(buf, cap, -1, &d_pnode, n);
}

int ml_decode_push_pull_header(const uint8_t **pos, const uint8_t *end, struct ml_push_pull_header *h)
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
	for (int i = 0; i < n; i++) {
		buf[o++] = (uint8_t)(parts[i].len >> 8);
		buf[o++] = (uint8_t)parts[i].len;
	}
	for (int i = 0; i < n; i++) {
		if (parts[i].len > 0)
			memcpy(buf + o, parts[i].p, parts[i].len);
		o += parts[i].len;
	}
	return (int)o;
}

int ml_compound_decode(const uint8_t *p, size_t len, struct ml_slice *parts, int max, int *trunc)
{
	if (trunc != NULL)
		*trunc = 0;
	if (p == NULL || len < 1) {
		wire_fail("compound: missing length byte");
		return -1;
	}
	size_t n = p[0];
	if (len - 1 < 2 * n) {
		wire_fail("compound: truncated length table");
		return -1;
	}
	if (n > (size_t)(max < 0 ? 0 : max)) {
		wire_fail("compound: %zu parts, room for %d", n, max);
		return -1;
	}
	size_t off = 1 + 2 * n;
	for (size_t i = 0; i < n; i++) {
		size_t plen = (size_t)p[1 + 2 * i] << 8 | p[2 + 2 * i];
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

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t ml_crc32(const uint8_t *p, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, crc_table_init);
	uint32_t crc = 0xffffffffu;
	for (size_t i = 0; i < len; i++)
		crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

int ml_crc_wrap(uint8_t *buf, size_t cap, const uint8_t *msg, size_t len)
{
	if (cap < 5 || len > cap - 5 || len > (size_t)INT32_MAX - 5)
		return -1;
	uint32_t crc = ml_crc32(msg, len);
	memmove(buf + 5, msg, len);
	buf[0] = ML_HAS_CRC;
	buf[1] = (uint8_t)(crc >> 24);
	buf[2] = (uint8_t)(crc >> 16);
	buf[3] = (uint8_t)(crc >> 8);
	buf[4] = (uint8_t)crc;
	return (int)(len + 5);
}

int ml_crc_check(const uint8_t *p, size_t len, struct ml_slice *msg)
{
	if (p == NULL || len < 5 || p[0] != ML_HAS_CRC) {
		wire_fail("crc: too short or not a crc message");
		return ML_BAD;
	}
	uint32_t want = (uint32_t)be_load(p + 1, 4);
	uint32_t got = ml_crc32(p + 5, len - 5);
	if (want != got) {
		wire_fail("crc: mismatch (header %08x, payload %08x)", want, got);
		return ML_BAD;
	}
	msg->p = p + 5;
	msg->len = len - 5;
	return ML_OK;
}

/* ---- compress ------------------------------------------------------------ */

/* type byte, fixmap, "Algo", 0, "Buf", raw32 header */
#define COMPRESS_HDR_MAX (1 + 1 + 5 + 1 + 4 + 5)

int ml_compress_encode(uint8_t *buf, size_t cap, const uint8_t *msg, size_t len)
{
	if (cap <= COMPRESS_HDR_MAX)
		return -1;
	int z = ml_lzw_compress(msg, len, buf + COMPRESS_HDR_MAX, cap - COMPRESS_HDR_MAX);
	if (z < 0)
		return -1;
	uint8_t hdr[COMPRESS_HDR_MAX];
	struct wbuf w = { hdr, sizeof(hdr), 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &w, wbuf_write);
	hdr[w.len++] = ML_COMPRESS;
	if (msgpack_pack_map(&pk, 2) != 0 || pack_key(&pk, "Algo") != 0 ||
	    msgpack_pack_uint8(&pk, 0) != 0 || pack_key(&pk, "Buf") != 0 ||
	    msgpack_pack_v4raw(&pk, (size_t)z) != 0)
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
		wire_fail("compress: Algo: unknown algorithm %u", c.algo);
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
		wire_fail("compress: Buf: bad LZW data or output too large");
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

static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* 4-byte view of an IPv4 or IPv4-mapped address, or NULL */
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
		if (close == NULL || parse_ip(s + 1, (size_t)(close - s - 1), &a) != 0 || a.len != 16)
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
