/*
 * dns/dns.h — the DNS wire codec and the sans-I/O responder.
 *
 * Owns: decoding a query (header, one question, the EDNS0 OPT record) and
 * building the whole answer straight into the caller's fixed buffer.  The
 * responder never touches a socket, a clock or a random source: the driver
 * (dns/dns_server.c) passes the time (SOA serial) and a random seed (answer
 * shuffling) with every query, as NSD's query_process() gets its query and
 * answers into its packet buffer.
 *
 * Where the names come from: struct dns_source below, a table of callbacks
 * this module defines and the agent fills in (agent/catalog_dns.c answers
 * them from the catalog), as gossip/swim.h defines struct swim_io.  dns/
 * includes nothing of agent/; the source is asked two questions per query
 * at most, "healthy instances of service X with tag T" and "node N", and
 * then describes the instances and meta pairs an answer writes.
 *
 * Data flow: bytes -> dns_query_parse() (paranoid: every read is bounds
 * checked, compression pointers must point strictly backwards, so loops are
 * impossible, names and labels are length-limited) -> name split into the
 * labels below the domain -> source lookup into a scratch array owned by
 * the responder -> shuffle -> records appended through a builder whose limit
 * is the UDP size the client can take (512, or its EDNS0 size; 65535 on
 * TCP).  A record that does not fit is not written: on UDP the TC bit is set
 * (default) or, with truncate off, the answer silently keeps what fitted, as
 * Consul does.  No allocation happens per query, in the responder or (by
 * contract) in the source.
 *
 * Names answered (case-insensitive), below <domain> (default "consul."):
 *   <node>.node[.<dc>]                      A AAAA TXT(node meta) ANY
 *   [<tag>.]<svc>.service[.<dc>]            A AAAA ANY SRV
 *   _<svc>._<tag|tcp>[.service][.<dc>]      RFC 2782 (SRV; A/AAAA too)
 *   <hex-ip>.addr[.<dc>]                    A AAAA
 *   the domain itself                       SOA NS
 *   <dc>, {service,node,addr}[.<dc>],       NODATA: empty non-terminals
 *   _<x>[.service][.<dc>]                   (RFC 8020; see dispatch())
 * NXDOMAIN and NODATA answers carry the SOA in the authority section.
 * Outside the domain: REFUSED (or DNS_ACT_FORWARD when a recursor is set).
 *
 * Error convention: dns_query_parse() returns 0 or a DNS rcode (FORMERR...)
 * or -1 (drop silently); dns_process() returns an action and always leaves a
 * well-formed message in the buffer when it says DNS_ACT_REPLY.  The
 * responder's constructor writes a message into a caller-supplied buffer.
 */
#ifndef RUMOR_DNS_DNS_H
#define RUMOR_DNS_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	DNS_T_A = 1,
	DNS_T_NS = 2,
	DNS_T_CNAME = 5,
	DNS_T_SOA = 6,
	DNS_T_PTR = 12,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28,
	DNS_T_SRV = 33,
	DNS_T_OPT = 41,
	DNS_T_IXFR = 251,
	DNS_T_AXFR = 252,
	DNS_T_ANY = 255,
};

enum {
	DNS_RC_NOERROR = 0,
	DNS_RC_FORMERR = 1,
	DNS_RC_SERVFAIL = 2,
	DNS_RC_NXDOMAIN = 3,
	DNS_RC_NOTIMP = 4,
	DNS_RC_REFUSED = 5,
	DNS_RC_BADVERS = 16, /* extended: needs an OPT record */
};

#define DNS_HEADER_LEN 12
#define DNS_NAME_MAX 255 /* wire length, including the root label */
#define DNS_LABEL_MAX 63
#define DNS_LABELS_MAX 128
#define DNS_UDP_MIN 512
#define DNS_UDP_DEFAULT_MAX 1232 /* UDP answer cap unless configured (DNS Flag Day 2020) */
#define DNS_MSG_MAX 65535

/* A decoded name: wire form without compression, in the case it was sent,
 * plus where each label starts. */
struct dns_name {
	uint8_t wire[DNS_NAME_MAX + 1];
	size_t len;                  /* bytes in wire, root label included */
	uint8_t nlabels;             /* root excluded */
	uint8_t off[DNS_LABELS_MAX]; /* offset of each label's length byte */
};

/* What a query asked. */
struct dns_query {
	uint16_t id;
	uint16_t flags; /* as received */
	struct dns_name qname;
	uint16_t qtype, qclass;
	size_t question_end; /* offset just past the question */
	bool edns;           /* an OPT record was present */
	uint8_t edns_version;
	bool edns_do;
	uint16_t edns_size; /* client's UDP payload size, >= 512 */
};

/*
 * Decodes a (possibly compressed) name at msg[*off]; on success *off moves
 * past it (past the first pointer if there was one).  Pointers must point
 * strictly before the label that holds them, so a loop cannot be written;
 * labels of types 01/10 are rejected.  Returns 0, or -1 with a reason in *why.
 */
int dns_name_decode(const uint8_t *msg, size_t msglen, size_t *off, struct dns_name *out,
                    const char **why);

/*
 * Parses a query: header, exactly one question, and the additional section
 * (for one OPT record).  Returns 0 when the query is fine, a DNS rcode
 * (FORMERR, NOTIMP, BADVERS) to answer with, or -1 when nothing should be
 * sent back (shorter than a header, or a response).  q->id/flags are set
 * whenever the header could be read.
 */
int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q);

/* ------------------------------------------------------------ source */

#define DNS_INSTANCES_MAX 4096 /* instances one query considers, at most */

/* An IP address in network order: len 4 or 16, 0 when there is none. */
struct dns_ip {
	uint8_t b[16];
	uint8_t len;
};

/* One service instance, as the responder writes it into an answer. */
struct dns_instance {
	const char *node; /* its node's name as published (borrowed, see below) */
	struct dns_ip ip; /* the service's own address, else its node's */
	bool own_ip;      /* ip is the service's own: SRV target <hex>.addr.<dc> */
	uint16_t port;
	uint16_t weight; /* SRV weight for the instance's current health */
};

/* One node, as the responder needs it for <node>.node and NS answers. */
struct dns_node {
	bool alive; /* gossip says alive (or suspect) */
	struct dns_ip ip;
	size_t nmeta;    /* node meta pairs, read through dns_source.node_meta */
	const void *ref; /* the source's own handle, for node_meta */
};

/*
 * What the responder reads, filled in by whoever owns the data (the agent:
 * agent/catalog_dns.c).  Every callback runs inside dns_process(), on the
 * hot path: it must not allocate, block or call back into the responder.
 * Strings it hands out are borrowed and need to stay valid only until
 * dns_process() returns.  Names are counted (name[0..len)), may hold any
 * byte (a DNS label can hold NUL), and compare case-insensitively.
 */
struct dns_source {
	void *ctx;
	/* Instances of service svc with tag tag (NULL: any tag) that DNS may
	 * return: on alive nodes, not critical, and passing when only_passing.
	 * Writes up to max references (the source's own handles) into out in a
	 * stable order (the shuffle is the responder's) and returns how many
	 * matched in all, which may exceed max. */
	size_t (*instances)(void *ctx, const char *svc, size_t svclen, const char *tag,
	                    size_t taglen, bool only_passing, const void **out, size_t max);
	/* What an answer needs of the instance ref (from instances()). */
	void (*instance)(void *ctx, const void *ref, struct dns_instance *out);
	/* The node named name[0..len), alive or not: true and *out filled, or
	 * false when there is none. */
	bool (*node)(void *ctx, const char *name, size_t len, struct dns_node *out);
	/* Meta pair i < n->nmeta of a node the previous callback returned. */
	void (*node_meta)(void *ctx, const struct dns_node *n, size_t i, const char **key,
	                  const char **value);
	/* Optional: the estimated round trip (ns) from the answering agent to
	 * the node of instance ref, or -1 when it has no estimate (network
	 * coordinates). NULL: answers are only shuffled. */
	int64_t (*distance)(void *ctx, const void *ref);
};

/* --------------------------------------------------------- responder */

/* Responder settings; the strings are copied by dns_responder_new(). */
struct dns_responder_config {
	const char *domain;     /* "consul." (trailing dot optional) */
	const char *alt_domain; /* NULL or e.g. "rumor." */
	const char *datacenter; /* "dc1" */
	const char *node_name;  /* this agent, for NS answers */
	bool truncate;          /* UDP: set TC when records were left out */
	bool recursor;          /* names outside the domain -> DNS_ACT_FORWARD */
	bool only_passing;      /* drop warning instances too */
	uint32_t node_ttl;      /* seconds; Consul's default 0 */
	uint32_t service_ttl;
	unsigned udp_answer_limit; /* without EDNS, Consul-mode only; 3 */
	unsigned udp_max_size; /* cap on a UDP answer whatever EDNS asks; 0 = DNS_UDP_DEFAULT_MAX */
	/* service answers (SRV, A, AAAA) nearest first by the source's
	 * distance(): shuffled, then stably sorted, instances without an
	 * estimate last; false (or no distance()): shuffled only, as Consul */
	bool nearest_first;
};

struct dns_responder;

/* Returns a responder the caller frees with dns_responder_free(), or NULL
 * with a message in err (bad domain, UDP size out of range); aborts on OOM. */
struct dns_responder *dns_responder_new(const struct dns_responder_config *cfg, char *err,
                                        size_t errlen);
/* Frees r; NULL is a no-op. */
void dns_responder_free(struct dns_responder *r);

enum dns_action {
	DNS_ACT_DROP = 0, /* send nothing */
	DNS_ACT_REPLY,    /* out[0..*outlen) is the answer */
	DNS_ACT_FORWARD,  /* outside the domain and a recursor is configured */
};

/* Per-query counters (for metrics and tests). */
struct dns_stats {
	uint64_t queries, formerr, nxdomain, refused, truncated, dropped;
};

/*
 * Answers one query from src (borrowed for the call).  `tcp` lifts the UDP
 * size limit (the answer may use all of outcap, at most 65535).  `now_s` is
 * the wall-clock second (SOA serial); `seed` drives the shuffle.  outcap
 * must be at least 512.
 */
enum dns_action dns_process(struct dns_responder *r, const struct dns_source *src,
                            const uint8_t *in, size_t inlen, bool tcp, uint32_t now_s,
                            uint64_t seed, uint8_t *out, size_t outcap, size_t *outlen);

/* The responder's counters (owned by r). */
const struct dns_stats *dns_responder_stats(const struct dns_responder *r);

#endif
