/*
 * dns/dns.c — see dns.h.
 *
 * The answer is written by a tiny builder (position <= limit <= capacity):
 * a record is appended whole or not at all, so running out of room is the
 * ordinary "truncated" case and never a realloc.  Owner names of answers are
 * pointers to the question (offset 12); names the responder makes up (SRV
 * targets, the SOA's mname/rname, NS targets) are a few labels followed by a
 * pointer to the domain's labels inside the question, so the domain is
 * written once per message.  The OPT record's 11 bytes are reserved before
 * the body is built, so an EDNS client always gets its OPT back.
 *
 * The names come from a struct dns_source (dns.h): one call fills the
 * responder's scratch array with references to the matching instances, the
 * shuffle moves those (8 bytes each), and only an instance whose record is
 * written is described (struct dns_instance: what the record needs and
 * nothing more).  A 1232-byte answer holds some 70 of a service's 300
 * instances; copying all 300 out of the catalog first cost 10-15% per
 * query.  The scratch arrays live in the responder (allocated once): a
 * query allocates nothing.
 *
 * Departures from Consul: TC is set by default when a UDP answer does not
 * fit (Consul drops records silently unless enable_truncate; -dns-truncate
 * =false restores that, with its 3-answer cap for clients without EDNS);
 * node meta TXT is not repeated in the additional section of SRV answers.
 */
#include "dns/dns.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cursor.h"
#include "lib/xalloc.h"

#define OPT_LEN 11
#define OUR_UDP_SIZE 4096 /* what we advertise we can receive (queries are small) */

/* One instance's place in a nearest-first answer. */
struct dns_near {
	int64_t d;  /* estimated RTT (ns); INT64_MAX: no estimate */
	uint32_t i; /* its place in the shuffle: ties keep it */
};

struct dns_responder {
	uint8_t domain[DNS_NAME_MAX + 1]; /* lowercased wire form */
	size_t domain_len;
	uint8_t domain_labels;
	uint8_t alt[DNS_NAME_MAX + 1];
	size_t alt_len;
	uint8_t alt_labels;
	char dc[64];
	size_t dc_len;
	char self[256];
	struct dns_responder_config cfg;
	struct dns_stats stats;
	/* per-query scratch, here so that a query allocates nothing */
	const void *scratch[DNS_INSTANCES_MAX];     /* the source's instance references */
	uint16_t target_off[DNS_INSTANCES_MAX];     /* where each SRV target name starts */
	struct dns_ip target_ip[DNS_INSTANCES_MAX]; /* and the address it stands for */
	struct dns_ip seen[DNS_INSTANCES_MAX];      /* addresses already answered */
	struct dns_near near[DNS_INSTANCES_MAX];    /* nearest-first: distance, position */
	const void *shuffled[DNS_INSTANCES_MAX];    /* nearest-first: scratch before the sort */
};

/* ------------------------------------------------------------ decoding */

int dns_name_decode(const uint8_t *msg, size_t msglen, size_t *off, struct dns_name *out,
                    const char **why)
{
	size_t pos = *off;
	size_t after = 0;    /* where the caller continues; 0 until a pointer is followed */
	size_t lowest = pos; /* a pointer must point before this */
	int jumps = 0;
	out->len = 0;
	out->nlabels = 0;
	for (;;) {
		if (pos >= msglen) {
			*why = "name runs past the end of the message";
			return -1;
		}
		uint8_t l = msg[pos];
		if ((l & 0xC0) == 0xC0) {
			if (pos + 1 >= msglen) {
				*why = "compression pointer cut short";
				return -1;
			}
			size_t target = be16_get(msg + pos) & 0x3FFF;
			if (target >= lowest) {
				*why = "compression pointer does not point backwards (loop)";
				return -1;
			}
			if (++jumps > DNS_LABELS_MAX) {
				*why = "too many compression pointers";
				return -1;
			}
			if (after == 0)
				after = pos + 2;
			lowest = target;
			pos = target;
			continue;
		}
		if ((l & 0xC0) != 0) {
			*why = "unsupported label type";
			return -1;
		}
		if (l == 0) {
			if (out->len + 1 > DNS_NAME_MAX) {
				*why = "name longer than 255 bytes";
				return -1;
			}
			out->wire[out->len++] = 0;
			*off = after ? after : pos + 1;
			return 0;
		}
		if (pos + 1 + l > msglen) {
			*why = "label runs past the end of the message";
			return -1;
		}
		if (out->len + 1 + l + 1 > DNS_NAME_MAX) {
			*why = "name longer than 255 bytes";
			return -1;
		}
		if (out->nlabels >= DNS_LABELS_MAX) {
			*why = "too many labels";
			return -1;
		}
		out->off[out->nlabels++] = (uint8_t)out->len;
		memcpy(out->wire + out->len, msg + pos, (size_t)l + 1);
		out->len += (size_t)l + 1;
		pos += (size_t)l + 1;
		if (after == 0)
			lowest = pos; /* still in the first run: pointers may go anywhere before */
	}
}

/* Skips one resource record at *off; fills type/class/ttl/rdata position. */
static int skip_rr(const uint8_t *msg, size_t len, size_t *off, struct dns_name *name,
                   uint16_t *type, uint16_t *klass, uint32_t *ttl, size_t *rdlen)
{
	const char *why;
	if (dns_name_decode(msg, len, off, name, &why) < 0)
		return -1;
	if (*off + 10 > len)
		return -1;
	const uint8_t *p = msg + *off;
	*type = be16_get(p);
	*klass = be16_get(p + 2);
	*ttl = be32_get(p + 4);
	*rdlen = be16_get(p + 8);
	*off += 10;
	if (*off + *rdlen > len)
		return -1;
	*off += *rdlen;
	return 0;
}

int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q)
{
	memset(q, 0, offsetof(struct dns_query, qname));
	q->qname.len = 0;
	q->qname.nlabels = 0;
	q->edns = false;
	q->edns_size = DNS_UDP_MIN;
	q->edns_version = 0;
	q->edns_do = false;
	q->question_end = 0;
	if (msg == NULL || len < DNS_HEADER_LEN)
		return -1;
	q->id = be16_get(msg);
	q->flags = be16_get(msg + 2);
	if (q->flags & 0x8000)
		return -1; /* a response: never answer it */
	uint16_t qd = be16_get(msg + 4), an = be16_get(msg + 6), ns = be16_get(msg + 8),
	         ar = be16_get(msg + 10);
	if (((q->flags >> 11) & 0xF) != 0)
		return DNS_RC_NOTIMP;
	if (qd != 1)
		return DNS_RC_FORMERR;
	size_t off = DNS_HEADER_LEN;
	const char *why;
	if (dns_name_decode(msg, len, &off, &q->qname, &why) < 0)
		return DNS_RC_FORMERR;
	if (off + 4 > len)
		return DNS_RC_FORMERR;
	q->qtype = be16_get(msg + off);
	q->qclass = be16_get(msg + off + 2);
	off += 4;
	q->question_end = off;
	struct dns_name scratch;
	uint16_t type, klass;
	uint32_t ttl;
	size_t rdlen;
	unsigned total = (unsigned)an + ns;
	for (unsigned i = 0; i < total; i++)
		if (skip_rr(msg, len, &off, &scratch, &type, &klass, &ttl, &rdlen) < 0)
			return DNS_RC_FORMERR;
	for (unsigned i = 0; i < ar; i++) {
		if (skip_rr(msg, len, &off, &scratch, &type, &klass, &ttl, &rdlen) < 0)
			return DNS_RC_FORMERR;
		if (type != DNS_T_OPT)
			continue;
		if (q->edns || scratch.len != 1)
			return DNS_RC_FORMERR; /* two OPTs, or an OPT not owned by the root */
		q->edns = true;
		q->edns_size = klass < DNS_UDP_MIN ? DNS_UDP_MIN : klass;
		q->edns_version = (uint8_t)((ttl >> 16) & 0xFF);
		q->edns_do = (ttl & 0x8000) != 0;
	}
	/* trailing garbage after the counted records is tolerated, as BIND does */
	if (q->edns && q->edns_version != 0)
		return DNS_RC_BADVERS;
	return 0;
}

/* ------------------------------------------------------------- builder */

struct bld {
	uint8_t *p;
	size_t pos, limit;
	bool full;
};

static void put(struct bld *b, const void *src, size_t n)
{
	if (b->full || b->pos + n > b->limit) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->pos, src, n);
	b->pos += n;
}

static void put8(struct bld *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put16(struct bld *b, uint16_t v)
{
	uint8_t x[2];
	be16_put(x, v);
	put(b, x, 2);
}

static void put32(struct bld *b, uint32_t v)
{
	uint8_t x[4];
	be32_put(x, v);
	put(b, x, 4);
}

static void put_ptr(struct bld *b, size_t off)
{
	put16(b, (uint16_t)(0xC000 | off));
}

/* Writes text as one or more labels split at dots (empty pieces skipped);
 * returns false if a piece is longer than a label may be. */
static bool put_labels(struct bld *b, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != '.')
			j++;
		if (j - i > DNS_LABEL_MAX)
			return false;
		if (j > i) {
			put8(b, (uint8_t)(j - i));
			put(b, s + i, j - i);
		}
		i = j + 1;
	}
	return true;
}

/* Starts a record owned by the name at owner_off; returns the rdlength's position. */
static size_t rr_begin(struct bld *b, size_t owner_off, uint16_t type, uint32_t ttl)
{
	put_ptr(b, owner_off);
	put16(b, type);
	put16(b, 1);
	put32(b, ttl);
	size_t at = b->pos;
	put16(b, 0);
	return at;
}

static void rr_end(struct bld *b, size_t at)
{
	if (b->full)
		return;
	be16_put(b->p + at, (uint16_t)(b->pos - at - 2));
}

/* ----------------------------------------------------------- responder */

/* The configured domain, lowercased once at start-up, in wire form: the
 * query's name is lowercased per query and compared to it with memcmp. */
static int domain_to_wire(const char *s, uint8_t *out, size_t *len, uint8_t *labels)
{
	size_t n = strlen(s), o = 0, i = 0;
	*labels = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != '.')
			j++;
		size_t l = j - i;
		if (l == 0 || l > DNS_LABEL_MAX || o + 1 + l + 1 > DNS_NAME_MAX)
			return -1;
		out[o++] = (uint8_t)l;
		for (size_t k = 0; k < l; k++)
			out[o++] = (uint8_t)tolower((unsigned char)s[i + k]);
		(*labels)++;
		i = j + 1;
	}
	out[o++] = 0;
	*len = o;
	return 0;
}

struct dns_responder *dns_responder_new(const struct dns_responder_config *cfg, char *err,
                                        size_t errlen)
{
	if (cfg->udp_max_size != 0 &&
	    (cfg->udp_max_size < DNS_UDP_MIN || cfg->udp_max_size > 65535)) {
		snprintf(err, errlen, "DNS UDP answer size limit %u is out of range (512-65535)",
		         cfg->udp_max_size);
		return NULL;
	}
	struct dns_responder *r = xcalloc(1, sizeof(*r));
	r->cfg = *cfg;
	if (domain_to_wire(cfg->domain ? cfg->domain : "consul.", r->domain, &r->domain_len,
	                   &r->domain_labels) < 0 ||
	    r->domain_labels == 0) {
		snprintf(err, errlen, "invalid DNS domain \"%s\"", cfg->domain ? cfg->domain : "");
		free(r);
		return NULL;
	}
	if (cfg->alt_domain != NULL && cfg->alt_domain[0] != '\0') {
		if (domain_to_wire(cfg->alt_domain, r->alt, &r->alt_len, &r->alt_labels) < 0 ||
		    r->alt_labels == 0) {
			snprintf(err, errlen, "invalid DNS alt domain \"%s\"", cfg->alt_domain);
			free(r);
			return NULL;
		}
	}
	snprintf(r->dc, sizeof(r->dc), "%s", cfg->datacenter ? cfg->datacenter : "dc1");
	for (char *p = r->dc; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	r->dc_len = strlen(r->dc);
	snprintf(r->self, sizeof(r->self), "%s", cfg->node_name ? cfg->node_name : "");
	r->cfg.domain = r->cfg.alt_domain = r->cfg.datacenter = r->cfg.node_name = NULL;
	if (r->cfg.udp_answer_limit == 0)
		r->cfg.udp_answer_limit = 3;
	return r;
}

void dns_responder_free(struct dns_responder *r)
{
	free(r);
}

const struct dns_stats *dns_responder_stats(const struct dns_responder *r)
{
	return &r->stats;
}

/* Everything one answer needs while it is built. */
struct ans {
	struct dns_responder *r;
	const struct dns_source *src;
	const struct dns_query *q;
	struct bld b;
	size_t domain_off; /* offset of the matched domain inside the question */
	uint16_t an, ns, ar;
	int rcode;
	bool truncated;
	uint32_t now_s;
	uint64_t rng;
};

static uint64_t rnd(struct ans *a)
{
	/* xorshift64* */
	uint64_t x = a->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	a->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Appends a whole record or nothing; returns whether it fitted. */
#define RR_TRY(a, body)                                                                            \
	({                                                                                         \
		size_t _save = (a)->b.pos;                                                         \
		body;                                                                              \
		bool _ok = !(a)->b.full;                                                           \
		if (!_ok) {                                                                        \
			(a)->b.pos = _save;                                                        \
			(a)->b.full = false;                                                       \
		}                                                                                  \
		_ok;                                                                               \
	})

static void w_soa(struct ans *a)
{
	size_t at = rr_begin(&a->b, a->domain_off, DNS_T_SOA, 0);
	put8(&a->b, 2);
	put(&a->b, "ns", 2);
	put_ptr(&a->b, a->domain_off);
	put8(&a->b, 10);
	put(&a->b, "hostmaster", 10);
	put_ptr(&a->b, a->domain_off);
	put32(&a->b, a->now_s);
	put32(&a->b, 3600);
	put32(&a->b, 600);
	put32(&a->b, 86400);
	put32(&a->b, 0);
	rr_end(&a->b, at);
}

static void soa_authority(struct ans *a)
{
	if (RR_TRY(a, w_soa(a)))
		a->ns++;
}

static bool add_ip(struct ans *a, size_t owner, const struct dns_ip *ip, uint32_t ttl,
                   uint16_t *count)
{
	uint16_t type = ip->len == 4 ? DNS_T_A : DNS_T_AAAA;
	bool ok = RR_TRY(a, {
		size_t at = rr_begin(&a->b, owner, type, ttl);
		put(&a->b, ip->b, ip->len);
		rr_end(&a->b, at);
	});
	if (ok)
		(*count)++;
	return ok;
}

static bool type_wants_ip(uint16_t qtype, const struct dns_ip *ip)
{
	if (ip->len == 4)
		return qtype == DNS_T_A || qtype == DNS_T_ANY;
	if (ip->len == 16)
		return qtype == DNS_T_AAAA || qtype == DNS_T_ANY;
	return false;
}

/* <label>.<kind>.<dc>.<domain> as a name; returns false if it cannot be written. */
static bool w_made_name(struct ans *a, const char *first, size_t firstlen, const char *kind)
{
	if (!put_labels(&a->b, first, firstlen))
		return false;
	size_t kl = strlen(kind);
	put8(&a->b, (uint8_t)kl);
	put(&a->b, kind, kl);
	put8(&a->b, (uint8_t)a->r->dc_len);
	put(&a->b, a->r->dc, a->r->dc_len);
	put_ptr(&a->b, a->domain_off);
	return true;
}

/* One TXT record per node meta pair, Consul's way: "key=value", or the
 * value alone when the key says rfc1035-; cut at 255 bytes (one
 * character-string) rather than split.  Stops at the first that does not
 * fit, and marks the answer truncated. */
static void node_txt(struct ans *a, const struct dns_node *n, size_t owner, uint16_t *count)
{
	for (size_t i = 0; i < n->nmeta; i++) {
		const char *k = "", *v = "";
		a->src->node_meta(a->src->ctx, n, i, &k, &v);
		char txt[256];
		int tl;
		if (strncmp(k, "rfc1035-", 8) == 0)
			tl = snprintf(txt, sizeof(txt), "%s", v);
		else
			tl = snprintf(txt, sizeof(txt), "%s=%s", k, v);
		if (tl < 0)
			continue;
		if (tl > 255)
			tl = 255;
		bool ok = RR_TRY(a, {
			size_t at = rr_begin(&a->b, owner, DNS_T_TXT, a->r->cfg.node_ttl);
			put8(&a->b, (uint8_t)tl);
			put(&a->b, txt, (size_t)tl);
			rr_end(&a->b, at);
		});
		if (!ok) {
			a->truncated = true;
			return;
		}
		(*count)++;
	}
}

/* <node>.node: a node gossip reports failed does not exist for DNS
 * (NXDOMAIN), whatever its published record says. */
static void answer_node(struct ans *a, const char *name, size_t len)
{
	struct dns_node n;
	if (!a->src->node(a->src->ctx, name, len, &n) || !n.alive) {
		a->rcode = DNS_RC_NXDOMAIN;
		soa_authority(a);
		return;
	}
	uint16_t qt = a->q->qtype;
	if (type_wants_ip(qt, &n.ip) &&
	    !add_ip(a, DNS_HEADER_LEN, &n.ip, a->r->cfg.node_ttl, &a->an))
		a->truncated = true;
	if (qt == DNS_T_TXT || qt == DNS_T_ANY)
		node_txt(a, &n, DNS_HEADER_LEN, &a->an);
	if (a->an == 0 && !a->truncated)
		soa_authority(a);
}

static bool ip_seen(const struct dns_ip *seen, size_t n, const struct dns_ip *ip)
{
	for (size_t i = 0; i < n; i++)
		if (seen[i].len == ip->len && memcmp(seen[i].b, ip->b, ip->len) == 0)
			return true;
	return false;
}

static bool near_less(const struct dns_near *a, const struct dns_near *b)
{
	return a->d != b->d ? a->d < b->d : a->i < b->i;
}

static void near_sift(struct dns_near *v, size_t root, size_t n)
{
	for (size_t c; (c = 2 * root + 1) < n; root = c) {
		if (c + 1 < n && near_less(&v[c], &v[c + 1]))
			c++;
		if (!near_less(&v[root], &v[c]))
			return;
		struct dns_near t = v[root];
		v[root] = v[c];
		v[c] = t;
	}
}

/* Heapsort: in place, no allocation (glibc's qsort may malloc), and the
 * keys are distinct (the position breaks ties), so stability is moot. */
static void near_sort(struct dns_near *v, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		near_sift(v, i, n);
	for (size_t end = n; end-- > 1;) {
		struct dns_near t = v[0];
		v[0] = v[end];
		v[end] = t;
		near_sift(v, 0, end);
	}
}

/*
 * Nearest first: the shuffled instances sorted by the source's estimate of
 * the round trip to their node. Ties (several instances on one node, or
 * none with an estimate) keep their shuffled order, so load still spreads
 * among equals; instances without an estimate go last, as Consul's ?near.
 */
static void sort_nearest(struct ans *a, size_t n)
{
	struct dns_responder *r = a->r;
	for (size_t i = 0; i < n; i++) {
		int64_t d = a->src->distance(a->src->ctx, r->scratch[i]);
		r->near[i] = (struct dns_near){.d = d < 0 ? INT64_MAX : d, .i = (uint32_t)i};
	}
	near_sort(r->near, n);
	memcpy(r->shuffled, r->scratch, n * sizeof(r->scratch[0]));
	for (size_t i = 0; i < n; i++)
		r->scratch[i] = r->shuffled[r->near[i].i];
}

/*
 * A service name (tag NULL: any tag): the instances the source allows, in
 * a Fisher-Yates shuffle driven by the query's seed, so that every client
 * spreads its load and the same seed gives the same answer (tests), then
 * nearest first when the configuration asks and the source can tell.  SRV
 * answers write every target first and their addresses afterwards as
 * additional records, which may be left out without TC (RFC 2181); A/AAAA
 * answers write each address once even when several instances share it.
 */
static void answer_service(struct ans *a, const char *svc, size_t svclen, const char *tag,
                           size_t taglen)
{
	struct dns_responder *r = a->r;
	size_t n = a->src->instances(a->src->ctx, svc, svclen, tag, taglen, r->cfg.only_passing,
	                             r->scratch, DNS_INSTANCES_MAX);
	if (n > DNS_INSTANCES_MAX)
		n = DNS_INSTANCES_MAX;
	if (n == 0) {
		a->rcode = DNS_RC_NXDOMAIN;
		soa_authority(a);
		return;
	}
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(rnd(a) % i);
		const void *t = r->scratch[i - 1];
		r->scratch[i - 1] = r->scratch[j];
		r->scratch[j] = t;
	}
	if (r->cfg.nearest_first && a->src->distance != NULL)
		sort_nearest(a, n);
	uint16_t qt = a->q->qtype;
	/* Consul's way on UDP without EDNS: at most udp_answer_limit answers */
	if (!r->cfg.truncate && a->b.limit <= DNS_UDP_MIN && !a->q->edns &&
	    n > r->cfg.udp_answer_limit)
		n = r->cfg.udp_answer_limit;
	uint32_t ttl = r->cfg.service_ttl;
	if (qt == DNS_T_SRV) {
		size_t written = 0;
		for (size_t i = 0; i < n; i++) {
			struct dns_instance d;
			const struct dns_instance *in = &d;
			a->src->instance(a->src->ctx, r->scratch[i], &d);
			uint16_t w = in->weight;
			size_t target = 0;
			bool ok = RR_TRY(a, {
				size_t at = rr_begin(&a->b, DNS_HEADER_LEN, DNS_T_SRV, ttl);
				put16(&a->b, 1);
				put16(&a->b, w);
				put16(&a->b, in->port);
				target = a->b.pos;
				bool named;
				if (in->own_ip) {
					char hex[33];
					size_t hl = 0;
					for (size_t k = 0; k < in->ip.len; k++)
						hl += (size_t)snprintf(hex + hl, sizeof(hex) - hl,
						                       "%02x", in->ip.b[k]);
					named = w_made_name(a, hex, hl, "addr");
				} else {
					named = w_made_name(a, in->node, strlen(in->node), "node");
				}
				if (!named)
					a->b.full = true;
				rr_end(&a->b, at);
			});
			if (!ok) {
				a->truncated = true;
				break;
			}
			a->an++;
			r->target_off[written] = (uint16_t)target;
			r->target_ip[written++] = in->ip;
		}
		for (size_t i = 0; i < written; i++) {
			if (r->target_ip[i].len == 0)
				continue;
			if (!add_ip(a, r->target_off[i], &r->target_ip[i], ttl, &a->ar))
				break; /* additional data is optional: no TC for it */
		}
		return;
	}
	if (qt != DNS_T_A && qt != DNS_T_AAAA && qt != DNS_T_ANY) {
		soa_authority(a);
		return;
	}
	size_t nseen = 0;
	for (size_t i = 0; i < n; i++) {
		struct dns_instance d;
		const struct dns_instance *in = &d;
		a->src->instance(a->src->ctx, r->scratch[i], &d);
		if (!type_wants_ip(qt, &in->ip) || ip_seen(r->seen, nseen, &in->ip))
			continue;
		if (!add_ip(a, DNS_HEADER_LEN, &in->ip, ttl, &a->an)) {
			a->truncated = true;
			break;
		}
		r->seen[nseen++] = in->ip;
	}
	if (a->an == 0 && !a->truncated)
		soa_authority(a);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* <hex-ip>.addr: the SRV targets of services with their own address point
 * here; the name is the address, so no source is asked. */
static void answer_addr(struct ans *a, const char *s, size_t len)
{
	struct dns_ip ip = {.len = 0};
	if (len == 8 || len == 32) {
		ip.len = (uint8_t)(len / 2);
		for (size_t i = 0; i < ip.len; i++) {
			int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
			if (h < 0 || l < 0) {
				ip.len = 0;
				break;
			}
			ip.b[i] = (uint8_t)(h << 4 | l);
		}
	}
	if (ip.len == 0) {
		a->rcode = DNS_RC_NXDOMAIN;
		soa_authority(a);
		return;
	}
	if (!type_wants_ip(a->q->qtype, &ip) ||
	    !add_ip(a, DNS_HEADER_LEN, &ip, a->r->cfg.service_ttl, &a->an))
		soa_authority(a);
}

static void answer_apex(struct ans *a)
{
	uint16_t qt = a->q->qtype;
	if (qt == DNS_T_SOA || qt == DNS_T_ANY) {
		/* the SOA is owned by the domain offset, which at the apex is 12 */
		if (RR_TRY(a, w_soa(a)))
			a->an++;
	}
	if (qt == DNS_T_NS || qt == DNS_T_ANY) {
		struct dns_node self;
		bool have_self = a->src->node(a->src->ctx, a->r->self, strlen(a->r->self), &self);
		size_t target = 0;
		bool ok = RR_TRY(a, {
			size_t at = rr_begin(&a->b, DNS_HEADER_LEN, DNS_T_NS, 0);
			target = a->b.pos;
			if (!w_made_name(a, a->r->self, strlen(a->r->self), "node"))
				a->b.full = true;
			rr_end(&a->b, at);
		});
		if (ok) {
			a->an++;
			if (have_self && self.ip.len != 0)
				add_ip(a, target, &self.ip, 0, &a->ar);
		}
	}
	if (a->an == 0)
		soa_authority(a);
}

/* True if the lowercased qname ends with dom; sets *below to labels before it. */
static bool match_domain(const struct dns_name *lc, const uint8_t *dom, size_t domlen,
                         uint8_t domlabels, uint8_t *below)
{
	if (domlen == 0 || lc->nlabels < domlabels)
		return false;
	uint8_t k = (uint8_t)(lc->nlabels - domlabels);
	size_t start = k < lc->nlabels ? lc->off[k] : lc->len - 1;
	if (lc->len - start != domlen || memcmp(lc->wire + start, dom, domlen) != 0)
		return false;
	*below = k;
	return true;
}

static bool label_is(const struct dns_name *n, uint8_t i, const char *s, size_t sl)
{
	const uint8_t *p = n->wire + n->off[i];
	return p[0] == sl && memcmp(p + 1, s, sl) == 0;
}

#define LBL(n, i) ((const char *)(n)->wire + (n)->off[i] + 1)
#define LLEN(n, i) ((size_t)(n)->wire[(n)->off[i]])

/* An empty non-terminal (RFC 8020, RFC 2308 NODATA): the name exists
 * because names exist below it, so NOERROR, no records, the SOA. */
static void answer_nodata(struct ans *a)
{
	a->rcode = DNS_RC_NOERROR;
	soa_authority(a);
}

static bool label_is_kind(const struct dns_name *n, uint8_t i)
{
	return label_is(n, i, "service", 7) || label_is(n, i, "node", 4) ||
	       label_is(n, i, "addr", 4);
}

/* "_x": the second label of an RFC 2782 name (_<svc>._<tag>). */
static bool label_is_underscore(const struct dns_name *n, uint8_t i)
{
	const uint8_t *p = n->wire + n->off[i];
	return p[0] > 1 && p[1] == '_';
}

/*
 * Routes a name by the nb labels below the domain.  The datacenter label is
 * optional, so "<x>.service.dc1" and "<x>.service" mean the same; a
 * datacenter other than ours is NXDOMAIN, never a forward (rumor answers
 * for one datacenter).  Anything unrecognised below the domain is NXDOMAIN
 * with the SOA, so negative caching works.
 *
 * Why empty non-terminals matter: a resolver that minimises QNAMEs (RFC
 * 9156; unbound's qname-minimisation-strict) asks "service.consul" before
 * "web.service.consul", and by RFC 8020 an NXDOMAIN there means nothing
 * below exists.  So "<dc>", "service", "node", "addr" (and the same under
 * "<dc>") answer NODATA: "node" always has this agent below it, "addr" any
 * address, "service" the services' names.  RFC 2782's middle label
 * ("_tcp", "_<tag>", with or without ".service") answers NODATA too, unless
 * a service has that name: knowing whether any service carries the tag
 * would mean a scan of the catalog on every query, and a NODATA where
 * nothing lies below only costs a resolver one more question.
 */
static void dispatch(struct ans *a, const struct dns_name *lc, uint8_t nb)
{
	uint8_t n = nb;
	if (n == 0) {
		answer_apex(a);
		return;
	}
	if (n == 1 && label_is(lc, 0, a->r->dc, a->r->dc_len)) {
		answer_nodata(a); /* <dc> */
		return;
	}
	/* the optional datacenter label */
	if (n >= 2 && label_is_kind(lc, (uint8_t)(n - 2))) {
		if (!label_is(lc, (uint8_t)(n - 1), a->r->dc, a->r->dc_len)) {
			a->rcode = DNS_RC_NXDOMAIN; /* another datacenter: none here */
			soa_authority(a);
			return;
		}
		n--;
	}
	if (n == 1 && (label_is_kind(lc, 0) || label_is_underscore(lc, 0))) {
		answer_nodata(a); /* service, node, addr, _tcp (each [.<dc>]) */
		return;
	}
	if (label_is(lc, (uint8_t)(n - 1), "service", 7)) {
		if (n == 2) {
			answer_service(a, LBL(lc, 0), LLEN(lc, 0), NULL, 0);
			if (a->rcode == DNS_RC_NXDOMAIN && label_is_underscore(lc, 0)) {
				/* _tcp.service: above _<svc>._tcp.service, keep the SOA */
				a->rcode = DNS_RC_NOERROR;
			}
			return;
		}
		if (n == 3) {
			const char *l0 = LBL(lc, 0), *l1 = LBL(lc, 1);
			size_t n0 = LLEN(lc, 0), n1 = LLEN(lc, 1);
			if (n0 > 1 && n1 > 1 && l0[0] == '_' && l1[0] == '_') {
				bool any = n1 == 4 && memcmp(l1, "_tcp", 4) == 0;
				answer_service(a, l0 + 1, n0 - 1, any ? NULL : l1 + 1,
				               any ? 0 : n1 - 1);
			} else {
				answer_service(a, l1, n1, l0, n0);
			}
			return;
		}
	} else if (label_is(lc, (uint8_t)(n - 1), "node", 4) && n >= 2) {
		char name[DNS_NAME_MAX + 1];
		size_t o = 0;
		for (uint8_t i = 0; i + 1 < n; i++) {
			if (i > 0)
				name[o++] = '.';
			memcpy(name + o, LBL(lc, i), LLEN(lc, i));
			o += LLEN(lc, i);
		}
		answer_node(a, name, o);
		return;
	} else if (label_is(lc, (uint8_t)(n - 1), "addr", 4) && n == 2) {
		answer_addr(a, LBL(lc, 0), LLEN(lc, 0));
		return;
	} else if (n == 2) {
		/* RFC 2782 without the .service label */
		const char *l0 = LBL(lc, 0), *l1 = LBL(lc, 1);
		size_t n0 = LLEN(lc, 0), n1 = LLEN(lc, 1);
		if (n0 > 1 && n1 > 1 && l0[0] == '_' && l1[0] == '_') {
			bool any = n1 == 4 && memcmp(l1, "_tcp", 4) == 0;
			answer_service(a, l0 + 1, n0 - 1, any ? NULL : l1 + 1, any ? 0 : n1 - 1);
			return;
		}
	}
	a->rcode = DNS_RC_NXDOMAIN;
	soa_authority(a);
}

/* Header plus (when the question was read) the question as sent. */
static void w_header(struct ans *a, const struct dns_query *q, bool with_question)
{
	put16(&a->b, q->id);
	put16(&a->b, 0);
	put16(&a->b, with_question ? 1 : 0);
	put16(&a->b, 0);
	put16(&a->b, 0);
	put16(&a->b, 0);
	if (with_question) {
		put(&a->b, q->qname.wire, q->qname.len);
		put16(&a->b, q->qtype);
		put16(&a->b, q->qclass);
	}
}

/* Writes the flags and the section counts into the header last, once the
 * body is known, and appends the OPT record into the room reserved for it
 * at the start: an EDNS client always gets its OPT back, even when the
 * answer was truncated.  The extended rcode (BADVERS) lives in the OPT. */
static void finish(struct ans *a, const struct dns_query *q, bool tc, bool opt)
{
	struct dns_responder *r = a->r;
	uint16_t flags = 0x8000;                /* QR */
	flags |= (uint16_t)(q->flags & 0x7800); /* opcode */
	flags |= 0x0400;                        /* AA */
	if (tc)
		flags |= 0x0200;
	flags |= (uint16_t)(q->flags & 0x0100); /* RD */
	if (r->cfg.recursor)
		flags |= 0x0080; /* RA */
	flags |= (uint16_t)(a->rcode & 0xF);
	if (opt) {
		/* root name, type OPT, our UDP size as the class, the extended
		 * rcode's high bits, version 0, no flags, no rdata */
		uint8_t o[OPT_LEN] = {0};
		be16_put(o + 1, DNS_T_OPT);
		be16_put(o + 3, OUR_UDP_SIZE);
		o[5] = (uint8_t)(a->rcode >> 4);
		/* the room was reserved: lift the limit by it */
		a->b.limit += OPT_LEN;
		put(&a->b, o, OPT_LEN);
		a->ar++;
	}
	uint8_t *p = a->b.p;
	be16_put(p + 2, flags);
	be16_put(p + 6, a->an);
	be16_put(p + 8, a->ns);
	be16_put(p + 10, a->ar);
}

/*
 * The order of decisions: drop what must not be answered (a response,
 * shorter than a header); header-only answers for a malformed query, so
 * junk is never amplified; then the size limit (TCP, or UDP capped at
 * udp_max_size whatever EDNS asks: a spoofed query must not buy a large
 * reflection); then domain, class and type checks before any lookup.
 */
enum dns_action dns_process(struct dns_responder *r, const struct dns_source *src,
                            const uint8_t *in, size_t inlen, bool tcp, uint32_t now_s,
                            uint64_t seed, uint8_t *out, size_t outcap, size_t *outlen)
{
	struct dns_query q;
	*outlen = 0;
	r->stats.queries++;
	int prc = dns_query_parse(in, inlen, &q);
	if (prc < 0 || outcap < DNS_UDP_MIN) {
		r->stats.dropped++;
		return DNS_ACT_DROP;
	}
	struct ans a;
	memset(&a, 0, sizeof(a));
	a.r = r;
	a.src = src;
	a.q = &q;
	a.now_s = now_s;
	a.rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
	a.b.p = out;
	size_t max = tcp ? (outcap < DNS_MSG_MAX ? outcap : DNS_MSG_MAX)
	                 : (q.edns ? q.edns_size : DNS_UDP_MIN);
	/* A spoofed query must not buy a bigger reflection than configured: the
	 * default 1232 (DNS Flag Day 2020) fits every path without IP
	 * fragmentation and keeps the answer/query ratio near 25x at worst. */
	size_t udp_cap = r->cfg.udp_max_size ? r->cfg.udp_max_size : DNS_UDP_DEFAULT_MAX;
	if (!tcp && max > udp_cap)
		max = udp_cap;
	if (max > outcap)
		max = outcap;
	a.b.limit = max;
	bool opt = q.edns || prc == DNS_RC_BADVERS;
	if (opt)
		a.b.limit -= OPT_LEN;
	if (prc > 0) {
		/* FORMERR/NOTIMP/BADVERS: header only (no amplification) */
		a.rcode = prc;
		if (prc == DNS_RC_FORMERR)
			r->stats.formerr++;
		w_header(&a, &q, prc == DNS_RC_BADVERS && q.question_end != 0);
		finish(&a, &q, false, opt);
		*outlen = a.b.pos;
		return DNS_ACT_REPLY;
	}
	w_header(&a, &q, true);
	if (a.b.full) {
		/* the question alone does not fit (cannot happen with 512 bytes) */
		r->stats.dropped++;
		return DNS_ACT_DROP;
	}
	struct dns_name lc = q.qname;
	for (size_t i = 0; i < lc.len; i++)
		lc.wire[i] = (uint8_t)tolower(lc.wire[i]);
	uint8_t below = 0;
	bool in_domain = false;
	if (match_domain(&lc, r->domain, r->domain_len, r->domain_labels, &below))
		in_domain = true;
	else if (match_domain(&lc, r->alt, r->alt_len, r->alt_labels, &below))
		in_domain = true;
	if (!in_domain) {
		if (r->cfg.recursor) {
			*outlen = 0;
			return DNS_ACT_FORWARD;
		}
		a.rcode = DNS_RC_REFUSED;
		r->stats.refused++;
	} else if (q.qclass != 1 && q.qclass != 255) {
		a.rcode = DNS_RC_REFUSED;
		r->stats.refused++;
	} else if (q.qtype == DNS_T_AXFR || q.qtype == DNS_T_IXFR) {
		a.rcode = DNS_RC_NOTIMP;
	} else {
		a.domain_off = DNS_HEADER_LEN +
		               (below < q.qname.nlabels ? q.qname.off[below] : q.qname.len - 1);
		dispatch(&a, &lc, below);
		if (a.rcode == DNS_RC_NXDOMAIN)
			r->stats.nxdomain++;
	}
	bool tc = a.truncated && !tcp && r->cfg.truncate;
	if (a.truncated)
		r->stats.truncated++;
	finish(&a, &q, tc, opt);
	*outlen = a.b.pos;
	return DNS_ACT_REPLY;
}
