/*
 * tests/unit/test_server_rpc.c — agent/server_rpc.c over real sockets on
 * 127.0.0.1: endpoints on one libev loop, each behind its own KV sync
 * listener (kv_new, port 0) whose hand-off gives server RPC connections to
 * it, as the agent wires them. Every wait is a condition with a deadline.
 *
 * The seal is XChaCha20-Poly1305 from libsodium (the keyring's AES-GCM
 * needs AES-NI, which a CI machine may lack); the framing around it is the
 * one the agent uses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/server_rpc.h"
#include "agent/server_rpc_wire.h"
#include "check.h"
#include "kv/kv.h"
#include "kv/repl.h"
#include "lib/cursor.h"
#include "lib/log.h"

static struct ev_loop *loop;
static char tmpdir[] = "/tmp/rumor-test-rpc.XXXXXX";
static int dir_seq;

/* ------------------------------------------------------------- seal */

struct test_keys {
	uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
};
static struct test_keys key1, key2;

static int seal_encrypt(void *ctx, const uint8_t *msg, size_t len, const uint8_t *ad, size_t adlen,
                        uint8_t *out, size_t cap)
{
	struct test_keys *k = ctx;
	size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
	if (cap < nb + len + crypto_aead_xchacha20poly1305_ietf_ABYTES)
		return -1;
	randombytes_buf(out, nb);
	unsigned long long clen;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + nb, &clen, msg, len, ad, adlen, NULL, out,
	                                           k->key);
	return (int)(nb + clen);
}

static int seal_decrypt(void *ctx, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
                        uint8_t *out, size_t cap)
{
	struct test_keys *k = ctx;
	size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
	size_t ab = crypto_aead_xchacha20poly1305_ietf_ABYTES;
	if (len < nb + ab || cap < len - nb - ab)
		return -1;
	unsigned long long mlen;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, in + nb, len - nb, ad,
	                                               adlen, in, k->key) != 0)
		return -1;
	return (int)mlen;
}

static struct kv_seal seal_of(struct test_keys *k)
{
	struct kv_seal s = {k,
	                    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
	                            crypto_aead_xchacha20poly1305_ietf_ABYTES,
	                    seal_encrypt, seal_decrypt};
	return s;
}

/* ------------------------------------------------------------ nodes */

struct node {
	struct kv *kv;
	struct server_rpc *rpc;
	char addr[64];
	int raft_n;
	uint64_t raft_from;
	char raft_addr[64], raft_body[64];
	size_t raft_len;   /* the last RAFT message's length */
	uint64_t raft_sum; /* ... and its FNV-1a hash */
	int req_n;
	uint64_t req_conn, req_id;
	char req_node[64];
	int down_n; /* peer_down calls */
	bool down_refused;
	char down_addr[64];
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static void on_raft(void *ctx, uint64_t from_id, const char *from_addr, const uint8_t *p, size_t n)
{
	struct node *nd = ctx;
	nd->raft_n++;
	nd->raft_from = from_id;
	snprintf(nd->raft_addr, sizeof(nd->raft_addr), "%s", from_addr);
	snprintf(nd->raft_body, sizeof(nd->raft_body), "%.*s", (int)(n < 63 ? n : 63),
	         (const char *)p);
	nd->raft_len = n;
	nd->raft_sum = fnv(p, n);
}

/* Method 1: answered at once (status 7, "re:" + body); 2 and 3 wait for the
 * test to answer (or not); 4 drops every connection from inside the handler
 * (server_rpc_set_seal, as a keyring change does). */
static void on_request(void *ctx, uint64_t conn_id, uint64_t req_id, uint8_t method,
                       const char *from_node, const uint8_t *p, size_t n)
{
	struct node *nd = ctx;
	nd->req_n++;
	nd->req_conn = conn_id;
	nd->req_id = req_id;
	snprintf(nd->req_node, sizeof(nd->req_node), "%s", from_node);
	if (method == 1) {
		uint8_t out[256];
		memcpy(out, "re:", 3);
		size_t m = n < 200 ? n : 200;
		memcpy(out + 3, p, m);
		server_rpc_reply(nd->rpc, conn_id, req_id, 7, out, 3 + m);
	} else if (method == 4) {
		server_rpc_set_seal(nd->rpc, NULL);
	}
}

static void on_down(void *ctx, const char *addr, bool refused)
{
	struct node *nd = ctx;
	nd->down_n++;
	nd->down_refused = refused;
	snprintf(nd->down_addr, sizeof(nd->down_addr), "%s", addr);
}

static void adopt_cb(void *ctx, int fd, const char *peer, const uint8_t *buf, size_t len)
{
	struct node *nd = ctx;
	server_rpc_adopt(nd->rpc, fd, peer, buf, len);
}

/* A KV replica with its listener on 127.0.0.1 and a server RPC endpoint
 * behind it (id 0: a client). budget 0: the default. */
static bool node_start(struct node *nd, const char *name, uint64_t id, size_t budget)
{
	memset(nd, 0, sizeof(*nd));
	char dir[256], err[256];
	snprintf(dir, sizeof(dir), "%s/%s-%d", tmpdir, name, dir_seq++);
	mkdir(dir, 0700);
	struct kv_config kc = {.data_dir = dir,
	                       .node_name = name,
	                       .bind_addr = "127.0.0.1",
	                       .sync_port = 0,
	                       .map_size = 16u << 20};
	nd->kv = kv_new(loop, &kc, err, sizeof(err));
	if (!CHECK(nd->kv != NULL, "kv_new: %s", err))
		return false;
	snprintf(nd->addr, sizeof(nd->addr), "127.0.0.1:%d", kv_sync_port(nd->kv));
	struct server_rpc_config rc = {loop, id, id ? nd->addr : "", name, "127.0.0.1", budget, 0};
	struct server_rpc_handlers h = {nd, on_raft, on_request, on_down};
	nd->rpc = server_rpc_new(&rc, &h, err, sizeof(err));
	if (!CHECK(nd->rpc != NULL, "server_rpc_new: %s", err))
		return false;
	kv_set_handoff(nd->kv, adopt_cb, nd);
	return true;
}

static void node_seal(struct node *nd, struct test_keys *k)
{
	struct kv_seal s = seal_of(k);
	kv_set_seal(nd->kv, k ? &s : NULL);
	server_rpc_set_seal(nd->rpc, k ? &s : NULL);
}

static void node_stop(struct node *nd)
{
	server_rpc_free(nd->rpc);
	if (nd->kv)
		kv_free(nd->kv);
	nd->rpc = NULL;
	nd->kv = NULL;
}

static void tick_cb(struct ev_loop *l, ev_timer *t, int revents)
{
	(void)l;
	(void)t;
	(void)revents;
}

/* Run the loop until *flag is set or `secs` pass; the flag's value. */
static bool run_until(const int *flag, double secs)
{
	ev_timer tick;
	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	ev_now_update(loop);
	double end = ev_now(loop) + secs;
	while ((flag == NULL || !*flag) && ev_now(loop) < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return flag != NULL && *flag;
}

static void run_for(double secs)
{
	run_until(NULL, secs);
}

struct reply {
	int done;
	int status;
	char body[300];
};

static void reply_cb(void *ud, int status, const uint8_t *p, size_t n)
{
	struct reply *r = ud;
	r->done++;
	r->status = status;
	snprintf(r->body, sizeof(r->body), "%.*s", (int)n, p ? (const char *)p : "");
}

static int call(struct node *from, const char *to, uint8_t method, const char *body,
                int64_t timeout_ms, struct reply *r)
{
	memset(r, 0, sizeof(*r));
	return server_rpc_call(from->rpc, to, method, (const uint8_t *)body, strlen(body),
	                       timeout_ms, reply_cb, r);
}

static struct server_rpc_stats stats(struct node *nd)
{
	struct server_rpc_stats st;
	server_rpc_get_stats(nd->rpc, &st);
	return st;
}

/* ------------------------------------------------------------ tests */

static void test_raft_frames_carry_the_senders_hello(void)
{
	struct node a, b;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"vote", 4));
	CHECK_INT(0, server_rpc_send_raft(b.rpc, a.addr, (const uint8_t *)"ack", 3));
	CHECK(run_until(&b.raft_n, 3) && run_until(&a.raft_n, 3), "frames delivered");
	CHECK_INT(11, (long long)b.raft_from);
	CHECK_STR(a.addr, b.raft_addr);
	CHECK_STR("vote", b.raft_body);
	CHECK_INT(22, (long long)a.raft_from);
	CHECK_STR(b.addr, a.raft_addr);
	CHECK_STR("ack", a.raft_body);
	/* the connection is kept: a second frame does not dial again */
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"vote2", 5));
	int want = 2;
	for (int i = 0; i < 300 && b.raft_n < want; i++)
		run_for(0.01);
	CHECK_INT(2, b.raft_n);
	CHECK_INT(1, (long long)stats(&a).conns_out);
	CHECK_INT(1, (long long)stats(&b).conns_in);
	CHECK_INT(1, (long long)kv_stats(b.kv)->sync_handed_off);
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_call_reply_now_and_deferred(void)
{
	struct node a, b;
	struct reply r;
	if (!node_start(&a, "a", 0, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	REQUIRE_INT(0, call(&a, b.addr, 1, "ping", 2000, &r));
	CHECK_INT(0, r.done, "never inside the call");
	CHECK(run_until(&r.done, 3), "reply");
	CHECK_INT(7, r.status);
	CHECK_STR("re:ping", r.body);
	CHECK_STR("a", b.req_node);
	/* deferred: answered later by the test */
	REQUIRE_INT(0, call(&a, b.addr, 2, "later", 2000, &r));
	for (int i = 0; i < 300 && b.req_n < 2; i++)
		run_for(0.01);
	CHECK_INT(2, b.req_n, "request arrived");
	run_for(0.05);
	CHECK_INT(0, r.done);
	server_rpc_reply(b.rpc, b.req_conn, b.req_id, 9, (const uint8_t *)"done", 4);
	CHECK(run_until(&r.done, 3), "deferred reply");
	CHECK_INT(9, r.status);
	CHECK_STR("done", r.body);
	/* a client (id 0) may not send RAFT: the acceptor closes on it */
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"x", 1));
	run_for(0.2);
	CHECK_INT(0, b.raft_n);
	CHECK_INT(1, (long long)stats(&b).refused_proto);
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_call_times_out_and_late_reply_is_dropped(void)
{
	struct node a, b;
	struct reply r, r2;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	REQUIRE_INT(0, call(&a, b.addr, 3, "silence", 200, &r));
	CHECK(run_until(&r.done, 3), "timed out");
	CHECK_INT(SERVER_RPC_E_TIMEOUT, r.status);
	server_rpc_reply(b.rpc, b.req_conn, b.req_id, 1, NULL, 0);
	REQUIRE_INT(0, call(&a, b.addr, 1, "again", 2000, &r2));
	CHECK(run_until(&r2.done, 3), "second call");
	CHECK_INT(7, r2.status);
	CHECK_INT(1, r.done, "the timed-out call was not answered twice");
	CHECK_INT(1, (long long)stats(&a).calls_failed);
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_refused_connect_fails_calls_and_redials_later(void)
{
	struct node a;
	struct reply r, r2, r3;
	if (!node_start(&a, "a", 11, 0))
		goto out;
	/* a port nobody listens on: bind one, close it */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	socklen_t sl = sizeof(sin);
	bind(s, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(s, (struct sockaddr *)&sin, &sl);
	char dead[64];
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", ntohs(sin.sin_port));
	close(s);
	REQUIRE_INT(0, call(&a, dead, 1, "x", 2000, &r));
	CHECK(run_until(&r.done, 3), "failed");
	CHECK_INT(SERVER_RPC_E_UNSENT, r.status);
	CHECK_INT(1, (long long)stats(&a).conns_out);
	/* within 200 ms: no new dial, the call fails from the loop */
	REQUIRE_INT(0, call(&a, dead, 1, "y", 2000, &r2));
	CHECK_INT(0, r2.done);
	CHECK(run_until(&r2.done, 1), "failed again");
	CHECK_INT(SERVER_RPC_E_UNSENT, r2.status);
	CHECK_INT(1, (long long)stats(&a).conns_out);
	CHECK_INT(-1, server_rpc_send_raft(a.rpc, dead, (const uint8_t *)"v", 1));
	run_for(0.25);
	REQUIRE_INT(0, call(&a, dead, 1, "z", 2000, &r3));
	CHECK(run_until(&r3.done, 3), "third");
	CHECK_INT(2, (long long)stats(&a).conns_out, "dialled again after 200 ms");
	CHECK_INT(-1, call(&a, "not-an-address", 1, "x", 100, &r));
	CHECK_INT(-1, call(&a, "127.0.0.1:99999", 1, "x", 100, &r));
out:
	node_stop(&a);
}

/* peer_down: the peer's process closing our connection, then a refused
 * dial (server.c starts an election on it when the peer is the leader);
 * never for our own closes. */
static void test_peer_down_when_the_peer_goes(void)
{
	struct node a, b;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	REQUIRE_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"v", 1));
	CHECK(run_until(&b.raft_n, 3), "delivered");
	/* our own close (a keyring change closes every connection): silent */
	server_rpc_set_seal(a.rpc, NULL);
	run_for(0.1);
	CHECK_INT(0, a.down_n, "no peer_down for our own close");
	REQUIRE_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"w", 1));
	run_for(0.25); /* past the redial pause */
	REQUIRE_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"w", 1));
	int want = 2;
	for (int i = 0; i < 300 && b.raft_n < want; i++)
		run_for(0.01);
	CHECK_INT(2, b.raft_n, "connected again");
	CHECK_INT(0, server_rpc_probe(a.rpc, b.addr), "probing a live peer: up");
	CHECK_INT(0, a.down_n);
	char baddr[64];
	snprintf(baddr, sizeof(baddr), "%s", b.addr);
	node_stop(&b); /* its connections and its listener close */
	CHECK(run_until(&a.down_n, 3), "peer_down");
	CHECK_INT(1, a.down_n);
	CHECK_STR(baddr, a.down_addr);
	CHECK(!a.down_refused, "the peer closed it");
	int rc = server_rpc_probe(a.rpc, baddr);
	if (rc == 0) { /* the refusal came later: through peer_down */
		want = 2;
		for (int i = 0; i < 300 && a.down_n < want; i++)
			run_for(0.01);
		CHECK_INT(2, a.down_n);
		CHECK(a.down_refused, "refused, later");
	} else {
		CHECK_INT(1, rc, "refused at once");
		CHECK_INT(1, a.down_n, "not reported twice");
	}
	CHECK_INT(-1, server_rpc_probe(a.rpc, "not-an-address"));
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_free_fails_pending_calls_with_shutdown(void)
{
	struct node a, b;
	struct reply r;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	REQUIRE_INT(0, call(&a, b.addr, 3, "hang", 5000, &r));
	CHECK(run_until(&b.req_n, 3), "request arrived");
	server_rpc_free(a.rpc);
	a.rpc = NULL;
	CHECK_INT(1, r.done, "inside server_rpc_free");
	CHECK_INT(SERVER_RPC_E_SHUTDOWN, r.status);
	/* the acceptor sees the connection go */
	for (int i = 0; i < 300 && stats(&b).conns_open > 0; i++)
		run_for(0.01);
	CHECK_INT(0, (long long)stats(&b).conns_open);
out:
	node_stop(&a);
	node_stop(&b);
}

/* A reply function that frees the endpoint it came from. */
static struct server_rpc *free_me;
static void free_in_reply(void *ud, int status, const uint8_t *p, size_t n)
{
	reply_cb(ud, status, p, n);
	server_rpc_free(free_me);
}

static void test_free_from_inside_a_reply(void)
{
	struct node a, b;
	struct reply r, r2;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	memset(&r, 0, sizeof(r));
	memset(&r2, 0, sizeof(r2));
	free_me = a.rpc;
	REQUIRE_INT(0, server_rpc_call(a.rpc, b.addr, 1, (const uint8_t *)"q", 1, 2000,
	                               free_in_reply, &r));
	REQUIRE_INT(0, call(&a, b.addr, 3, "hang", 2000, &r2));
	CHECK(run_until(&r.done, 3), "reply");
	a.rpc = NULL;
	CHECK_INT(7, r.status);
	CHECK_INT(1, r2.done);
	CHECK_INT(SERVER_RPC_E_SHUTDOWN, r2.status);
	run_for(0.05);
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_connections_dropped_inside_a_handler(void)
{
	struct node a, b;
	struct reply r;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	REQUIRE_INT(0, call(&a, b.addr, 4, "drop", 2000, &r));
	CHECK(run_until(&r.done, 3), "failed");
	CHECK_INT(SERVER_RPC_E_TRANSPORT, r.status);
	CHECK_INT(0, (long long)stats(&b).conns_open);
	run_for(0.25); /* past the redial pause */
	REQUIRE_INT(0, call(&a, b.addr, 1, "again", 2000, &r));
	CHECK(run_until(&r.done, 3), "reply");
	CHECK_INT(7, r.status);
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_sealed_and_refusals(void)
{
	struct node a, b, c, d;
	struct reply r;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0) ||
	    !node_start(&c, "c", 33, 0) || !node_start(&d, "d", 44, 0))
		goto out;
	node_seal(&a, &key1);
	node_seal(&b, &key1);
	node_seal(&c, &key2);
	/* same key: works */
	REQUIRE_INT(0, call(&a, b.addr, 1, "sealed", 2000, &r));
	CHECK(run_until(&r.done, 3), "reply");
	CHECK_INT(7, r.status);
	CHECK_STR("re:sealed", r.body);
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"s", 1));
	CHECK(run_until(&b.raft_n, 3), "sealed raft");
	/* wrong key: the KV listener refuses before any hand-off */
	REQUIRE_INT(0, call(&c, b.addr, 1, "k2", 2000, &r));
	CHECK(run_until(&r.done, 3), "refused");
	CHECK_INT(SERVER_RPC_E_TRANSPORT, r.status);
	CHECK_INT(1, (long long)kv_stats(b.kv)->sync_refused_decrypt);
	/* plaintext to a keyring */
	REQUIRE_INT(0, call(&d, b.addr, 1, "plain", 2000, &r));
	CHECK(run_until(&r.done, 3), "refused");
	CHECK_INT(SERVER_RPC_E_TRANSPORT, r.status);
	CHECK_INT(1, (long long)kv_stats(b.kv)->sync_refused_plain);
	/* sealed to an agent without a keyring */
	REQUIRE_INT(0, call(&a, d.addr, 1, "to-plain", 2000, &r));
	CHECK(run_until(&r.done, 3), "refused");
	CHECK_INT(SERVER_RPC_E_TRANSPORT, r.status);
	CHECK_INT(1, (long long)kv_stats(d.kv)->sync_refused_sealed);
	CHECK_INT(1, (long long)stats(&b).conns_in, "nothing else was handed off");
	CHECK_INT(0, d.req_n + c.req_n);
out:
	node_stop(&a);
	node_stop(&b);
	node_stop(&c);
	node_stop(&d);
}

/* A socketpair adopted as if the KV listener had read `first`; the other
 * end is returned. */
static int adopt_pair(struct node *nd, const uint8_t *first, size_t len)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	server_rpc_adopt(nd->rpc, sv[0], "pair", first, len);
	return sv[1];
}

/* A whole plaintext frame: u32 length, type, payload. */
static size_t frame(uint8_t *out, uint8_t type, const uint8_t *p, size_t n)
{
	be32_put(out, (uint32_t)(1 + n));
	out[4] = type;
	memcpy(out + 5, p, n);
	return 5 + n;
}

static size_t hello_frame(uint8_t *out, uint64_t id, const char *addr, const char *node)
{
	struct server_rpc_hello h = {id, addr, strlen(addr), node, strlen(node)};
	uint8_t p[SERVER_RPC_HELLO_MAX];
	size_t n = server_rpc_encode_hello(p, sizeof(p), &h);
	return frame(out, SERVER_RPC_T_HELLO, p, n);
}

/* The peer's end saw EOF (or a reset) within 2 s. */
static bool closed_by_peer(int fd)
{
	for (int i = 0; i < 200; i++) {
		run_for(0.01);
		uint8_t b[256];
		ssize_t n = read(fd, b, sizeof(b));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			return true;
	}
	return false;
}

static void test_bounds_on_frames_and_connections(void)
{
	struct node b;
	if (!node_start(&b, "b", 22, 0))
		goto out;
	/* before HELLO, a frame may not pass KV_FRAME_MAX */
	uint8_t big[8];
	be32_put(big, KV_FRAME_MAX + 1);
	big[4] = SERVER_RPC_T_HELLO;
	int fd = adopt_pair(&b, big, 5);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(1, (long long)stats(&b).refused_proto);
	/* after HELLO, SERVER_RPC_FRAME_MAX */
	uint8_t buf[1024];
	size_t n = hello_frame(buf, 5, "127.0.0.1:1", "x");
	be32_put(buf + n, SERVER_RPC_FRAME_MAX + 1);
	buf[n + 4] = SERVER_RPC_T_RAFT;
	fd = adopt_pair(&b, buf, n + 5);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(2, (long long)stats(&b).refused_proto);
	/* a RAFT frame before HELLO */
	n = frame(buf, SERVER_RPC_T_RAFT, (const uint8_t *)"x", 1);
	fd = adopt_pair(&b, buf, n);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(3, (long long)stats(&b).refused_proto);
	/* a malformed HELLO (client id with an address) */
	n = frame(buf, SERVER_RPC_T_HELLO, (const uint8_t *)"\0\0\0\0\0\0\0\0\1x\1n", 12);
	fd = adopt_pair(&b, buf, n);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(4, (long long)stats(&b).refused_proto);
	/* through the KV listener: an oversized first frame never gets here */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)kv_sync_port(b.kv)),
	                          .sin_addr.s_addr = htonl(0x7f000001)};
	connect(s, (struct sockaddr *)&sin, sizeof(sin));
	run_for(0.05);
	be32_put(big, KV_FRAME_MAX + KV_SEAL_OVERHEAD_MAX + 1);
	CHECK_INT(5, (long long)write(s, big, 5));
	CHECK(closed_by_peer(s), "closed by the KV listener");
	close(s);
	CHECK_INT(4, (long long)stats(&b).conns_in);
	/* the table: SERVER_RPC_MAX_CONNS, then refused (none idle long enough) */
	int fds[SERVER_RPC_MAX_CONNS + 1];
	size_t open_before = stats(&b).conns_open;
	n = hello_frame(buf, 0, "", "c");
	for (int i = 0; i <= SERVER_RPC_MAX_CONNS; i++)
		fds[i] = adopt_pair(&b, buf, n);
	run_for(0.05);
	CHECK_INT(SERVER_RPC_MAX_CONNS, (long long)stats(&b).conns_open);
	CHECK_INT(1 + (long long)open_before, (long long)stats(&b).refused_conns);
	for (int i = 0; i <= SERVER_RPC_MAX_CONNS; i++)
		close(fds[i]);
	for (int i = 0; i < 300 && stats(&b).conns_open > 0; i++)
		run_for(0.01);
	CHECK_INT(0, (long long)stats(&b).conns_open);
out:
	node_stop(&b);
}

/* An accepted peer that never completes HELLO holds its slot 5 s, however
 * it trickles bytes. */
static void test_hello_deadline(void)
{
	struct node b;
	if (!node_start(&b, "b", 22, 0))
		goto out;
	uint8_t buf[600];
	size_t n = hello_frame(buf, 5, "127.0.0.1:1", "x");
	int fd = adopt_pair(&b, buf, 3);
	bool closed = false;
	for (size_t i = 3; i < n - 1 && !closed; i++) {
		run_for(0.5);
		closed = send(fd, buf + i, 1, MSG_NOSIGNAL) < 0 || stats(&b).conns_open == 0;
	}
	CHECK(closed || closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(0, (long long)stats(&b).conns_open);
	CHECK_INT(0, (long long)stats(&b).refused_proto, "a deadline, not a protocol error");
out:
	node_stop(&b);
}

static void test_plaintext_after_sealed_hello_is_refused(void)
{
	struct node b;
	if (!node_start(&b, "b", 22, 0))
		goto out;
	struct kv_seal s = seal_of(&key1);
	server_rpc_set_seal(b.rpc, &s);
	uint8_t plain[600];
	size_t n = hello_frame(plain, 5, "127.0.0.1:1", "x");
	struct kv_buf sealed = {0};
	REQUIRE(kv_frames_seal(&s, true, plain, n, &sealed) == 0, "seal");
	uint8_t raft[16];
	size_t m = frame(raft, SERVER_RPC_T_RAFT, (const uint8_t *)"r", 1);
	uint8_t both[1024];
	memcpy(both, sealed.p, sealed.len);
	memcpy(both + sealed.len, raft, m);
	int fd = adopt_pair(&b, both, sealed.len + m);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(1, (long long)stats(&b).refused_plain);
	CHECK_INT(0, b.raft_n);
	/* a frame sealed for the other direction does not open either */
	sealed.len = 0;
	REQUIRE(kv_frames_seal(&s, false, plain, n, &sealed) == 0, "seal");
	fd = adopt_pair(&b, sealed.p, sealed.len);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(1, (long long)stats(&b).refused_decrypt);
	kv_buf_free(&sealed);
out:
	node_stop(&b);
}

static void test_budget_bounds_sends_and_receives(void)
{
	struct node a, b;
	if (!node_start(&a, "a", 11, 1u << 20) || !node_start(&b, "b", 22, 1u << 20))
		goto out;
	size_t n = 2u << 20;
	uint8_t *p = calloc(1, n);
	CHECK_INT(-1, server_rpc_send_raft(a.rpc, b.addr, p, n), "over the budget");
	CHECK(stats(&a).sends_dropped >= 1, "counted");
	CHECK(stats(&a).buffered <= (1u << 20), "buffered %zu", stats(&a).buffered);
	free(p);
	/* a peer announcing a 4 MiB frame after HELLO */
	uint8_t buf[600];
	size_t m = hello_frame(buf, 5, "127.0.0.1:1", "x");
	be32_put(buf + m, 4u << 20);
	buf[m + 4] = SERVER_RPC_T_RAFT;
	int fd = adopt_pair(&b, buf, m + 5);
	CHECK(closed_by_peer(fd), "closed");
	close(fd);
	CHECK_INT(1, (long long)stats(&b).budget_closed);
	/* and a frame that fits still travels */
	p = calloc(1, 100u << 10);
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, p, 100u << 10));
	CHECK(run_until(&b.raft_n, 3), "delivered");
	free(p);
out:
	node_stop(&a);
	node_stop(&b);
}

/* ------------------------------------------------ messages in parts */

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

/* A 21 MiB InstallSnapshot-sized message travels in parts, sealed, while a
 * small RAFT frame sent after it still arrives; the sender's copy and the
 * receiver's assembly are released; the buffers stay under a 16 MiB budget
 * the message alone would break (a receiver needs room for a part twice,
 * sealed and opened, and its read buffer grows by doubling). */
static void test_large_raft_message_goes_in_parts(void)
{
	struct node a, b;
	if (!node_start(&a, "a", 11, 16u << 20) || !node_start(&b, "b", 22, 16u << 20))
		goto out;
	node_seal(&a, &key1);
	node_seal(&b, &key1);
	size_t n = (21u << 20) + 12345;
	uint8_t *p = pattern(n, 1);
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, p, n), "queued in parts");
	CHECK_INT(n, stats(&a).assembling, "the sender holds one copy");
	CHECK_INT(-1, server_rpc_send_raft(a.rpc, b.addr, p, n), "one message in parts at a time");
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, (const uint8_t *)"hb", 2), "small frame");
	size_t max_buffered = 0;
	for (int i = 0; i < 3000 && !(b.raft_n >= 2 && b.raft_len == n); i++) {
		run_for(0.01);
		if (stats(&a).buffered > max_buffered)
			max_buffered = stats(&a).buffered;
		if (stats(&b).buffered > max_buffered)
			max_buffered = stats(&b).buffered;
	}
	CHECK_INT(2, b.raft_n, "both messages delivered");
	CHECK_INT(n, b.raft_len, "the large one last, whole");
	CHECK(b.raft_sum == fnv(p, n), "byte for byte");
	CHECK_INT(11, (long long)b.raft_from);
	CHECK(max_buffered <= (16u << 20), "buffers stayed under the budget (max %zu)",
	      max_buffered);
	CHECK_INT(1, (long long)stats(&a).parted_out);
	CHECK_INT(1, (long long)stats(&b).parted_in);
	CHECK_INT(0, stats(&a).assembling, "sender's copy released");
	CHECK_INT(0, stats(&b).assembling, "receiver's assembly released");
	/* and the next one goes too */
	uint8_t *q = pattern(SERVER_RPC_PART_SIZE + 1, 2);
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, q, SERVER_RPC_PART_SIZE + 1));
	for (int i = 0; i < 3000 && b.raft_n < 3; i++)
		run_for(0.01);
	CHECK(b.raft_n == 3 && b.raft_len == SERVER_RPC_PART_SIZE + 1 &&
	              b.raft_sum == fnv(q, SERVER_RPC_PART_SIZE + 1),
	      "a message one byte over a part: two parts, whole");
	free(p);
	free(q);
out:
	node_stop(&a);
	node_stop(&b);
}

/* A message whose connection breaks half-way is dropped on both sides;
 * Raft sends it again. */
static void test_parts_abandoned_with_the_connection(void)
{
	struct node a, b;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	size_t n = 64u << 20;
	uint8_t *p = pattern(n, 3);
	CHECK_INT(0, server_rpc_send_raft(a.rpc, b.addr, p, n));
	for (int i = 0; i < 5000 && stats(&b).assembling == 0; i++)
		run_for(0.001);
	CHECK(stats(&b).assembling == n, "the receiver is assembling");
	node_stop(&a);
	for (int i = 0; i < 200 && stats(&b).assembling != 0; i++)
		run_for(0.01);
	CHECK_INT(0, stats(&b).assembling, "released when the sender went away");
	CHECK_INT(0, b.raft_n, "nothing half-made delivered");
	free(p);
out:
	node_stop(&a);
	node_stop(&b);
}

/* n bytes into a non-blocking socket while the loop reads the other end;
 * false if it is not all in within 5 s (or the peer closed). */
static bool write_all(int fd, const uint8_t *p, size_t n)
{
	for (int i = 0; i < 5000 && n > 0; i++) {
		ssize_t w = write(fd, p, n);
		if (w > 0) {
			p += w, n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return false;
		run_for(0.001);
	}
	return n == 0;
}

/* What the receiver refuses: PART from a client, a total a frame would
 * carry, a total over the assembly budget, a piece past the total, a total
 * that changes, an empty piece. Each closes the connection. */
static void test_parts_refused(void)
{
	struct node b;
	if (!node_start(&b, "b", 22, 0))
		return;
	struct {
		uint64_t id;
		uint32_t total1, total2;
		size_t piece1, piece2; /* 0: no second frame */
		const char *what;
		bool budget;
	} cases[] = {
	        {0, 8u << 20, 0, 16, 0, "PART from a client", false},
	        {5, SERVER_RPC_PART_SIZE, 0, 16, 0, "a total a RAFT frame carries", false},
	        {5, SERVER_RPC_MESSAGE_MAX + 1, 0, 16, 0, "a total over the largest message",
	         false},
	        {5, 8u << 20, 9u << 20, 16, 16, "a total that changes", false},
	        {5, SERVER_RPC_PART_SIZE + 8, 0, 16, 1, "a piece past the total", false},
	        {5, 8u << 20, 0, 0, 0, "an empty piece", false},
	};
	uint8_t *buf = calloc(1, 1u << 20);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct server_rpc_stats before = stats(&b);
		size_t m = hello_frame(buf, cases[i].id, cases[i].id ? "127.0.0.1:1" : "", "x");
		uint8_t part[64] = {0};
		be32_put(part, cases[i].total1);
		m += frame(buf + m, SERVER_RPC_T_PART, part, 4 + cases[i].piece1);
		if (cases[i].piece2 && cases[i].total2 == 0) {
			/* a second piece one byte longer than what is left: megabytes,
			 * written as the agent reads them */
			size_t left = cases[i].total1 - cases[i].piece1, pn = 4 + left + 1;
			uint8_t *big = calloc(1, 5 + pn);
			be32_put(big, (uint32_t)(1 + pn));
			big[4] = SERVER_RPC_T_PART;
			be32_put(big + 5, cases[i].total1);
			size_t fn = 5 + pn;
			int fd = adopt_pair(&b, buf, m);
			CHECK(write_all(fd, big, fn), "%s: written", cases[i].what);
			CHECK(closed_by_peer(fd), "%s: closed", cases[i].what);
			close(fd);
			free(big);
			goto counted;
		}
		if (cases[i].piece2) {
			be32_put(part, cases[i].total2);
			m += frame(buf + m, SERVER_RPC_T_PART, part, 4 + cases[i].piece2);
		}
		int fd = adopt_pair(&b, buf, m);
		CHECK(closed_by_peer(fd), "%s: closed", cases[i].what);
		close(fd);
counted:
		CHECK_INT(before.refused_proto + 1, (long long)stats(&b).refused_proto,
		          "%s: counted", cases[i].what);
		CHECK_INT(0, stats(&b).assembling, "%s: nothing held", cases[i].what);
		CHECK_INT(0, b.raft_n, "%s: nothing delivered", cases[i].what);
	}
	free(buf);
	node_stop(&b);
	/* the assembly budget, on both sides */
	struct node a, c;
	if (!node_start(&a, "a", 11, 0) || !node_start(&c, "c", 33, 0))
		goto out;
	server_rpc_free(a.rpc);
	struct server_rpc_config rc = {loop, 11, a.addr, "a", "127.0.0.1", 0, 6u << 20};
	struct server_rpc_handlers h = {&a, on_raft, on_request, on_down};
	char err[200];
	a.rpc = server_rpc_new(&rc, &h, err, sizeof(err));
	size_t n = 7u << 20;
	uint8_t *p = pattern(n, 4);
	CHECK_INT(-1, server_rpc_send_raft(a.rpc, c.addr, p, n), "over the sender's budget");
	CHECK(stats(&a).sends_dropped >= 1, "counted");
	free(p);
	server_rpc_free(c.rpc);
	rc = (struct server_rpc_config){loop, 33, c.addr, "c", "127.0.0.1", 0, 6u << 20};
	h.ctx = &c;
	c.rpc = server_rpc_new(&rc, &h, err, sizeof(err));
	kv_set_handoff(c.kv, adopt_cb, &c);
	uint8_t first[600];
	size_t m = hello_frame(first, 5, "127.0.0.1:1", "x");
	uint8_t part[20] = {0};
	be32_put(part, 7u << 20);
	m += frame(first + m, SERVER_RPC_T_PART, part, sizeof(part));
	int fd = adopt_pair(&c, first, m);
	CHECK(closed_by_peer(fd), "a first PART over the receiver's budget: closed");
	close(fd);
	CHECK_INT(1, (long long)stats(&c).budget_closed);
	CHECK_INT(0, stats(&c).assembling);
out:
	node_stop(&a);
	node_stop(&c);
}

/* ------------------------------------------------- KV sync beside it */

static struct node *peer_of_a;
static void m_broadcast(void *ctx, const char *key, size_t key_len, const uint8_t *msg, size_t len)
{
	(void)ctx;
	(void)key;
	(void)key_len;
	(void)msg;
	(void)len;
}
static void m_peers(void *ctx, kv_member_fn fn, void *ud)
{
	(void)ctx;
	struct kv_peer p = {"b", {127, 0, 0, 1}, 4, (uint16_t)kv_sync_port(peer_of_a->kv)};
	fn(ud, &p);
}
static bool m_lookup(void *ctx, const char *name, struct kv_peer *p)
{
	(void)ctx;
	if (strcmp(name, "b") != 0)
		return false;
	struct kv_peer q = {"b", {127, 0, 0, 1}, 4, (uint16_t)kv_sync_port(peer_of_a->kv)};
	*p = q;
	return true;
}

static int found(void *ud, const struct kv_entry *e)
{
	(void)e;
	*(int *)ud = 1;
	return 0;
}

static void test_kv_sync_still_works_on_the_same_port(void)
{
	struct node a, b;
	struct reply r;
	if (!node_start(&a, "a", 11, 0) || !node_start(&b, "b", 22, 0))
		goto out;
	node_seal(&a, &key1);
	node_seal(&b, &key1);
	REQUIRE_INT(0, call(&a, b.addr, 1, "first", 2000, &r));
	CHECK(run_until(&r.done, 3), "reply");
	kv_put(b.kv, "k", "v", 1, 0, NULL, NULL);
	run_for(0.05);
	peer_of_a = &b;
	struct kv_members m = {.broadcast = m_broadcast, .peers = m_peers, .lookup = m_lookup};
	kv_set_members(a.kv, &m);
	int have = 0;
	for (int i = 0; i < 50 && !have; i++) {
		kv_sync_now(a.kv);
		run_for(0.1);
		kv_get(a.kv, "k", 1, found, &have);
	}
	CHECK_INT(1, have, "the key came over a sealed sync session");
	CHECK(kv_stats(a.kv)->syncs_ok >= 1, "sync ok");
	REQUIRE_INT(0, call(&a, b.addr, 1, "after", 2000, &r));
	CHECK(run_until(&r.done, 3), "reply");
	CHECK_STR("re:after", r.body);
	kv_set_members(a.kv, NULL);
out:
	node_stop(&a);
	node_stop(&b);
}

static void test_handoff_unset_is_a_protocol_error(void)
{
	struct node b;
	if (!node_start(&b, "b", 22, 0))
		goto out;
	kv_set_handoff(b.kv, NULL, NULL);
	struct node a;
	struct reply r;
	if (!node_start(&a, "a", 11, 0))
		goto out;
	REQUIRE_INT(0, call(&a, b.addr, 1, "x", 2000, &r));
	CHECK(run_until(&r.done, 3), "failed");
	CHECK_INT(SERVER_RPC_E_TRANSPORT, r.status);
	CHECK_INT(0, (long long)kv_stats(b.kv)->sync_handed_off);
	CHECK_INT(0, (long long)stats(&b).conns_in);
	node_stop(&a);
out:
	node_stop(&b);
}

static void rm_rf(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
	if (sodium_init() < 0 || mkdtemp(tmpdir) == NULL)
		return 1;
	log_set_level(LOG_ERR);
	loop = ev_default_loop(0);
	randombytes_buf(key1.key, sizeof(key1.key));
	randombytes_buf(key2.key, sizeof(key2.key));
	RUN(test_raft_frames_carry_the_senders_hello);
	RUN(test_call_reply_now_and_deferred);
	RUN(test_call_times_out_and_late_reply_is_dropped);
	RUN(test_refused_connect_fails_calls_and_redials_later);
	RUN(test_peer_down_when_the_peer_goes);
	RUN(test_free_fails_pending_calls_with_shutdown);
	RUN(test_free_from_inside_a_reply);
	RUN(test_connections_dropped_inside_a_handler);
	RUN(test_sealed_and_refusals);
	RUN(test_bounds_on_frames_and_connections);
	RUN(test_hello_deadline);
	RUN(test_plaintext_after_sealed_hello_is_refused);
	RUN(test_budget_bounds_sends_and_receives);
	RUN(test_large_raft_message_goes_in_parts);
	RUN(test_parts_abandoned_with_the_connection);
	RUN(test_parts_refused);
	RUN(test_kv_sync_still_works_on_the_same_port);
	RUN(test_handoff_unset_is_a_protocol_error);
	rm_rf(tmpdir);
	return check_exit_code();
}
