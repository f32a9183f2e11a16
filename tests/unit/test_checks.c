/*
 * tests/unit/test_checks.c — the check runners on a real libev loop:
 * TCP connect (open and closed port), HTTP GET (200 passing, 429 warning,
 * 500 critical, no answer critical at the timeout), script (exit codes,
 * output, timeout kills it), TTL expiry and reset; and the registry above
 * them (agent/services.c): Consul's definitions with lowercase keys, check
 * IDs, TTL updates reaching the catalog, deregistration.  Every wait is
 * bounded.
 */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/catalog.h"
#include "agent/checks.h"
#include "lib/log.h"
#include "agent/services.h"
#include "tests/unit/check.h"

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
	struct check_def d = {
	        .kind = CHECK_HTTP, .target = url, .interval_ms = 10000, .timeout_ms = timeout_ms};
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
	CHECK(r.n == 1 && r.st == CATALOG_PASSING, "200: expected passing, got %d (%s)", r.st,
	      r.out);
	CHECK(strstr(r.out, "200") && strstr(r.out, "ok"), "200 output: %s", r.out);
	r = run_http("HTTP/1.1 429 Too Many Requests\r\n\r\n", false, 1000);
	CHECK(r.n == 1 && r.st == CATALOG_WARNING, "429: expected warning, got %d (%s)", r.st,
	      r.out);
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
	struct check_def d = {
	        .kind = CHECK_SCRIPT, .args = argv, .interval_ms = 10000, .timeout_ms = timeout_ms};
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

/* ---- the registry (agent/services.c) ---- */

static struct services *mkreg(struct catalog *cat, bool scripts)
{
	struct services_config sc = {.node = "n1",
	                             .node_id = "id-1",
	                             .address = "10.0.0.1",
	                             .datacenter = "dc1",
	                             .enable_script_checks = scripts};
	return services_new(loop, cat, &sc);
}

static int reg(struct services *s, const char *json, char *err, size_t errlen)
{
	json_t *def = json_loads(json, 0, NULL);
	int rc = services_register(s, def, err, errlen);
	json_decref(def);
	return rc;
}

static void test_register_lowercase_keys_and_check_ids(void)
{
	struct catalog *cat = catalog_new("n1");
	struct services *s = mkreg(cat, false);
	char err[256] = "";
	int rc = reg(s,
	             "{\"name\":\"web\",\"id\":\"web1\",\"port\":80,\"tags\":[\"v1\"],"
	             "\"checks\":[{\"ttl\":\"10s\"},{\"ttl\":\"10s\",\"status\":\"passing\"}]}",
	             err, sizeof(err));
	CHECK(rc == 0, "register with lowercase keys: %s", err);
	json_t *checks = services_agent_checks(s);
	CHECK(json_object_get(checks, "service:web1:1") &&
	              json_object_get(checks, "service:web1:2"),
	      "two checks: expected IDs service:web1:1 and :2");
	json_decref(checks);
	const struct catalog_inst *out[4];
	CHECK(catalog_lookup(cat, "web", 3, NULL, 0, false, out, 4) == 0,
	      "a critical TTL check still lets the instance be returned");
	CHECK(services_check_update(s, "service:web1:1", CATALOG_WARNING, "meh", err,
	                            sizeof(err)) == 0,
	      "ttl update: %s", err);
	CHECK(catalog_lookup(cat, "web", 3, "V1", 2, false, out, 4) == 1,
	      "warning instance with tag V1 (case-insensitive) not returned");
	CHECK(catalog_lookup(cat, "web", 3, NULL, 0, true, out, 4) == 0,
	      "only_passing returned a warning instance");
	CHECK(services_check_update(s, "nope", CATALOG_PASSING, "", err, sizeof(err)) == -2,
	      "unknown check: expected -2");
	CHECK(reg(s, "{\"Port\":1}", err, sizeof(err)) < 0 && strstr(err, "Missing service name"),
	      "nameless service: got '%s'", err);
	CHECK(reg(s, "{\"Name\":\"x\",\"Check\":{\"Args\":[\"/bin/true\"],\"Interval\":\"1s\"}}",
	          err, sizeof(err)) < 0 &&
	              strstr(err, "enable_script_checks"),
	      "script check without -enable-script-checks: got '%s'", err);
	CHECK(reg(s, "{\"Name\":\"x\",\"Check\":{\"TCP\":\"127.0.0.1:1\"}}", err, sizeof(err)) < 0,
	      "TCP check without interval accepted");
	CHECK(services_count(s) == 1, "failed registrations changed the registry: %zu services",
	      services_count(s));
	CHECK(services_deregister(s, "web1", err, sizeof(err)) == 0 && services_check_count(s) == 0,
	      "deregister left %zu checks", services_check_count(s));
	CHECK(!catalog_service_exists(cat, "web", 3), "web still in the catalog after deregister");
	CHECK(services_deregister(s, "web1", err, sizeof(err)) == -2,
	      "second deregister: expected -2");
	services_free(s);
	catalog_free(cat);
}

static void test_service_address_and_node_liveness(void)
{
	struct catalog *cat = catalog_new("n1");
	struct services *s = mkreg(cat, false);
	char err[256] = "";
	reg(s, "{\"Name\":\"db\",\"Address\":\"10.9.9.9\",\"Port\":5432}", err, sizeof(err));
	const struct catalog_inst *out[2];
	CHECK(catalog_lookup(cat, "DB", 2, NULL, 0, false, out, 2) == 1 && out[0]->own_ip &&
	              out[0]->ip.b[3] == 9,
	      "service address not used");
	catalog_set_alive(cat, "n1", false);
	CHECK(catalog_lookup(cat, "db", 2, NULL, 0, false, out, 2) == 0,
	      "instance of a dead node returned");
	CHECK(catalog_lookup_all(cat, "db", 2, out, 2) == 1, "catalog listing lost the instance");
	services_free(s);
	catalog_free(cat);
}

/* Counted names from the network (DNS labels) may carry NUL bytes; a NUL
 * must not end the comparison early (found by fuzz_dns: "web\0..." matched
 * "web" and the index compare read past the stored name). */
static void test_lookup_names_with_nul(void)
{
	struct catalog *cat = catalog_new("n1");
	struct services *s = mkreg(cat, false);
	char err[256] = "";
	reg(s, "{\"Name\":\"web\",\"Port\":80,\"Tags\":[\"v1\"]}", err, sizeof(err));
	const struct catalog_inst *out[2];
	CHECK(catalog_lookup(cat, "web", 3, NULL, 0, false, out, 2) == 1, "web not found: %s", err);
	CHECK(catalog_lookup(cat, "web\0\0\0", 6, NULL, 0, false, out, 2) == 0,
	      "\"web\\0\\0\\0\" matched the service web");
	CHECK(catalog_lookup(cat, "web", 3, "v1\0x", 4, false, out, 2) == 0,
	      "tag \"v1\\0x\" matched the tag v1");
	CHECK(catalog_node_get(cat, "n1\0zz", 5) == NULL, "node \"n1\\0zz\" matched n1");
	CHECK(catalog_node_get(cat, "n1", 2) != NULL, "node n1 not found");
	services_free(s);
	catalog_free(cat);
}

/* Maintenance: a critical node-level check drops every instance from DNS
 * lookups; a service's drops that service only; both are written to the
 * maintenance file and a new registry restores them from it. */
static void test_maintenance_checks_and_restore(void)
{
	char dir[] = "/tmp/rumor-maint-XXXXXX", path[64];
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(path, sizeof(path), "%s/maintenance.json", dir);
	struct catalog *cat = catalog_new("n1");
	struct services_config sc = {.node = "n1",
	                             .node_id = "id-1",
	                             .address = "10.0.0.1",
	                             .datacenter = "dc1",
	                             .maint_path = path};
	struct services *s = services_new(loop, cat, &sc);
	char err[256] = "";
	reg(s, "{\"Name\":\"web\",\"ID\":\"web1\"}", err, sizeof(err));
	reg(s, "{\"Name\":\"db\",\"ID\":\"db1\"}", err, sizeof(err));
	const struct catalog_inst *out[2];
	CHECK_INT(1, (int)catalog_lookup(cat, "web", 3, NULL, 0, true, out, 2));
	CHECK_INT(-2, services_service_maintenance(s, "nope", true, NULL, err, sizeof(err)));
	CHECK_STR("No service registered with ID \"nope\"", err);
	CHECK_INT(0, services_service_maintenance(s, "web1", true, "", err, sizeof(err)));
	CHECK_INT(0, (int)catalog_lookup(cat, "web", 3, NULL, 0, false, out, 2));
	CHECK_INT(1, (int)catalog_lookup(cat, "db", 2, NULL, 0, false, out, 2));
	services_node_maintenance(s, true, "disk swap");
	services_node_maintenance(s, true, "second reason is ignored");
	CHECK_INT(0, (int)catalog_lookup(cat, "db", 2, NULL, 0, false, out, 2));
	json_t *chks = services_agent_checks(s);
	json_t *nm = json_object_get(chks, SERVICES_NODE_MAINT);
	CHECK_STR("Node Maintenance Mode", json_string_value(json_object_get(nm, "Name")));
	CHECK_STR("disk swap", json_string_value(json_object_get(nm, "Notes")));
	CHECK_STR("critical", json_string_value(json_object_get(nm, "Status")));
	json_t *sm = json_object_get(chks, SERVICES_MAINT_PREFIX "web1");
	CHECK_STR(SERVICES_SERVICE_MAINT_DEFAULT, json_string_value(json_object_get(sm, "Notes")));
	CHECK_STR("web1", json_string_value(json_object_get(sm, "ServiceID")));
	json_decref(chks);
	services_free(s);
	catalog_free(cat);

	/* a new agent on the same data dir: both come back; a TTL update of a
	 * maintenance check is refused (not a TTL check) */
	cat = catalog_new("n1");
	s = services_new(loop, cat, &sc);
	reg(s, "{\"Name\":\"web\",\"ID\":\"web1\"}", err, sizeof(err));
	services_maintenance_restore(s);
	chks = services_agent_checks(s);
	CHECK_STR("disk swap", json_string_value(json_object_get(
	                               json_object_get(chks, SERVICES_NODE_MAINT), "Notes")));
	CHECK(json_object_get(chks, SERVICES_MAINT_PREFIX "web1") != NULL, "web1 not restored");
	CHECK(json_object_get(chks, SERVICES_MAINT_PREFIX "db1") == NULL, "db1 is not registered");
	json_decref(chks);
	CHECK_INT(-1, services_check_update(s, SERVICES_NODE_MAINT, CATALOG_PASSING, "", err,
	                                    sizeof(err)));
	services_node_maintenance(s, false, NULL);
	CHECK_INT(0, services_service_maintenance(s, "web1", false, NULL, err, sizeof(err)));
	CHECK_INT(1, (int)catalog_lookup(cat, "web", 3, NULL, 0, true, out, 2));
	CHECK_INT(0, (int)services_check_count(s));
	services_free(s);
	catalog_free(cat);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	log_set_level(LOG_ERR);
	loop = ev_default_loop(0);
	RUN(test_tcp_open_and_closed);
	RUN(test_http_status_mapping);
	RUN(test_script_exit_codes_and_timeout);
	RUN(test_ttl_expires_and_reset_postpones);
	RUN(test_register_lowercase_keys_and_check_ids);
	RUN(test_service_address_and_node_liveness);
	RUN(test_lookup_names_with_nul);
	RUN(test_maintenance_checks_and_restore);
	return check_exit_code();
}
