/*
 * Tests for agent/cli.c and agent/httpc.c: members rendering and filtering,
 * flag parsing, address handling, httpc against a real one-shot HTTP server
 * running in a thread on 127.0.0.1 port 0, and whole commands through
 * cli_run() against that server.
 */
#define _GNU_SOURCE
#include "agent/cli/cli.h"
#include "agent/cli/cli_members.h"
#include "agent/cli/cli_operator.h"
#include "agent/cli/flags.h"
#include "agent/http/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/check.h"

#ifndef RUMOR_VERSION
#define RUMOR_VERSION "0.0.0"
#endif

/* ---- fixtures -------------------------------------------------------- */

static const char members_json[] =
        "[{\"Name\":\"web-2\",\"Addr\":\"10.0.0.12\",\"Port\":8301,"
        "\"Tags\":{\"role\":\"node\",\"dc\":\"dc1\",\"build\":\"0.1.0:abc\","
        "\"vsn\":\"2\"},\"Status\":1,\"ProtocolMin\":1,\"ProtocolMax\":5,"
        "\"ProtocolCur\":2,\"DelegateMin\":2,\"DelegateMax\":5,"
        "\"DelegateCur\":4},"
        "{\"Name\":\"consul-server-1\",\"Addr\":\"::1\",\"Port\":8301,"
        "\"Tags\":{\"role\":\"consul\",\"dc\":\"dc1\",\"build\":\"1.9.5\"},"
        "\"Status\":4,\"ProtocolMin\":1,\"ProtocolMax\":5,"
        "\"ProtocolCur\":3,\"DelegateMin\":2,\"DelegateMax\":5,"
        "\"DelegateCur\":4},"
        "{\"Name\":\"db\",\"Addr\":\"10.0.0.3\",\"Port\":7946,"
        "\"Tags\":{},\"Status\":3,\"ProtocolMin\":1,\"ProtocolMax\":5,"
        "\"ProtocolCur\":2,\"DelegateMin\":2,\"DelegateMax\":5,"
        "\"DelegateCur\":4}]";

static const char members_table[] =
        "Node             Address         Status  Type    Build  Protocol  "
        "DC   Partition  Segment\n"
        "consul-server-1  [::1]:8301      failed  server  1.9.5  3         "
        "dc1  default    <default>\n"
        "db               10.0.0.3:7946   left    client         2         "
        "     default    <default>\n"
        "web-2            10.0.0.12:8301  alive   client  0.1.0  2         "
        "dc1  default    <default>\n";

static json_t *load_members(void)
{
	json_error_t e;

	return json_loads(members_json, 0, &e);
}

/* ---- one-shot HTTP server -------------------------------------------- */

#define FAKE_MAX 4

struct fake {
	int lfd, port;
	const char *resp[FAKE_MAX];
	size_t split[FAKE_MAX]; /* write this many bytes, pause, then rest */
	int nresp;
	int hang; /* accept, read, never answer */
	char req[FAKE_MAX][4096];
	int nreq;
	char addr[64];
	pthread_t th;
};

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void read_request(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	char *end = NULL;

	while (n + 1 < cap) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, 5000) <= 0)
			break;
		r = recv(fd, buf + n, cap - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end != NULL) {
			const char *cl = strcasestr(buf, "Content-Length:");
			size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;

			if ((size_t)(buf + n - (end + 4)) >= want)
				break;
		}
	}
	buf[n] = '\0';
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int i;

	for (i = 0; i < f->nresp; i++) {
		struct pollfd p = {.fd = f->lfd, .events = POLLIN};
		int fd;

		if (poll(&p, 1, 5000) <= 0)
			break;
		fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			break;
		read_request(fd, f->req[i], sizeof(f->req[i]));
		f->nreq = i + 1;
		if (f->hang) {
			char b[64];
			struct pollfd q = {.fd = fd, .events = POLLIN};

			/* wait for the client to give up and close */
			while (poll(&q, 1, 5000) > 0 && recv(fd, b, 64, 0) > 0)
				;
		} else if (f->split[i] > 0) {
			write_all(fd, f->resp[i], f->split[i]);
			usleep(20000);
			write_all(fd, f->resp[i] + f->split[i], strlen(f->resp[i]) - f->split[i]);
		} else {
			write_all(fd, f->resp[i], strlen(f->resp[i]));
		}
		close(fd);
	}
	return NULL;
}

/* Listens on loopback (IPv6 ::1 if v6) port 0 and serves in a thread. */
static int fake_start_family(struct fake *f, int v6)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl = v6 ? sizeof(*sin6) : sizeof(*sin);
	int one = 1;

	f->lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	if (f->lfd < 0)
		return -1;
	setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&ss, 0, sizeof(ss));
	if (v6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
	} else {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	if (bind(f->lfd, (struct sockaddr *)&ss, sl) != 0 || listen(f->lfd, 8) != 0 ||
	    getsockname(f->lfd, (struct sockaddr *)&ss, &sl) != 0) {
		close(f->lfd);
		return -1;
	}
	f->port = ntohs(v6 ? sin6->sin6_port : sin->sin_port);
	snprintf(f->addr, sizeof(f->addr), v6 ? "[::1]:%d" : "127.0.0.1:%d", f->port);
	if (pthread_create(&f->th, NULL, fake_main, f) != 0) {
		close(f->lfd);
		return -1;
	}
	return 0;
}

static int fake_start(struct fake *f)
{
	return fake_start_family(f, 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
}

/* A port nothing listens on: bind port 0, note it, close. */
static int closed_port(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* Runs a command through cli_run, capturing both streams. */
struct run {
	int rc;
	char *out, *err;
	size_t outlen, errlen;
};

static void run_cli(struct run *r, int argc, const char *const *argv)
{
	FILE *o = open_memstream(&r->out, &r->outlen);
	FILE *e = open_memstream(&r->err, &r->errlen);

	r->rc = cli_run(argc, (char **)argv, o, e);
	fclose(o);
	fclose(e);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* ---- members rendering ----------------------------------------------- */

static void test_table_is_sorted_and_aligned(void)
{
	json_t *all = load_members(), *sel;
	char err[256], *t;

	REQUIRE(all != NULL, "fixture JSON did not parse");
	sel = cli_members_select(all, NULL, err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	t = cli_members_table(sel, 0);
	REQUIRE_STR(members_table, t);
	free(t);
	json_decref(sel);
	json_decref(all);
}

static void test_detailed_shows_sorted_tags(void)
{
	json_t *all = load_members(), *sel;
	char err[256], *t;

	sel = cli_members_select(all, "alive|failed", err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	t = cli_members_table(sel, 1);
	REQUIRE_STR("Node             Address         Status  Tags\n"
	            "consul-server-1  [::1]:8301      failed  "
	            "build=1.9.5,dc=dc1,role=consul\n"
	            "web-2            10.0.0.12:8301  alive   "
	            "build=0.1.0:abc,dc=dc1,role=node,vsn=2\n",
	            t);
	free(t);
	json_decref(sel);
	json_decref(all);
}

static void test_status_regex_filters(void)
{
	json_t *all = load_members(), *sel;
	char err[256];

	sel = cli_members_select(all, "^(alive|left)$", err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	REQUIRE_INT(2, json_array_size(sel));
	REQUIRE_STR("db", json_string_value(json_object_get(json_array_get(sel, 0), "Name")));
	json_decref(sel);
	sel = cli_members_select(all, "fail", err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	REQUIRE_INT(1, json_array_size(sel));
	json_decref(sel);
	sel = cli_members_select(all, "^leaving$", err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	REQUIRE_INT(0, json_array_size(sel));
	json_decref(sel);
	json_decref(all);
}

static void test_invalid_regex_is_an_error(void)
{
	json_t *all = load_members(), *sel;
	char err[256] = "";

	sel = cli_members_select(all, "(alive", err, sizeof(err));
	REQUIRE(sel == NULL, "expected NULL for an invalid regex");
	REQUIRE_HAS(err, "invalid status regex \"(alive\"");
	json_decref(all);
}

static void test_select_rejects_non_array(void)
{
	json_t *obj = json_object();
	char err[256] = "";

	REQUIRE(cli_members_select(obj, NULL, err, sizeof(err)) == NULL,
	        "expected NULL for an object");
	REQUIRE_HAS(err, "not a JSON array");
	json_decref(obj);
}

static void test_hostile_member_fields_do_not_break_rendering(void)
{
	json_error_t e;
	json_t *all = json_loads("[{\"Name\":\"evil\\u001b[2J\",\"Addr\":5,"
	                         "\"Port\":\"x\",\"Tags\":[1],\"Status\":99},"
	                         "7,{\"Name\":\"a\",\"Status\":\"alive\"}]",
	                         0, &e);
	json_t *sel;
	char err[256], *t;

	REQUIRE(all != NULL, "JSON did not parse: %s", e.text);
	sel = cli_members_select(all, NULL, err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	REQUIRE_INT(2, json_array_size(sel));
	t = cli_members_table(sel, 0);
	REQUIRE(t != NULL, "table NULL");
	REQUIRE(strchr(t, '\033') == NULL, "escape character leaked: %s", t);
	REQUIRE_HAS(t, "evil?[2J");
	REQUIRE_HAS(t, "unknown");
	REQUIRE_HAS(t, "alive");
	free(t);
	t = cli_members_table(sel, 1);
	REQUIRE(t != NULL, "detailed table NULL");
	free(t);
	json_decref(sel);
	json_decref(all);
}

static void test_json_format_parses_back(void)
{
	json_t *all = load_members(), *sel, *back;
	json_error_t e;
	char err[256], *t;

	sel = cli_members_select(all, "alive", err, sizeof(err));
	REQUIRE(sel != NULL, "select failed: %s", err);
	t = cli_members_json(sel);
	REQUIRE(t != NULL && t[strlen(t) - 1] == '\n', "missing final newline");
	REQUIRE_HAS(t, "\n  {");
	back = json_loads(t, 0, &e);
	REQUIRE(back != NULL, "output did not parse: %s", e.text);
	REQUIRE(json_equal(back, sel), "round trip differs: %s", t);
	json_decref(back);
	free(t);
	json_decref(sel);
	json_decref(all);
}

static void test_status_names_and_addresses(void)
{
	char buf[64];

	REQUIRE_STR("none", cli_member_status_name(0));
	REQUIRE_STR("alive", cli_member_status_name(1));
	REQUIRE_STR("leaving", cli_member_status_name(2));
	REQUIRE_STR("left", cli_member_status_name(3));
	REQUIRE_STR("failed", cli_member_status_name(4));
	REQUIRE_STR("unknown", cli_member_status_name(17));
	REQUIRE_INT(13, cli_format_hostport(buf, sizeof(buf), "10.1.2.3", 8301));
	REQUIRE_STR("10.1.2.3:8301", buf);
	cli_format_hostport(buf, sizeof(buf), "fe80::1", 7946);
	REQUIRE_STR("[fe80::1]:7946", buf);
}

static void test_table_render_pads_to_longest_plus_two(void)
{
	const char *cells[] = {"A", "Bee", "C", "longer", "x", "z"};
	char *t = cli_table_render(cells, 2, 3);

	REQUIRE_STR("A       Bee  C\nlonger  x    z\n", t);
	free(t);
}

/* ---- flags and addresses --------------------------------------------- */

static void test_flags_accept_both_forms(void)
{
	int det = 0, wan = 0, n = 0;
	const char *st = NULL, *addr = NULL;
	struct cli_flag flags[] = {
	        {"detailed", CLI_FLAG_BOOL, &det, NULL, ""},
	        {"wan", CLI_FLAG_BOOL, &wan, NULL, ""},
	        {"status", CLI_FLAG_STRING, &st, "<re>", ""},
	        {"http-addr", CLI_FLAG_STRING, &addr, "<a>", ""},
	};
	char *argv[] = {"--detailed",           "-status",    "alive", "one",
	                "-http-addr=1.2.3.4:1", "-wan=false", "--",    "-two"};
	char *args[8], err[128] = "";
	int r = cli_flags_parse(flags, 4, 8, argv, args, &n, err, sizeof(err));

	REQUIRE_INT(0, r);
	REQUIRE_INT(1, det);
	REQUIRE_INT(0, wan);
	REQUIRE_STR("alive", st);
	REQUIRE_STR("1.2.3.4:1", addr);
	REQUIRE_INT(2, n);
	REQUIRE_STR("one", args[0]);
	REQUIRE_STR("-two", args[1]);
}

static void test_flags_report_errors_and_help(void)
{
	int b = 0, n = 0;
	const char *s = NULL;
	struct cli_flag flags[] = {
	        {"b", CLI_FLAG_BOOL, &b, NULL, ""},
	        {"s", CLI_FLAG_STRING, &s, "<v>", ""},
	};
	char *unknown[] = {"-nope"}, *missing[] = {"x", "-s"}, *badbool[] = {"-b=maybe"},
	     *help[] = {"-b", "--help"}, *h[] = {"-h"}, *empty[] = {"-s="}, *bad[] = {"---x"};
	char *args[4], err[128];

	REQUIRE_INT(-1, cli_flags_parse(flags, 2, 1, unknown, args, &n, err, 128));
	REQUIRE_STR("flag provided but not defined: -nope", err);
	REQUIRE_INT(-1, cli_flags_parse(flags, 2, 2, missing, args, &n, err, 128));
	REQUIRE_STR("flag needs an argument: -s", err);
	REQUIRE_INT(-1, cli_flags_parse(flags, 2, 1, badbool, args, &n, err, 128));
	REQUIRE_HAS(err, "invalid boolean value \"maybe\" for -b");
	REQUIRE_INT(CLI_FLAGS_HELP, cli_flags_parse(flags, 2, 2, help, args, &n, err, 128));
	REQUIRE_INT(CLI_FLAGS_HELP, cli_flags_parse(flags, 2, 1, h, args, &n, err, 128));
	REQUIRE_INT(0, cli_flags_parse(flags, 2, 1, empty, args, &n, err, 128));
	REQUIRE_STR("", s);
	REQUIRE_INT(-1, cli_flags_parse(flags, 2, 1, bad, args, &n, err, 128));
	REQUIRE_HAS(err, "bad flag syntax");
}

static void test_http_addr_normalization(void)
{
	char out[64], err[128];

	REQUIRE_INT(0, cli_normalize_http_addr("http://127.0.0.1:8500/", out, sizeof(out), err,
	                                       sizeof(err)));
	REQUIRE_STR("127.0.0.1:8500", out);
	REQUIRE_INT(0, cli_normalize_http_addr("[::1]:8500", out, sizeof(out), err, sizeof(err)));
	REQUIRE_STR("[::1]:8500", out);
	REQUIRE_INT(-1, cli_normalize_http_addr("https://x:1", out, sizeof(out), err, sizeof(err)));
	REQUIRE_HAS(err, "only http://");
	REQUIRE_INT(-1, cli_normalize_http_addr("http://", out, sizeof(out), err, sizeof(err)));
}

static void test_default_http_addr_from_env(void)
{
	unsetenv("RUMOR_HTTP_ADDR");
	unsetenv("CONSUL_HTTP_ADDR");
	REQUIRE_STR("127.0.0.1:8500", cli_default_http_addr());
	setenv("CONSUL_HTTP_ADDR", "10.0.0.1:1", 1);
	REQUIRE_STR("10.0.0.1:1", cli_default_http_addr());
	setenv("RUMOR_HTTP_ADDR", "10.0.0.2:2", 1);
	REQUIRE_STR("10.0.0.2:2", cli_default_http_addr());
	unsetenv("RUMOR_HTTP_ADDR");
	unsetenv("CONSUL_HTTP_ADDR");
}

static void test_split_hostport(void)
{
	char h[64], p[8];

	REQUIRE_INT(0, httpc_split_hostport("127.0.0.1:8500", h, 64, p, 8));
	REQUIRE_STR("127.0.0.1", h);
	REQUIRE_STR("8500", p);
	REQUIRE_INT(0, httpc_split_hostport("[::1]:80", h, 64, p, 8));
	REQUIRE_STR("::1", h);
	REQUIRE_INT(0, httpc_split_hostport("localhost", h, 64, p, 8));
	REQUIRE_STR("80", p);
	REQUIRE_INT(0, httpc_split_hostport("fe80::1", h, 64, p, 8));
	REQUIRE_STR("fe80::1", h);
	REQUIRE_INT(-1, httpc_split_hostport("h:0", h, 64, p, 8));
	REQUIRE_INT(-1, httpc_split_hostport("h:65536", h, 64, p, 8));
	REQUIRE_INT(-1, httpc_split_hostport("h:8x", h, 64, p, 8));
	REQUIRE_INT(-1, httpc_split_hostport(":80", h, 64, p, 8));
	REQUIRE_INT(-1, httpc_split_hostport("[::1", h, 64, p, 8));
	REQUIRE_INT(-1, httpc_split_hostport("[::1]x", h, 64, p, 8));
	REQUIRE_INT(-1, httpc_split_hostport("", h, 64, p, 8));
}

static void test_escape(void)
{
	char buf[64];

	REQUIRE_INT(14, httpc_escape(buf, sizeof(buf), "[::1]:8301", HTTPC_ESCAPE_SEGMENT));
	REQUIRE_STR("%5B::1%5D:8301", buf);
	httpc_escape(buf, sizeof(buf), "a b/c?d", 0);
	REQUIRE_STR("a%20b%2Fc%3Fd", buf);
	httpc_escape(buf, sizeof(buf), "a/b", HTTPC_ESCAPE_KEEP_SLASH);
	REQUIRE_STR("a/b", buf);
	REQUIRE_INT(9, httpc_escape(buf, 4, "%%%", 0));
	REQUIRE_STR("%25", buf);
}

/* ---- httpc against a real server ------------------------------------- */

static void test_httpc_content_length(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_response r;
	char err[256];
	int rc;

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	            "X-Consul-Index: 42\r\nContent-Length: 5\r\n\r\nhello";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	rc = httpc_request(f.addr, "PUT", "/v1/kv/a%20b?cas=0", "xyz", 3, &r, err, sizeof(err));
	fake_stop(&f);
	REQUIRE(rc == 0, "request failed: %s", err);
	REQUIRE_INT(200, r.status);
	REQUIRE_STR("OK", r.reason);
	REQUIRE_INT(5, r.body_len);
	REQUIRE_STR("hello", r.body);
	REQUIRE_STR("42", httpc_response_header(&r, "x-consul-index"));
	REQUIRE(httpc_response_header(&r, "X-Missing") == NULL, "unexpected header");
	REQUIRE_HAS(f.req[0], "PUT /v1/kv/a%20b?cas=0 HTTP/1.1\r\n");
	REQUIRE_HAS(f.req[0], "Connection: close\r\n");
	REQUIRE_HAS(f.req[0], "Content-Length: 3\r\n");
	REQUIRE_HAS(f.req[0], "\r\n\r\nxyz");
	httpc_response_free(&r);
}

static void test_httpc_chunked_split_across_reads(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_response r;
	char err[256];
	int rc;

	f.resp[0] = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
	            "\r\n7\r\nno such\r\n4\r\n key\r\n0\r\n\r\n";
	f.split[0] = 60; /* cut inside the first chunk */
	REQUIRE(fake_start(&f) == 0, "server did not start");
	rc = httpc_request(f.addr, "GET", "/v1/kv/x", NULL, 0, &r, err, sizeof(err));
	fake_stop(&f);
	REQUIRE(rc == 0, "request failed: %s", err);
	REQUIRE_INT(404, r.status);
	REQUIRE_STR("no such key", r.body);
	REQUIRE_INT(11, r.body_len);
	REQUIRE(strstr(f.req[0], "Content-Length") == NULL, "GET sent a Content-Length: %s",
	        f.req[0]);
	httpc_response_free(&r);
}

static void test_httpc_body_until_close(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_response r;
	char err[256];
	int rc;

	f.resp[0] = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	rc = httpc_request(f.addr, "GET", "/", NULL, 0, &r, err, sizeof(err));
	fake_stop(&f);
	REQUIRE(rc == 0, "request failed: %s", err);
	REQUIRE_STR("until the end", r.body);
	httpc_response_free(&r);
}

static void test_httpc_ipv6_loopback(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_response r;
	char err[256];
	int rc;

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6";
	if (fake_start_family(&f, 1) != 0) {
		printf("# skipped %s: no IPv6 loopback\n", __func__);
		return;
	}
	rc = httpc_request(f.addr, "GET", "/", NULL, 0, &r, err, sizeof(err));
	fake_stop(&f);
	REQUIRE(rc == 0, "request failed: %s", err);
	REQUIRE_STR("v6", r.body);
	REQUIRE_HAS(f.req[0], "Host: [::1]:");
	httpc_response_free(&r);
}

static void test_httpc_truncated_body_is_an_error(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_response r;
	char err[256] = "";

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	REQUIRE_INT(-1, httpc_request(f.addr, "GET", "/", NULL, 0, &r, err, sizeof(err)));
	fake_stop(&f);
	REQUIRE_HAS(err, "unexpected EOF");
	REQUIRE(r.body == NULL, "body left set after failure");
	httpc_response_free(&r);
}

static void test_httpc_garbage_is_a_protocol_error(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_response r;
	char err[256] = "";

	f.resp[0] = "SSH-2.0-OpenSSH_9.2\r\n";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	REQUIRE_INT(-1, httpc_request(f.addr, "GET", "/", NULL, 0, &r, err, sizeof(err)));
	fake_stop(&f);
	REQUIRE_INT(HTTPC_E_PROTOCOL, r.error);
	REQUIRE_HAS(err, "malformed HTTP response");
	httpc_response_free(&r);
}

static void test_httpc_body_limit(void)
{
	struct fake f = {.nresp = 1};
	struct httpc_options o = {.max_body = 4};
	struct httpc_response r;
	char err[256] = "";

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	REQUIRE_INT(-1, httpc_request_opts(f.addr, "GET", "/", NULL, 0, &o, &r, err, sizeof(err)));
	fake_stop(&f);
	REQUIRE_INT(HTTPC_E_TOO_BIG, r.error);
	httpc_response_free(&r);
}

static void test_httpc_timeout(void)
{
	struct fake f = {.nresp = 1, .hang = 1};
	struct httpc_options o = {.timeout_ms = 200};
	struct httpc_response r;
	char err[256] = "";

	REQUIRE(fake_start(&f) == 0, "server did not start");
	REQUIRE_INT(-1, httpc_request_opts(f.addr, "GET", "/", NULL, 0, &o, &r, err, sizeof(err)));
	fake_stop(&f);
	REQUIRE_INT(HTTPC_E_TIMEOUT, r.error);
	REQUIRE_HAS(err, "i/o timeout");
	httpc_response_free(&r);
}

static void test_httpc_connection_refused(void)
{
	struct httpc_response r;
	char addr[64], want[96], err[256] = "";
	int port = closed_port();

	REQUIRE(port > 0, "no free port");
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	REQUIRE_INT(-1, httpc_request(addr, "GET", "/", NULL, 0, &r, err, sizeof(err)));
	snprintf(want, sizeof(want), "dial tcp %s: connection refused", addr);
	REQUIRE_STR(want, err);
	REQUIRE_INT(HTTPC_E_CONNECT, r.error);
	REQUIRE_INT(ECONNREFUSED, r.sys_errno);
	httpc_response_free(&r);
}

static void test_httpc_rejects_bad_input(void)
{
	struct httpc_response r;
	char err[256] = "";

	REQUIRE_INT(-1, httpc_request("nohost:", "GET", "/", NULL, 0, &r, err, sizeof(err)));
	REQUIRE_INT(HTTPC_E_ADDRESS, r.error);
	REQUIRE_INT(-1, httpc_request("127.0.0.1:1", "GET", "/a\r\nX: y", NULL, 0, &r, err,
	                              sizeof(err)));
	REQUIRE_INT(HTTPC_E_REQUEST, r.error);
}

/* ---- whole commands -------------------------------------------------- */

static char members_response[sizeof(members_json) + 128];

static void test_cmd_members_prints_table(void)
{
	struct fake f = {.nresp = 1};
	struct run r = {0};

	f.resp[0] = members_response;
	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {"members", "-http-addr", f.addr, "--token=s3cret"};
		run_cli(&r, 4, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(0, r.rc);
	REQUIRE_STR(members_table, r.out);
	REQUIRE_STR("", r.err);
	REQUIRE_HAS(f.req[0], "GET /v1/agent/members HTTP/1.1\r\n");
	REQUIRE_HAS(f.req[0], "X-Consul-Token: s3cret\r\n");
	run_free(&r);
}

/* A token with a line break would end the header and start another one:
 * rumor kv refuses it before connecting, as the other commands do. */
static void test_cmd_kv_refuses_token_with_newline(void)
{
	struct fake f = {.nresp = 0};
	struct run r = {0};

	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {
		        "kv", "get", "-http-addr", f.addr, "-token=s3cret\r\nX-Evil: 1", "app/key"};
		run_cli(&r, 6, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "invalid -token value");
	CHECK(f.req[0][0] == '\0', "a request was sent: %s", f.req[0]);
	run_free(&r);
}

static void test_cmd_members_no_match_exits_2(void)
{
	struct fake f = {.nresp = 1};
	struct run r = {0};
	char flag[96];

	f.resp[0] = members_response;
	REQUIRE(fake_start(&f) == 0, "server did not start");
	snprintf(flag, sizeof(flag), "-http-addr=http://%s", f.addr);
	{
		const char *argv[] = {"members", flag, "-status=leaving", "-wan"};
		run_cli(&r, 4, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(2, r.rc);
	REQUIRE_STR("", r.out);
	REQUIRE_HAS(f.req[0], "GET /v1/agent/members?wan=1 HTTP/1.1");
	run_free(&r);
}

static void test_cmd_members_json_format(void)
{
	struct fake f = {.nresp = 1};
	struct run r = {0};
	json_t *back;
	json_error_t e;

	f.resp[0] = members_response;
	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {"members", "-http-addr", f.addr, "-format",
		                      "json",    "-status",    "left"};
		run_cli(&r, 7, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(0, r.rc);
	back = json_loads(r.out, 0, &e);
	REQUIRE(back != NULL && json_array_size(back) == 1, "bad JSON output: %s", r.out);
	REQUIRE_STR("db", json_string_value(json_object_get(json_array_get(back, 0), "Name")));
	json_decref(back);
	run_free(&r);
}

static void test_cmd_members_bad_regex_and_format(void)
{
	struct run r = {0};
	const char *a1[] = {"members", "-status", "("};
	const char *a2[] = {"members", "-format=yaml"};
	const char *a3[] = {"members", "-bogus"};
	const char *a4[] = {"members", "-status"};

	run_cli(&r, 3, a1);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "invalid status regex");
	run_free(&r);
	run_cli(&r, 2, a2);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "invalid -format \"yaml\"");
	run_free(&r);
	run_cli(&r, 2, a3);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "flag provided but not defined: -bogus");
	run_free(&r);
	run_cli(&r, 2, a4);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "flag needs an argument: -status");
	run_free(&r);
}

static void test_cmd_agent_unreachable(void)
{
	struct run r = {0};
	char addr[64], want[128];
	int port = closed_port();

	REQUIRE(port > 0, "no free port");
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	setenv("RUMOR_HTTP_ADDR", addr, 1);
	{
		const char *argv[] = {"members"};
		run_cli(&r, 1, argv);
	}
	unsetenv("RUMOR_HTTP_ADDR");
	REQUIRE_INT(1, r.rc);
	snprintf(want, sizeof(want), "Error connecting to agent at %s: connection refused", addr);
	REQUIRE_HAS(r.err, want);
	run_free(&r);
}

static void test_cmd_join_counts_successes(void)
{
	struct fake f = {.nresp = 2};
	struct run r = {0};

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	f.resp[1] = "HTTP/1.1 500 Internal Server Error\r\n"
	            "Content-Length: 26\r\n\r\ndial tcp: no route to host";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {"join",       "-http-addr", f.addr,
		                      "[::1]:8301", "-wan",       "10.9.9.9"};
		run_cli(&r, 6, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(0, r.rc);
	REQUIRE_STR("Successfully joined cluster by contacting 1 nodes.\n", r.out);
	REQUIRE_STR("Error joining address '10.9.9.9': dial tcp: no "
	            "route to host\n",
	            r.err);
	REQUIRE_HAS(f.req[0], "PUT /v1/agent/join/%5B::1%5D:8301?wan=1 HTTP/1.1");
	REQUIRE_HAS(f.req[1], "PUT /v1/agent/join/10.9.9.9?wan=1 HTTP/1.1");
	run_free(&r);
}

static void test_cmd_join_none_joined(void)
{
	struct run r = {0};
	char flag[64];
	int port = closed_port();
	const char *noargs[] = {"join"};

	snprintf(flag, sizeof(flag), "-http-addr=127.0.0.1:%d", port);
	{
		const char *argv[] = {"join", flag, "10.0.0.1"};
		run_cli(&r, 3, argv);
	}
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "Error joining address '10.0.0.1': ");
	REQUIRE_HAS(r.err, "connection refused");
	REQUIRE_HAS(r.err, "Failed to join any nodes.\n");
	run_free(&r);
	run_cli(&r, 1, noargs);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "At least one address");
	run_free(&r);
}

static void test_cmd_leave_and_force_leave(void)
{
	struct fake f = {.nresp = 2};
	struct run r = {0};

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	f.resp[1] = "HTTP/1.1 500 Internal Server Error\r\n"
	            "Content-Length: 20\r\n\r\nno such member: n/1\n";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {"leave", "-http-addr", f.addr};
		run_cli(&r, 3, argv);
	}
	REQUIRE_INT(0, r.rc);
	REQUIRE_STR("Graceful leave complete\n", r.out);
	run_free(&r);
	{
		const char *argv[] = {"force-leave", "-prune", "-http-addr", f.addr, "n/1"};
		run_cli(&r, 5, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(1, r.rc);
	REQUIRE_STR("Error force leaving: Unexpected response code: 500 "
	            "(no such member: n/1)\n",
	            r.err);
	REQUIRE_HAS(f.req[0], "PUT /v1/agent/leave HTTP/1.1");
	REQUIRE_HAS(f.req[1], "PUT /v1/agent/force-leave/n%2F1?prune HTTP/1.1");
	run_free(&r);
}

static void test_cmd_help_version_and_unknown(void)
{
	struct run r = {0};
	const char *help[] = {"members", "-h"};
	const char *ver[] = {"version"};
	const char *unk[] = {"frobnicate"};
	const char *fl[] = {"force-leave", "--help"};
	char *u = NULL;
	size_t ul = 0;
	FILE *f;

	run_cli(&r, 2, help);
	REQUIRE_INT(0, r.rc);
	REQUIRE_HAS(r.out, "Usage: rumor members");
	REQUIRE_HAS(r.out, "-status=<regexp>");
	REQUIRE_HAS(r.out, "-http-addr=<address>");
	run_free(&r);
	run_cli(&r, 2, fl);
	REQUIRE_INT(0, r.rc);
	REQUIRE_HAS(r.out, "-prune");
	run_free(&r);
	run_cli(&r, 1, ver);
	REQUIRE_INT(0, r.rc);
	REQUIRE_STR("rumor v" RUMOR_VERSION "\nProtocol 2 spoken by "
	            "default, understands 2 to 5 (agent will "
	            "automatically use protocol >2 when speaking to "
	            "compatible agents)\n",
	            r.out);
	run_free(&r);
	run_cli(&r, 1, unk);
	REQUIRE_INT(1, r.rc);
	REQUIRE_HAS(r.err, "Unknown command: frobnicate");
	run_free(&r);
	f = open_memstream(&u, &ul);
	cli_usage(f);
	fclose(f);
	REQUIRE_HAS(u, "    agent ");
	REQUIRE_HAS(u, "    force-leave ");
	REQUIRE_HAS(u, "    join ");
	REQUIRE_HAS(u, "    leave ");
	REQUIRE_HAS(u, "    members ");
	REQUIRE_HAS(u, "    operator ");
	REQUIRE_HAS(u, "    version ");
	free(u);
}

/* ---- operator raft --------------------------------------------------- */

static const char raft_config_json[] =
        "{\"Servers\":[{\"ID\":\"0b430fce6507455d\",\"Node\":\"server-one\","
        "\"Address\":\"10.0.0.1:8300\",\"Leader\":false,\"Voter\":true,"
        "\"ProtocolVersion\":\"3\"},"
        "{\"ID\":\"9923a14c4a004324\",\"Node\":\"s2\",\"Address\":\"10.0.0.22:8300\","
        "\"Leader\":true,\"Voter\":true,\"ProtocolVersion\":\"3\"},"
        "{\"ID\":\"77\",\"Node\":\"s3\",\"Address\":\"[::1]:8300\","
        "\"Leader\":false,\"Voter\":false}],\"Index\":12}";

static const char raft_table[] =
        "Node        ID                Address         State     Voter  RaftProtocol\n"
        "server-one  0b430fce6507455d  10.0.0.1:8300   follower  true   3\n"
        "s2          9923a14c4a004324  10.0.0.22:8300  leader    true   3\n"
        "s3          77                [::1]:8300      follower  false  <=1\n";

static void test_operator_peers_table(void)
{
	json_t *j = json_loads(raft_config_json, 0, NULL), *bad = json_loads("{}", 0, NULL);
	char err[128] = "";
	char *t;

	REQUIRE(j != NULL && bad != NULL, "fixture does not parse");
	t = cli_operator_peers_table(j, err, sizeof(err));
	REQUIRE(t != NULL, "NULL table: %s", err);
	CHECK_STR(raft_table, t);
	free(t);
	CHECK(cli_operator_peers_table(bad, err, sizeof(err)) == NULL, "no Servers accepted");
	CHECK_HAS(err, "Servers");
	json_decref(j);
	json_decref(bad);
}

static char raft_config_response[sizeof(raft_config_json) + 128];

static void test_cmd_operator_list_peers(void)
{
	struct fake f = {.nresp = 2};
	struct run r = {0};

	f.resp[0] = raft_config_response;
	f.resp[1] = "HTTP/1.1 500 Internal Server Error\r\n"
	            "Content-Length: 18\r\n\r\nNo cluster leader\n";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {"operator", "raft", "list-peers", "-http-addr", f.addr};
		run_cli(&r, 5, argv);
	}
	REQUIRE_INT(0, r.rc);
	CHECK_STR(raft_table, r.out);
	CHECK_STR("", r.err);
	run_free(&r);
	{
		const char *argv[] = {"operator", "raft",       "list-peers",
		                      "-stale",   "-http-addr", f.addr};
		run_cli(&r, 6, argv);
	}
	fake_stop(&f);
	REQUIRE_INT(1, r.rc);
	CHECK_STR("", r.out);
	CHECK_STR("Error getting peers: Failed to retrieve raft configuration: Unexpected "
	          "response code: 500 (No cluster leader)\n",
	          r.err);
	CHECK_HAS(f.req[0], "GET /v1/operator/raft/configuration HTTP/1.1\r\n");
	CHECK_HAS(f.req[1], "GET /v1/operator/raft/configuration?stale HTTP/1.1\r\n");
	run_free(&r);
}

static void test_cmd_operator_remove_peer(void)
{
	struct fake f = {.nresp = 3};
	struct run r = {0};

	f.resp[0] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	f.resp[1] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	f.resp[2] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 11\r\n\r\nnot found\r\n";
	REQUIRE(fake_start(&f) == 0, "server did not start");
	{
		const char *argv[] = {"operator",       "raft",       "remove-peer",
		                      "-id=0b43 \"x\"", "-http-addr", f.addr};
		run_cli(&r, 6, argv);
	}
	CHECK_INT(0, r.rc);
	CHECK_STR("Removed peer with id \"0b43 \\\"x\\\"\"\n", r.out);
	run_free(&r);
	{
		const char *argv[] = {"operator",      "raft",       "remove-peer", "-address",
		                      "10.0.0.1:8300", "-http-addr", f.addr};
		run_cli(&r, 7, argv);
	}
	CHECK_INT(0, r.rc);
	CHECK_STR("Removed peer with address \"10.0.0.1:8300\"\n", r.out);
	run_free(&r);
	{
		const char *argv[] = {"operator",   "raft", "remove-peer", "-address=10.0.0.9:8300",
		                      "-http-addr", f.addr};
		run_cli(&r, 6, argv);
	}
	fake_stop(&f);
	CHECK_INT(1, r.rc);
	CHECK_STR("", r.out);
	CHECK_STR("Error removing peer: Unexpected response code: 500 (not found)\n", r.err);
	CHECK_HAS(f.req[0], "DELETE /v1/operator/raft/peer?id=0b43%20%22x%22 HTTP/1.1\r\n");
	CHECK_HAS(f.req[1], "DELETE /v1/operator/raft/peer?address=10.0.0.1%3A8300 HTTP/1.1\r\n");
	run_free(&r);
}

/* Neither or both flags: Consul's words, exit 1, nothing sent. */
static void test_cmd_operator_remove_peer_flags(void)
{
	struct run r = {0};
	char flag[64];
	int port = closed_port();
	const char *neither[] = {"operator", "raft", "remove-peer", flag};
	const char *both[] = {"operator", "raft", "remove-peer", flag, "-id=a", "-address=b:1"};
	const char *extra[] = {"operator", "raft", "remove-peer", "-id=a", "junk"};

	snprintf(flag, sizeof(flag), "-http-addr=127.0.0.1:%d", port);
	run_cli(&r, 4, neither);
	CHECK_INT(1, r.rc);
	CHECK_STR("Error removing peer: an address or id is required for the peer to remove\n",
	          r.err);
	run_free(&r);
	run_cli(&r, 6, both);
	CHECK_INT(1, r.rc);
	CHECK_STR("Error removing peer: cannot give both an address and id\n", r.err);
	run_free(&r);
	run_cli(&r, 5, extra);
	CHECK_INT(1, r.rc);
	CHECK_HAS(r.err, "Run 'rumor operator raft remove-peer -h' for usage.");
	run_free(&r);
}

static void test_cmd_operator_usage(void)
{
	struct run r = {0};
	const char *alone[] = {"operator"};
	const char *raft[] = {"operator", "raft"};
	const char *unk[] = {"operator", "raft", "bogus"};
	const char *help[] = {"operator", "raft", "list-peers", "-h"};
	const char *rhelp[] = {"operator", "raft", "remove-peer", "--help"};
	const char *ohelp[] = {"operator", "-h"};

	run_cli(&r, 1, alone);
	CHECK_INT(1, r.rc);
	CHECK_HAS(r.err, "raft list-peers");
	run_free(&r);
	run_cli(&r, 2, raft);
	CHECK_INT(1, r.rc);
	CHECK_HAS(r.err, "Usage: rumor operator raft <subcommand>");
	run_free(&r);
	run_cli(&r, 3, unk);
	CHECK_INT(1, r.rc);
	CHECK_HAS(r.err, "Unknown subcommand: bogus\n");
	run_free(&r);
	run_cli(&r, 4, help);
	CHECK_INT(0, r.rc);
	CHECK_HAS(r.out, "Usage: rumor operator raft list-peers");
	CHECK_HAS(r.out, "-stale");
	CHECK_HAS(r.out, "-http-addr=<address>");
	run_free(&r);
	run_cli(&r, 4, rhelp);
	CHECK_INT(0, r.rc);
	CHECK_HAS(r.out, "-address=<ip:port>");
	CHECK_HAS(r.out, "-id=<id>");
	run_free(&r);
	run_cli(&r, 2, ohelp);
	CHECK_INT(0, r.rc);
	CHECK_HAS(r.out, "raft remove-peer");
	run_free(&r);
}

int main(void)
{
	unsetenv("RUMOR_HTTP_ADDR");
	unsetenv("CONSUL_HTTP_ADDR");
	unsetenv("RUMOR_HTTP_TOKEN");
	unsetenv("CONSUL_HTTP_TOKEN");
	snprintf(members_response, sizeof(members_response),
	         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(members_json),
	         members_json);
	RUN(test_table_is_sorted_and_aligned);
	RUN(test_detailed_shows_sorted_tags);
	RUN(test_status_regex_filters);
	RUN(test_invalid_regex_is_an_error);
	RUN(test_select_rejects_non_array);
	RUN(test_hostile_member_fields_do_not_break_rendering);
	RUN(test_json_format_parses_back);
	RUN(test_status_names_and_addresses);
	RUN(test_table_render_pads_to_longest_plus_two);
	RUN(test_flags_accept_both_forms);
	RUN(test_flags_report_errors_and_help);
	RUN(test_http_addr_normalization);
	RUN(test_default_http_addr_from_env);
	RUN(test_split_hostport);
	RUN(test_escape);
	RUN(test_httpc_content_length);
	RUN(test_httpc_chunked_split_across_reads);
	RUN(test_httpc_body_until_close);
	RUN(test_httpc_ipv6_loopback);
	RUN(test_httpc_truncated_body_is_an_error);
	RUN(test_httpc_garbage_is_a_protocol_error);
	RUN(test_httpc_body_limit);
	RUN(test_httpc_timeout);
	RUN(test_httpc_connection_refused);
	RUN(test_httpc_rejects_bad_input);
	RUN(test_cmd_members_prints_table);
	RUN(test_cmd_members_no_match_exits_2);
	RUN(test_cmd_kv_refuses_token_with_newline);
	RUN(test_cmd_members_json_format);
	RUN(test_cmd_members_bad_regex_and_format);
	RUN(test_cmd_agent_unreachable);
	RUN(test_cmd_join_counts_successes);
	RUN(test_cmd_join_none_joined);
	RUN(test_cmd_leave_and_force_leave);
	RUN(test_cmd_help_version_and_unknown);
	snprintf(raft_config_response, sizeof(raft_config_response),
	         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(raft_config_json),
	         raft_config_json);
	RUN(test_operator_peers_table);
	RUN(test_cmd_operator_list_peers);
	RUN(test_cmd_operator_remove_peer);
	RUN(test_cmd_operator_remove_peer_flags);
	RUN(test_cmd_operator_usage);
	return check_exit_code();
}
