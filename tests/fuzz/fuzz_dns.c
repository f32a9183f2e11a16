/*
 * tests/fuzz/fuzz_dns.c — the DNS query decoder and responder over
 * arbitrary bytes.
 *
 * Each input is answered as a UDP query and as a TCP query against a small
 * fixed catalog, and decoded as a name at every offset.  Invariants: no
 * crash or sanitizer report; a UDP answer never exceeds 512 bytes without
 * EDNS, nor the client's EDNS size (at most 4096 here); a reply always
 * starts with the query's ID and has QR set; a FORMERR reply is header-only
 * (12 bytes, plus an OPT when EDNS was read), so junk is not amplified.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/catalog.h"
#include "agent/catalog_dns.h"
#include "dns/dns.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_dns: %s:%d: %s\n", __FILE__, __LINE__, #c);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static struct catalog *cat;
static struct catalog_dns *cat_dns; /* the agent's adapter: the responder's source */
static struct dns_responder *resp;
static uint8_t out[65535];

/* Nearest first on (as the agent's default): a distance from the node's
 * name, every seventh unknown. */
static int64_t fuzz_distance(void *ctx, const char *node)
{
	size_t h = strlen(node) * 31u + (unsigned char)node[strlen(node) - 1];
	return h % 7 == 0 ? -1 : (int64_t)(h % 13) * 1000;
}

static void setup(void)
{
	if (cat != NULL)
		return;
	cat = catalog_new("n1");
	char err[256];
	const char *n1 = "{\"Node\":\"n1\",\"Address\":\"10.0.0.1\",\"Meta\":{\"a\":\"b\"},"
	                 "\"Services\":[{\"ID\":\"web\",\"Service\":\"web\",\"Tags\":[\"v1\"],"
	                 "\"Port\":80},{\"ID\":\"w6\",\"Service\":\"web\",\"Address\":\"::1\","
	                 "\"Port\":81}],\"Checks\":[]}";
	catalog_apply_node(cat, "n1", n1, strlen(n1), 0, err, sizeof(err));
	for (int i = 0; i < 40; i++) {
		char node[32], doc[300];
		snprintf(node, sizeof(node), "node-%02d", i);
		snprintf(doc, sizeof(doc),
		         "{\"Node\":\"%s\",\"Address\":\"10.0.1.%d\",\"Services\":[{\"ID\":\"web\","
		         "\"Service\":\"web\",\"Port\":%d}],\"Checks\":[]}",
		         node, i + 1, 9000 + i);
		catalog_apply_node(cat, node, doc, strlen(doc), 0, err, sizeof(err));
		catalog_set_alive(cat, node, true);
	}
	struct dns_responder_config cfg = {.domain = "consul.",
	                                   .alt_domain = "rumor.",
	                                   .datacenter = "dc1",
	                                   .node_name = "n1",
	                                   .truncate = true,
	                                   .nearest_first = true};
	resp = dns_responder_new(&cfg, err, sizeof(err));
	ASSERT(resp != NULL);
	cat_dns = catalog_dns_new(cat);
	catalog_dns_set_distance(cat_dns, fuzz_distance, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	for (int tcp = 0; tcp < 2; tcp++) {
		size_t len = 0;
		enum dns_action act =
		        dns_process(resp, catalog_dns_source(cat_dns), data, size, tcp, 1700000000u,
		                    size * 2654435761u + 1, out, sizeof(out), &len);
		if (act != DNS_ACT_REPLY)
			continue;
		ASSERT(len >= 12 && size >= 12);
		ASSERT(out[0] == data[0] && out[1] == data[1]);
		ASSERT(out[2] & 0x80);
		struct dns_query q;
		int prc = dns_query_parse(data, size, &q);
		if (!tcp) {
			size_t lim = q.edns ? q.edns_size : 512;
			ASSERT(len <= lim);
		}
		if (prc == DNS_RC_FORMERR)
			ASSERT(len == 12 || len == 23);
	}
	for (size_t off = 0; off < size && off < 300; off++) {
		struct dns_name n;
		const char *why;
		size_t o = off;
		if (dns_name_decode(data, size, &o, &n, &why) == 0) {
			ASSERT(o > off && o <= size);
			ASSERT(n.len >= 1 && n.len <= DNS_NAME_MAX);
		}
	}
	return 0;
}
