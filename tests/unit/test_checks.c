/*
 * tests/unit/test_checks.c — the check runners on a real libev loop:
 * TCP connect (open and closed port), HTTP GET (200 passing, 429 warning,
 * 500 critical, no answer critical at the timeout), script (exit codes,
 * output, timeout kills it), TTL expiry and reset.  Every wait is bounded.
 */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/checks.h"

static int passed, failed;

#define CHECK(cond, ...)                                            \
	do {                                                        \
		if (cond) {                                         \
			passed++;                                   \
		} else {                                            \
			failed++;                                   \
			printf("FAIL %s:%d: ", __func__, __LINE__); \
			printf(__VA_ARGS__);                        \
			printf("\n");                               \
		}                                                   \
	} while (0)

static struct ev_loop *loop;

struct result {
	int n;
	enum catalog_health st;
	char out[CHECK_OUTPUT_MAX + 1];
};

static void on_result(void *ud, enum catalog_health st, const char *output)
{
	struct result *r = ud;
	r->n++;
	r->st = st;
	snprintf(r->out, sizeof(r->out), "%s", output);
	ev_break(loop, EVBREAK_ALL);
}

static void deadline_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	ev_break(l, EVBREAK_ALL);
}

/* Runs the loop until a result arrives or `secs` pass. */
static void run_for(double secs)
{
	ev_timer t;
	ev_timer_init(&t, deadline_cb, secs, 0.);
	ev_timer_start(loop, &t);
	ev_run(loop, 0);
	ev_timer_stop(loop, &t);
}

/* A listening socket on 127.0.0.1; returns the fd and the port. */
static int listener(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	listen(fd, 16);
	socklen_t l = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &l);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A one-shot HTTP server in the loop: answers `reply` to one request. */
struct httpd {
	int lfd;
	const char *reply;
	ev_io io;
	bool silent; /* accept and never answer */
	int cfd;
};

static void httpd_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct httpd *h = w->data;
	int c = accept(h->lfd, NULL, NULL);
	if (c < 0)
		return;
	if (h->silent) {
		h->cfd = c;
		return;
	}
	char buf[2048];
	ssize_t n = recv(c, buf, sizeof(buf), 0); /* the request fits in one read on loopback */
	(void)n;
	ssize_t k = send(c, h->reply, strlen(h->reply), 0);
	(void)k;
	close(c);
}

static struct result run_http(const char *reply, bool silent, int64_t timeout_ms)
{
	uint16_t port;
	struct httpd h = {.reply = reply, .silent = silent, .cfd = -1};
	h.lfd = listener(&port);
	ev_io_init(&h.io, httpd_cb, h.lfd, EV_READ);
	h.io.data = &h;
	ev_io_start(loop, &h.io);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/health", port);
	struct check_def d = {.kind = CHECK_HTTP, .target = url, .interval_ms = 10000,
			      .timeout_ms = timeout_ms};
	struct result r = {0};
	char err[256];
	struct check_runner *cr = check_runner_new(loop, &d, on_result, &r, err, sizeof(err));
	if (cr == NULL) {
		printf("runner: %s\n", err);
		exit(1);
	}
	run_for(3);
	check_runner_free(cr);
	ev_io_stop(loop, &h.io);
	close(h.lfd);
	if (h.cfd >= 0)
		close(h.cfd);
	return r;
}

static void test_http_status_mapping(void)
{
	struct result r = run_http("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 1000);
	CHECK(r.n == 1 && r.st == CATALOG_PASSING, "200: expected passing, got %d (%s)", r.st, r.out);
	CHECK(strstr(r.out, "200") && strstr(r.out, "ok"), "200 output: %s", r.out);
	r = run_http("HTTP/1.1 429 Too Many Requests\r\n\r\n", false, 1000);
	CHECK(r.n == 1 && r.st == CATALOG_WARNING, "429: expected warning, got %d (%s)", r.st, r.out);
	r = run_http("HTTP/1.0 503 Service Unavailable\r\n\r\n", false, 1000);
	CHECK(r.n == 1 && r.st == CATALOG_CRITICAL, "503: expected critical, got %d", r.st);
	r = run_http("garbage", false, 1000);
	CHECK(r.n == 1 && r.st == CATALOG_CRITICAL, "garbage: expected critical, got %d", r.st);
	r = run_http(NULL, true, 200);
	CHECK(r.n == 1 && r.st == CATALOG_CRITICAL && strstr(r.out, "timeout"),
	      "silent server: expected critical timeout, got %d (%s)", r.st, r.out);
}

static void test_tcp_open_and_closed(void)
{
	uint16_t port;
	int fd = listener(&port);
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%u", port);
	struct check_def d = {.kind = CHECK_TCP, .target = target, .interval_ms = 10000};
	struct result r = {0};
	char err[256];
	struct check_runner *cr = check_runner_new(loop, &d, on_result, &r, err, sizeof(err));
	run_for(3);
	CHECK(r.n == 1 && r.st == CATALOG_PASSING, "open port: expected passing, got %d (%s)", r.st,
	      r.out);
	check_runner_free(cr);
	close(fd);
	memset(&r, 0, sizeof(r));
	cr = check_runner_new(loop, &d, on_result, &r, err, sizeof(err));
	run_for(3);
	CHECK(r.n == 1 && r.st == CATALOG_CRITICAL, "closed port: expected critical, got %d (%s)",
	      r.st, r.out);
	check_runner_free(cr);
	d.target = "db.example.com:5432";
	CHECK(check_runner_new(loop, &d, on_result, &r, err, sizeof(err)) == NULL,
	      "a host name that needs resolving was accepted");
}

static struct result run_script(const char *sh, int64_t timeout_ms)
{
	char *argv[] = {"/bin/sh", "-c", (char *)sh, NULL};
	struct check_def d = {.kind = CHECK_SCRIPT, .args = argv, .interval_ms = 10000,
			      .timeout_ms = timeout_ms};
	struct result r = {0};
	char err[256];
	struct check_runner *cr = check_runner_new(loop, &d, on_result, &r, err, sizeof(err));
	run_for(5);
	check_runner_free(cr);
	return r;
}

static void test_script_exit_codes_and_timeout(void)
{
	struct result r = run_script("echo hello; exit 0", 2000);
	CHECK(r.st == CATALOG_PASSING && strcmp(r.out, "hello\n") == 0,
	      "exit 0: expected passing 'hello', got %d '%s'", r.st, r.out);
	r = run_script("echo warn >&2; exit 1", 2000);
	CHECK(r.st == CATALOG_WARNING && strstr(r.out, "warn"), "exit 1: expected warning, got %d",
	      r.st);
	r = run_script("exit 2", 2000);
	CHECK(r.st == CATALOG_CRITICAL, "exit 2: expected critical, got %d", r.st);
	ev_tstamp t0 = ev_time();
	r = run_script("sleep 10", 200);
	CHECK(r.n == 1 && r.st == CATALOG_CRITICAL && strstr(r.out, "Timed out"),
	      "sleep past timeout: expected critical 'Timed out', got %d '%s'", r.st, r.out);
	CHECK(ev_time() - t0 < 2.0, "timeout took %.2fs", ev_time() - t0);
}

static void test_ttl_expires_and_reset_postpones(void)
{
	struct check_def d = {.kind = CHECK_TTL, .ttl_ms = 300};
	struct result r = {0};
	char err[256];
	struct check_runner *cr = check_runner_new(loop, &d, on_result, &r, err, sizeof(err));
	run_for(0.2);
	check_runner_ttl_reset(cr);
	run_for(0.2);
	CHECK(r.n == 0, "TTL expired although reset in time");
	run_for(1.0);
	CHECK(r.n == 1 && r.st == CATALOG_CRITICAL && strcmp(r.out, "TTL expired") == 0,
	      "TTL: expected critical 'TTL expired', got n=%d %d '%s'", r.n, r.st, r.out);
	check_runner_free(cr);
}

int main(void)
{
	loop = ev_default_loop(0);
	test_tcp_open_and_closed();
	test_http_status_mapping();
	test_script_exit_codes_and_timeout();
	test_ttl_expires_and_reset_postpones();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
