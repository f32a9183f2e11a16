/*
 * tests/unit/test_dns.c — the DNS codec and responder against an in-memory
 * catalog: name decoding (compression, loops, limits), query parsing,
 * EDNS0, truncation, the names answered and the negative answers.  The
 * responder reads the catalog through the agent's adapter
 * (agent/catalog_dns.h), its struct dns_source, as the agent does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/catalog.h"
#include "agent/catalog_dns.h"
#include "dns/dns.h"
#include "tests/unit/check.h"

/* ---- a query builder ---- */

static size_t put_name(uint8_t *p, const char *name)
{
	size_t o = 0;
	const char *s = name;
	while (*s) {
		const char *d = strchr(s, '.');
		size_t l = d ? (size_t)(d - s) : strlen(s);
		p[o++] = (uint8_t)l;
		memcpy(p + o, s, l);
		o += l;
		s += l;
		if (*s == '.')
			s++;
	}
	p[o++] = 0;
	return o;
}

static size_t mkquery(uint8_t *p, const char *name, uint16_t type, int edns_size)
{
	memset(p, 0, 12);
	p[0] = 0x12;
	p[1] = 0x34;
	p[2] = 0x01; /* RD */
	p[5] = 1;
	size_t o = 12 + put_name(p + 12, name);
	p[o++] = (uint8_t)(type >> 8);
	p[o++] = (uint8_t)type;
	p[o++] = 0;
	p[o++] = 1;
	if (edns_size > 0) {
		p[11] = 1;
		uint8_t opt[11] = {0, 0, 41, (uint8_t)(edns_size >> 8), (uint8_t)edns_size, 0, 0, 0,
		                   0, 0, 0};
		memcpy(p + o, opt, 11);
		o += 11;
	}
	return o;
}

/* ---- a response reader ---- */

struct resp {
	uint16_t flags, qd, an, ns, ar;
	int rcode;
	uint16_t types[512]; /* of answer records */
	int nt;
	uint16_t ns_type, ar_types[512];
	int nar;
	int opt;
};

static int parse_resp(const uint8_t *p, size_t len, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	if (len < 12)
		return -1;
	r->flags = (uint16_t)(p[2] << 8 | p[3]);
	r->rcode = r->flags & 0xF;
	r->qd = (uint16_t)(p[4] << 8 | p[5]);
	r->an = (uint16_t)(p[6] << 8 | p[7]);
	r->ns = (uint16_t)(p[8] << 8 | p[9]);
	r->ar = (uint16_t)(p[10] << 8 | p[11]);
	size_t off = 12;
	struct dns_name n;
	const char *why;
	for (int i = 0; i < r->qd; i++) {
		if (dns_name_decode(p, len, &off, &n, &why) < 0)
			return -1;
		off += 4;
	}
	int total = r->an + r->ns + r->ar;
	for (int i = 0; i < total; i++) {
		if (dns_name_decode(p, len, &off, &n, &why) < 0 || off + 10 > len)
			return -1;
		uint16_t t = (uint16_t)(p[off] << 8 | p[off + 1]);
		size_t rdl = (size_t)(p[off + 8] << 8 | p[off + 9]);
		off += 10;
		if (off + rdl > len)
			return -1;
		/* names inside SRV/SOA/NS rdata must decode too */
		size_t ro = off;
		if (t == DNS_T_SRV) {
			ro += 6;
			if (dns_name_decode(p, len, &ro, &n, &why) < 0)
				return -1;
		} else if (t == DNS_T_SOA || t == DNS_T_NS) {
			if (dns_name_decode(p, len, &ro, &n, &why) < 0)
				return -1;
		}
		off += rdl;
		if (i < r->an) {
			if (r->nt < 512)
				r->types[r->nt++] = t;
		} else if (i < r->an + r->ns) {
			r->ns_type = t;
		} else {
			if (t == DNS_T_OPT)
				r->opt++;
			else if (r->nar < 512)
				r->ar_types[r->nar++] = t;
		}
	}
	return off == len ? 0 : -1;
}

/* ---- fixtures ---- */

/* The source over the one catalog a test uses at a time (mkcat/dropcat). */
static struct catalog_dns *cat_dns;

static const struct dns_source *src(const struct catalog *c)
{
	return catalog_dns_source(cat_dns);
}

static void dropcat(struct catalog *c)
{
	catalog_dns_free(cat_dns);
	cat_dns = NULL;
	catalog_free(c);
}

static struct catalog *mkcat(int web_instances)
{
	struct catalog *c = catalog_new("n1");
	cat_dns = catalog_dns_new(c);
	char err[256];
	const char *n1 =
	        "{\"Node\":\"n1\",\"Address\":\"10.0.0.1\",\"Meta\":{\"rack\":\"r1\"},"
	        "\"Services\":[{\"ID\":\"db1\",\"Service\":\"db\",\"Tags\":[\"Primary\"],"
	        "\"Port\":5432},{\"ID\":\"bad\",\"Service\":\"bad\",\"Port\":1}],"
	        "\"Checks\":[{\"CheckID\":\"c\",\"Status\":\"critical\",\"ServiceID\":\"bad\"}]}";
	catalog_apply_node(c, "n1", n1, strlen(n1), 0, err, sizeof(err));
	for (int i = 0; i < web_instances; i++) {
		char node[32], doc[512];
		snprintf(node, sizeof(node), "web-node-%03d", i);
		snprintf(
		        doc, sizeof(doc),
		        "{\"Node\":\"%s\",\"Address\":\"10.1.%d.%d\",\"Services\":[{\"ID\":\"web\","
		        "\"Service\":\"web\",\"Tags\":[\"v1\"],\"Port\":%d}],\"Checks\":[]}",
		        node, i / 250, i % 250 + 1, 8000 + i);
		catalog_apply_node(c, node, doc, strlen(doc), 0, err, sizeof(err));
		catalog_set_alive(c, node, true);
	}
	return c;
}

static struct dns_responder *mkresp(bool truncate)
{
	struct dns_responder_config cfg = {
	        .domain = "consul.", .datacenter = "dc1", .node_name = "n1", .truncate = truncate};
	char err[128];
	struct dns_responder *r = dns_responder_new(&cfg, err, sizeof(err));
	if (r == NULL) {
		printf("responder: %s\n", err);
		exit(1);
	}
	return r;
}

static uint8_t out[65535];

static int ask(struct dns_responder *r, struct catalog *c, const char *name, uint16_t type,
               int edns, bool tcp, struct resp *res, size_t *outlen)
{
	uint8_t q[600];
	size_t ql = mkquery(q, name, type, edns);
	enum dns_action act =
	        dns_process(r, src(c), q, ql, tcp, 1700000000u, 42, out, sizeof(out), outlen);
	if (act != DNS_ACT_REPLY)
		return -1;
	return parse_resp(out, *outlen, res);
}

/* ---- tests: codec ---- */

static void test_name_decode_plain_and_compressed(void)
{
	uint8_t m[64] = {0};
	size_t o = 12 + put_name(m + 12, "web.consul");
	m[o++] = 3;
	memcpy(m + o, "foo", 3);
	o += 3;
	m[o++] = 0xC0;
	m[o++] = 12 + 4; /* -> "consul" */
	size_t off = 12;
	struct dns_name n;
	const char *why = "";
	CHECK(dns_name_decode(m, o, &off, &n, &why) == 0 && n.nlabels == 2, "plain name: %s", why);
	CHECK(off == 12 + 12, "offset after plain name: expected 24, got %zu", off);
	CHECK(dns_name_decode(m, o, &off, &n, &why) == 0, "compressed name: %s", why);
	CHECK(n.nlabels == 2 && n.len == 12, "foo.consul: expected 2 labels/12 bytes, got %u/%zu",
	      n.nlabels, n.len);
	CHECK(off == o, "offset after pointer: expected %zu, got %zu", o, off);
}

static void test_name_decode_rejects_loops(void)
{
	uint8_t m[32] = {0};
	m[12] = 0xC0;
	m[13] = 12; /* points at itself */
	size_t off = 12;
	struct dns_name n;
	const char *why = "";
	CHECK(dns_name_decode(m, 14, &off, &n, &why) < 0, "self pointer accepted");
	/* two pointers pointing at each other */
	m[12] = 1;
	m[13] = 'a';
	m[14] = 0xC0;
	m[15] = 16;
	m[16] = 0xC0;
	m[17] = 12;
	off = 16;
	CHECK(dns_name_decode(m, 18, &off, &n, &why) < 0, "pointer loop accepted");
	/* forward pointer */
	m[12] = 0xC0;
	m[13] = 20;
	off = 12;
	CHECK(dns_name_decode(m, 30, &off, &n, &why) < 0, "forward pointer accepted");
}

static void test_name_decode_limits(void)
{
	uint8_t m[600] = {0};
	size_t o = 12;
	for (int i = 0; i < 5; i++) { /* 5 x 64 bytes > 255 */
		m[o++] = 63;
		memset(m + o, 'a', 63);
		o += 63;
	}
	m[o++] = 0;
	size_t off = 12;
	struct dns_name n;
	const char *why = "";
	CHECK(dns_name_decode(m, o, &off, &n, &why) < 0, "name over 255 bytes accepted");
	m[12] = 0x40; /* extended label type */
	off = 12;
	CHECK(dns_name_decode(m, o, &off, &n, &why) < 0, "label type 01 accepted");
	m[12] = 10; /* runs past the end */
	off = 12;
	CHECK(dns_name_decode(m, 15, &off, &n, &why) < 0, "truncated label accepted");
}

static void test_query_parse_edns(void)
{
	uint8_t q[128];
	struct dns_query dq;
	size_t l = mkquery(q, "web.service.consul", DNS_T_A, 1232);
	CHECK(dns_query_parse(q, l, &dq) == 0, "query with OPT rejected");
	CHECK(dq.edns && dq.edns_size == 1232, "edns size: expected 1232, got %u", dq.edns_size);
	l = mkquery(q, "web.service.consul", DNS_T_A, 100);
	dns_query_parse(q, l, &dq);
	CHECK(dq.edns_size == 512, "small edns size raised: expected 512, got %u", dq.edns_size);
	q[l - 11 + 6] = 1; /* version 1 */
	CHECK(dns_query_parse(q, l, &dq) == DNS_RC_BADVERS, "edns version 1 not BADVERS");
	CHECK(dns_query_parse(q, 5, &dq) == -1, "short packet not dropped");
	l = mkquery(q, "x.consul", DNS_T_A, 0);
	q[2] |= 0x80;
	CHECK(dns_query_parse(q, l, &dq) == -1, "response not dropped");
}

/* ---- tests: answers ---- */

static void test_service_a_and_srv_with_additional(void)
{
	struct catalog *c = mkcat(2);
	struct dns_responder *r = mkresp(true);
	struct resp res;
	size_t len;
	CHECK(ask(r, c, "web.service.consul", DNS_T_A, 0, false, &res, &len) == 0, "parse A");
	CHECK(res.rcode == 0 && res.an == 2, "web A: expected 2 answers, got rcode %d an %u",
	      res.rcode, res.an);
	CHECK(res.flags & 0x0400, "AA not set");
	CHECK(ask(r, c, "WEB.Service.CONSUL", DNS_T_SRV, 0, false, &res, &len) == 0, "parse SRV");
	CHECK(res.an == 2 && res.nar == 2 && res.ar_types[0] == DNS_T_A,
	      "web SRV: expected 2 answers + 2 A additional, got %u + %d", res.an, res.nar);
	CHECK(ask(r, c, "_web._tcp.service.consul", DNS_T_SRV, 0, false, &res, &len) == 0 &&
	              res.an == 2,
	      "RFC 2782 _tcp: expected 2, got %u", res.an);
	CHECK(ask(r, c, "_web._v1.consul", DNS_T_SRV, 0, false, &res, &len) == 0 && res.an == 2,
	      "RFC 2782 without .service: expected 2, got %u", res.an);
	CHECK(ask(r, c, "_web._v2.service.consul", DNS_T_SRV, 0, false, &res, &len) == 0 &&
	              res.rcode == DNS_RC_NXDOMAIN,
	      "unknown tag: expected NXDOMAIN, got %d", res.rcode);
	CHECK(ask(r, c, "primary.db.service.dc1.consul", DNS_T_A, 0, false, &res, &len) == 0 &&
	              res.an == 1,
	      "tag (case-insensitive) + dc: expected 1, got %u rcode %d", res.an, res.rcode);
	dns_responder_free(r);
	dropcat(c);
}

static void test_negative_answers_carry_soa(void)
{
	struct catalog *c = mkcat(1);
	struct dns_responder *r = mkresp(true);
	struct resp res;
	size_t len;
	ask(r, c, "nope.service.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(res.rcode == DNS_RC_NXDOMAIN && res.ns == 1 && res.ns_type == DNS_T_SOA,
	      "unknown service: expected NXDOMAIN+SOA, got rcode %d ns %u", res.rcode, res.ns);
	ask(r, c, "bad.service.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(res.rcode == DNS_RC_NXDOMAIN, "critical service: expected NXDOMAIN, got %d",
	      res.rcode);
	ask(r, c, "web.service.consul", DNS_T_AAAA, 0, false, &res, &len);
	CHECK(res.rcode == 0 && res.an == 0 && res.ns_type == DNS_T_SOA,
	      "AAAA of v4-only service: expected NODATA+SOA, got rcode %d an %u", res.rcode,
	      res.an);
	ask(r, c, "example.com", DNS_T_A, 0, false, &res, &len);
	CHECK(res.rcode == DNS_RC_REFUSED, "outside domain: expected REFUSED, got %d", res.rcode);
	ask(r, c, "web.service.dc2.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(res.rcode == DNS_RC_NXDOMAIN, "other dc: expected NXDOMAIN, got %d", res.rcode);
	dns_responder_free(r);
	dropcat(c);
}

static void test_node_txt_and_apex(void)
{
	struct catalog *c = mkcat(0);
	struct dns_responder *r = mkresp(true);
	struct resp res;
	size_t len;
	ask(r, c, "n1.node.consul", DNS_T_ANY, 0, false, &res, &len);
	CHECK(res.an == 2 && res.types[0] == DNS_T_A && res.types[1] == DNS_T_TXT,
	      "node ANY: expected A+TXT, got %u answers", res.an);
	ask(r, c, "consul", DNS_T_SOA, 0, false, &res, &len);
	CHECK(res.an == 1 && res.types[0] == DNS_T_SOA, "apex SOA: got %u answers", res.an);
	ask(r, c, "consul", DNS_T_NS, 0, false, &res, &len);
	CHECK(res.an == 1 && res.types[0] == DNS_T_NS && res.nar == 1, "apex NS: got %u/%d", res.an,
	      res.nar);
	ask(r, c, "0a000001.addr.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(res.an == 1, "addr: expected 1 A, got %u", res.an);
	catalog_set_alive(c, "n1", false);
	ask(r, c, "n1.node.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(res.rcode == DNS_RC_NXDOMAIN, "dead node: expected NXDOMAIN, got %d", res.rcode);
	dns_responder_free(r);
	dropcat(c);
}

/* RFC 8020: a resolver minimising QNAMEs asks each name on the way down;
 * names with names below them answer NODATA (NOERROR, no records, SOA). */
static void test_empty_non_terminals_answer_nodata(void)
{
	static const char *const ent[] = {
	        "service.consul",  "node.consul",         "addr.consul",
	        "dc1.consul",      "service.dc1.consul",  "node.DC1.consul",
	        "addr.dc1.consul", "_tcp.service.consul", "_v1.service.dc1.consul",
	        "_tcp.consul",     "SERVICE.consul",
	};
	struct catalog *c = mkcat(1);
	struct dns_responder *r = mkresp(true);
	struct resp res;
	size_t len;
	for (size_t i = 0; i < sizeof(ent) / sizeof(ent[0]); i++) {
		for (int t = 0; t < 2; t++) {
			uint16_t type = t ? DNS_T_NS : DNS_T_A;
			CHECK(ask(r, c, ent[i], type, 0, false, &res, &len) == 0, "parse %s",
			      ent[i]);
			CHECK(res.rcode == DNS_RC_NOERROR && res.an == 0 && res.ns == 1 &&
			              res.ns_type == DNS_T_SOA,
			      "%s type %u: expected NOERROR, 0 answers, SOA; got rcode %d an %u ns "
			      "%u",
			      ent[i], type, res.rcode, res.an, res.ns);
		}
	}
	/* the names below them still resolve */
	ask(r, c, "web.service.dc1.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(res.rcode == 0 && res.an == 1, "web: expected 1 A, got rcode %d an %u", res.rcode,
	      res.an);
	ask(r, c, "_web._tcp.service.consul", DNS_T_SRV, 0, false, &res, &len);
	CHECK(res.rcode == 0 && res.an == 1, "_web._tcp: expected 1 SRV, got rcode %d an %u",
	      res.rcode, res.an);
	/* names with nothing below stay NXDOMAIN */
	static const char *const nx[] = {
	        "dc2.consul",   "service.dc2.consul",  "node.dc2.consul", "nope.consul",
	        "x.dc1.consul", "nope.service.consul", "zz.addr.consul",  "services.consul",
	};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++) {
		ask(r, c, nx[i], DNS_T_A, 0, false, &res, &len);
		CHECK(res.rcode == DNS_RC_NXDOMAIN && res.ns_type == DNS_T_SOA,
		      "%s: expected NXDOMAIN+SOA, got rcode %d", nx[i], res.rcode);
	}
	CHECK(dns_responder_stats(r)->nxdomain == sizeof(nx) / sizeof(nx[0]),
	      "nxdomain counter: expected %zu, got %llu", sizeof(nx) / sizeof(nx[0]),
	      (unsigned long long)dns_responder_stats(r)->nxdomain);
	dns_responder_free(r);
	dropcat(c);
}

static void test_udp_truncation_sets_tc_and_tcp_does_not(void)
{
	struct catalog *c = mkcat(300);
	struct dns_responder *r = mkresp(true);
	struct resp res;
	size_t len;
	ask(r, c, "web.service.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(len <= 512, "UDP answer over 512 bytes: %zu", len);
	CHECK(res.flags & 0x0200, "TC not set on a truncated UDP answer");
	CHECK(res.an > 0 && res.an < 300, "truncated count: got %u", res.an);
	ask(r, c, "web.service.consul", DNS_T_A, 4096, false, &res, &len);
	CHECK(len <= DNS_UDP_DEFAULT_MAX && res.opt == 1, "EDNS answer: len %zu opt %d", len,
	      res.opt);
	CHECK(res.an > 50 && res.an < 300, "EDNS 4096 (capped at 1232) holds more: got %u", res.an);
	ask(r, c, "web.service.consul", DNS_T_SRV, 0, true, &res, &len);
	CHECK(res.an == 300 && !(res.flags & 0x0200),
	      "TCP SRV: expected 300 answers without TC, got %u (flags %04x)", res.an, res.flags);
	dns_responder_free(r);
	r = mkresp(false);
	ask(r, c, "web.service.consul", DNS_T_A, 0, false, &res, &len);
	CHECK(!(res.flags & 0x0200) && res.an == 3,
	      "Consul mode: expected 3 answers without TC, got %u (flags %04x)", res.an, res.flags);
	dns_responder_free(r);
	dropcat(c);
}

/* A client (or a spoofer) asking for a 65000-byte EDNS buffer gets at most
 * the configured UDP size; TCP is unaffected. */
static void test_udp_answer_capped_whatever_edns_asks(void)
{
	struct catalog *c = mkcat(300);
	struct dns_responder *r = mkresp(true);
	struct resp res;
	size_t len;
	ask(r, c, "web.service.consul", DNS_T_A, 65000, false, &res, &len);
	CHECK(len <= DNS_UDP_DEFAULT_MAX && len > 1000 && (res.flags & 0x0200),
	      "default cap: len %zu (want 1000 < len <= %d, TC)", len, DNS_UDP_DEFAULT_MAX);
	dns_responder_free(r);
	struct dns_responder_config cfg = {.domain = "consul.",
	                                   .datacenter = "dc1",
	                                   .node_name = "n1",
	                                   .truncate = true,
	                                   .udp_max_size = 1232};
	char err[128];
	r = dns_responder_new(&cfg, err, sizeof(err));
	ask(r, c, "web.service.consul", DNS_T_A, 65000, false, &res, &len);
	CHECK(len <= 1232 && (res.flags & 0x0200), "1232 cap: len %zu (want <= 1232, TC)", len);
	ask(r, c, "web.service.consul", DNS_T_A, 65000, true, &res, &len);
	CHECK(res.an == 300, "TCP not capped: %u answers", res.an);
	dns_responder_free(r);
	cfg.udp_max_size = 100;
	CHECK(dns_responder_new(&cfg, err, sizeof(err)) == NULL && strstr(err, "512-65535"),
	      "a cap below 512 is refused: %s", err);
	dropcat(c);
}

static void test_malformed_gets_formerr_not_amplified(void)
{
	struct catalog *c = mkcat(0);
	struct dns_responder *r = mkresp(true);
	uint8_t q[64];
	size_t l = mkquery(q, "web.service.consul", DNS_T_A, 0);
	q[5] = 2; /* two questions, one present */
	size_t len;
	enum dns_action act = dns_process(r, src(c), q, l, false, 0, 1, out, sizeof(out), &len);
	CHECK(act == DNS_ACT_REPLY && len == 12 && (out[3] & 0xF) == DNS_RC_FORMERR,
	      "qdcount 2: expected 12-byte FORMERR, got act %d len %zu", act, len);
	l = mkquery(q, "web.service.consul", DNS_T_A, 0);
	q[12] = 0xC0;
	q[13] = 12;
	act = dns_process(r, src(c), q, l, false, 0, 1, out, sizeof(out), &len);
	CHECK(act == DNS_ACT_REPLY && (out[3] & 0xF) == DNS_RC_FORMERR,
	      "looping name: expected FORMERR, got rcode %d", out[3] & 0xF);
	dns_responder_free(r);
	dropcat(c);
}

static void test_answers_are_shuffled_by_seed(void)
{
	struct catalog *c = mkcat(20);
	struct dns_responder *r = mkresp(true);
	uint8_t q[64], a1[1500], a2[1500];
	size_t l = mkquery(q, "web.service.consul", DNS_T_A, 1400), n1, n2;
	dns_process(r, src(c), q, l, false, 0, 1, a1, sizeof(a1), &n1);
	dns_process(r, src(c), q, l, false, 0, 2, a2, sizeof(a2), &n2);
	CHECK(n1 == n2 && memcmp(a1, a2, n1) != 0, "different seeds gave the same order");
	dns_process(r, src(c), q, l, false, 0, 1, a2, sizeof(a2), &n2);
	CHECK(n1 == n2 && memcmp(a1, a2, n1) == 0, "same seed gave a different order");
	dns_responder_free(r);
	dropcat(c);
}

/* Nearest first: web-node-<i> is (100 - i) us away, except every fifth,
 * which has no estimate. */
static int64_t fake_distance(void *ctx, const char *node)
{
	int i = atoi(node + strlen("web-node-"));
	return i % 5 == 0 ? -1 : (int64_t)(100 - i) * 1000;
}

/* The last octet of each A record in the answer section, in order. */
static int answer_octets(const uint8_t *p, size_t len, int *v, int max)
{
	size_t off = 12;
	struct dns_name n;
	const char *why;
	if (dns_name_decode(p, len, &off, &n, &why) < 0)
		return -1;
	off += 4;
	int an = p[6] << 8 | p[7], k = 0;
	for (int i = 0; i < an && k < max; i++) {
		if (dns_name_decode(p, len, &off, &n, &why) < 0 || off + 10 > len)
			return -1;
		size_t rdl = (size_t)(p[off + 8] << 8 | p[off + 9]);
		if (p[off + 1] == DNS_T_A && rdl == 4)
			v[k++] = p[off + 10 + 3];
		off += 10 + rdl;
	}
	return k;
}

static void test_answers_nearest_first_unknown_last(void)
{
	struct catalog *c = mkcat(20);
	uint8_t q[64], a[1500];
	size_t l = mkquery(q, "web.service.consul", DNS_T_A, 1400), n;
	for (int on = 0; on < 2; on++) {
		struct dns_responder_config cfg = {.domain = "consul.",
		                                   .datacenter = "dc1",
		                                   .node_name = "n1",
		                                   .truncate = true,
		                                   .nearest_first = on};
		char err[128];
		struct dns_responder *r = dns_responder_new(&cfg, err, sizeof(err));
		REQUIRE(r != NULL, "responder: %s", err);
		catalog_dns_set_distance(cat_dns, fake_distance, NULL);
		int sorted_runs = 0;
		for (uint64_t seed = 1; seed <= 5; seed++) {
			dns_process(r, src(c), q, l, false, 0, seed, a, sizeof(a), &n);
			int v[32];
			int k = answer_octets(a, n, v, 32);
			REQUIRE(k == 20, "20 A records, got %d", k);
			/* 10.1.0.<i+1> is web-node-<i> */
			bool sorted = true;
			int want = 19; /* 19 18 17 16 14 ... 1: nearest first */
			for (int i = 0; i < 16; i++, want--) {
				if (want % 5 == 0)
					want--;
				sorted = sorted && v[i] - 1 == want;
			}
			for (int i = 16; i < 20; i++)
				sorted = sorted && (v[i] - 1) % 5 == 0;
			sorted_runs += sorted;
		}
		if (on)
			CHECK_INT(5, sorted_runs, "nearest first, unknown last, whatever the seed");
		else
			CHECK_INT(0, sorted_runs, "nearest_first off: shuffled only");
		dns_responder_free(r);
	}
	dropcat(c);
}

int main(void)
{
	RUN(test_name_decode_plain_and_compressed);
	RUN(test_name_decode_rejects_loops);
	RUN(test_name_decode_limits);
	RUN(test_query_parse_edns);
	RUN(test_service_a_and_srv_with_additional);
	RUN(test_negative_answers_carry_soa);
	RUN(test_node_txt_and_apex);
	RUN(test_empty_non_terminals_answer_nodata);
	RUN(test_udp_truncation_sets_tc_and_tcp_does_not);
	RUN(test_udp_answer_capped_whatever_edns_asks);
	RUN(test_malformed_gets_formerr_not_amplified);
	RUN(test_answers_are_shuffled_by_seed);
	RUN(test_answers_nearest_first_unknown_last);
	return check_exit_code();
}
