/*
 * test_http_stream.c — streamed HTTP responses (http_stream_*) and the
 * response hook, over real sockets on 127.0.0.1.
 *
 * One thread: the test pumps the libev loop (EVRUN_NOWAIT) while it reads
 * its non-blocking client socket, so every wait is bounded by a deadline.
 * Handler paths:
 *   /stream   writes "hello\n" now and "world\n" + end 30 ms later
 *   /forever  writes "tick\n" and never ends (close callback recorded)
 *   /flood    writes until http_stream_write says -ENOBUFS
 *   /plain    an ordinary response
 */
#define _GNU_SOURCE
#include "agent/http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check.h"

static struct ev_loop *loop;
static struct http_server *srv;
static uint16_t port;
static ev_timer later;
static struct http_conn *later_conn;
static int closes;
static int enobufs;
static int statuses[8];
static int nstatuses;

static void on_close(struct http_conn *c, void *ud)
{
	closes++;
	if (later_conn == c) {
		later_conn = NULL;
		ev_timer_stop(loop, &later);
	}
}

static void later_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	if (later_conn == NULL)
		return;
	http_stream_write(later_conn, "world\n", 6);
	http_stream_end(later_conn);
	later_conn = NULL;
}

static void handler(struct http_conn *c, const struct http_request *req, void *ud)
{
	if (strcmp(req->path, "/stream") == 0) {
		http_stream_start(c, 200, "text/plain");
		http_stream_write(c, "hello\n", 6);
		http_conn_on_close(c, on_close, NULL);
		later_conn = c;
		ev_timer_set(&later, 0.03, 0.);
		ev_timer_start(loop, &later);
	} else if (strcmp(req->path, "/forever") == 0) {
		http_stream_start(c, 200, "text/plain");
		http_stream_write(c, "tick\n", 5);
		http_conn_on_close(c, on_close, NULL);
	} else if (strcmp(req->path, "/flood") == 0) {
		http_stream_start(c, 200, "text/plain");
		http_conn_on_close(c, on_close, NULL);
		static char block[64 * 1024];
		memset(block, 'x', sizeof(block));
		for (int i = 0; i < 1000; i++) {
			int r = http_stream_write(c, block, sizeof(block));
			if (r == -ENOBUFS) {
				enobufs = 1;
				break;
			}
		}
	} else {
		http_respond(c, 404, "text/plain", "nope\n", 5);
	}
}

static double last_elapsed = -1;

static void on_response(void *ud, int status, double elapsed_ms)
{
	last_elapsed = elapsed_ms;
	if (nstatuses < 8)
		statuses[nstatuses++] = status;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int client(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void pump(double secs)
{
	double end = now_s() + secs;
	while (now_s() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
	}
}

/* Reads into buf until `needle` appears, EOF (*eof set) or 2 s. */
static size_t read_until(int fd, char *buf, size_t cap, size_t have, const char *needle, int *eof)
{
	double end = now_s() + 2.0;
	*eof = 0;
	while (now_s() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		ssize_t n = recv(fd, buf + have, cap - 1 - have, MSG_DONTWAIT);
		if (n == 0) {
			*eof = 1;
			break;
		}
		if (n > 0) {
			have += (size_t)n;
			buf[have] = '\0';
			if (needle != NULL && strstr(buf, needle) != NULL)
				break;
		} else {
			usleep(1000);
		}
	}
	buf[have] = '\0';
	return have;
}

static int send_str(int fd, const char *s)
{
	return send(fd, s, strlen(s), 0) == (ssize_t)strlen(s) ? 0 : -1;
}

static void test_http11_stream_is_chunked_and_keeps_alive(void)
{
	int fd = client();
	REQUIRE(fd >= 0, "connect failed");
	nstatuses = 0;
	send_str(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
	char buf[4096];
	int eof;
	size_t n = read_until(fd, buf, sizeof(buf), 0, "hello\n\r\n", &eof);
	REQUIRE(strstr(buf, "Transfer-Encoding: chunked\r\n") != NULL, "no chunked header:\n%s",
	        buf);
	REQUIRE(strstr(buf, "world") == NULL, "second chunk came before its timer:\n%s", buf);
	n = read_until(fd, buf, sizeof(buf), n, "0\r\n\r\n", &eof);
	const char *body = strstr(buf, "\r\n\r\n");
	REQUIRE(body != NULL, "no header end:\n%s", buf);
	REQUIRE(strcmp(body + 4, "6\r\nhello\n\r\n6\r\nworld\n\r\n0\r\n\r\n") == 0,
	        "chunked body: got '%s'", body + 4);
	/* the connection is still usable */
	send_str(fd, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
	n = read_until(fd, buf, sizeof(buf), 0, "nope\n", &eof);
	REQUIRE(strstr(buf, "HTTP/1.1 404") != NULL, "keep-alive request failed:\n%s", buf);
	REQUIRE(nstatuses == 2 && statuses[0] == 200 && statuses[1] == 404,
	        "response hook: expected 200,404, got %d statuses (%d,%d)", nstatuses, statuses[0],
	        statuses[1]);
	REQUIRE(last_elapsed >= 0 && last_elapsed < 1000, "elapsed ms: got %f", last_elapsed);
	close(fd);
}

static void test_http10_stream_ends_with_close(void)
{
	int fd = client();
	REQUIRE(fd >= 0, "connect failed");
	send_str(fd, "GET /stream HTTP/1.0\r\n\r\n");
	char buf[4096];
	int eof;
	read_until(fd, buf, sizeof(buf), 0, NULL, &eof);
	REQUIRE(eof, "no EOF after a 1.0 stream");
	REQUIRE(strstr(buf, "chunked") == NULL, "1.0 response must not be chunked:\n%s", buf);
	const char *body = strstr(buf, "\r\n\r\n");
	REQUIRE(body != NULL && strcmp(body + 4, "hello\nworld\n") == 0, "body: got '%s'",
	        body ? body + 4 : buf);
	close(fd);
}

static void test_client_leaving_fires_close_callback(void)
{
	int fd = client();
	REQUIRE(fd >= 0, "connect failed");
	closes = 0;
	send_str(fd, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
	char buf[4096];
	int eof;
	read_until(fd, buf, sizeof(buf), 0, "tick\n", &eof);
	REQUIRE(strstr(buf, "5\r\ntick\n\r\n") != NULL, "first chunk missing:\n%s", buf);
	size_t before = http_server_conn_count(srv);
	close(fd);
	double end = now_s() + 2;
	while (closes == 0 && now_s() < end)
		pump(0.005);
	REQUIRE(closes == 1, "close callback: expected 1, got %d", closes);
	REQUIRE(http_server_conn_count(srv) == before - 1, "conn not freed: %zu open",
	        http_server_conn_count(srv));
}

static void test_slow_client_gets_enobufs(void)
{
	int fd = client();
	REQUIRE(fd >= 0, "connect failed");
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	enobufs = 0;
	closes = 0;
	send_str(fd, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");
	pump(0.05);
	REQUIRE(enobufs == 1, "expected -ENOBUFS from a stream nobody reads");
	close(fd);
	double end = now_s() + 2;
	while (closes == 0 && now_s() < end)
		pump(0.005);
	REQUIRE(closes == 1, "close callback after flood: got %d", closes);
}

static void test_connection_close_stream_closes(void)
{
	int fd = client();
	REQUIRE(fd >= 0, "connect failed");
	send_str(fd, "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	char buf[4096];
	int eof;
	read_until(fd, buf, sizeof(buf), 0, NULL, &eof);
	REQUIRE(eof, "Connection: close stream did not close");
	REQUIRE(strstr(buf, "Connection: close\r\n") != NULL, "no Connection: close:\n%s", buf);
	REQUIRE(strstr(buf, "0\r\n\r\n") != NULL, "no last chunk:\n%s", buf);
	close(fd);
}

int main(void)
{
	loop = ev_loop_new(EVFLAG_AUTO);
	char err[256];
	srv = http_server_new(loop, NULL, handler, NULL, err, sizeof(err));
	if (srv == NULL || http_server_listen(srv, "127.0.0.1", 0, &port, err, sizeof(err)) < 0) {
		fprintf(stderr, "server: %s\n", err);
		return 1;
	}
	http_server_on_response(srv, on_response, NULL);
	ev_timer_init(&later, later_cb, 0., 0.);
	RUN(test_http11_stream_is_chunked_and_keeps_alive);
	RUN(test_http10_stream_ends_with_close);
	RUN(test_client_leaving_fires_close_callback);
	RUN(test_slow_client_gets_enobufs);
	RUN(test_connection_close_stream_closes);
	pump(0.02);
	http_server_free(srv);
	ev_timer_stop(loop, &later);
	ev_loop_destroy(loop);
	return check_exit_code();
}
