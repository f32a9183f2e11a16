/*
 * test_metrics.c — the metrics registry and its two renderers: Prometheus
 * text checked line by line against the exposition format (names, one
 * HELP/TYPE per family before its samples, families contiguous, counters
 * ending in _total, label escaping) and Consul's JSON shape.
 */
#include "agent/metrics.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

/* ---------------------------------------------- a strict exposition checker */

static int is_name(const char *s, size_t n, int label)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		int ok =
		        isalpha(ch) || ch == '_' || (!label && ch == ':') || (i > 0 && isdigit(ch));
		if (!ok)
			return 0;
	}
	return 1;
}

struct family {
	char name[160];
	char type[16];
	int samples;
	int closed; /* another family started after it */
};

struct prom_check {
	struct family fam[128];
	int nfam;
	int cur;
	int nsamples;
	char err[1400];
};

static struct family *fam_find(struct prom_check *pc, const char *name)
{
	for (int i = 0; i < pc->nfam; i++)
		if (strcmp(pc->fam[i].name, name) == 0)
			return &pc->fam[i];
	return NULL;
}

/* The family a sample name belongs to (summary: strip _sum/_count). */
static struct family *fam_of_sample(struct prom_check *pc, const char *name)
{
	struct family *f = fam_find(pc, name);
	if (f != NULL)
		return f;
	char base[160];
	size_t n = strlen(name);
	const char *sfx[] = {"_sum", "_count", "_bucket"};
	for (int i = 0; i < 3; i++) {
		size_t sl = strlen(sfx[i]);
		if (n > sl && strcmp(name + n - sl, sfx[i]) == 0 && n - sl < sizeof(base)) {
			memcpy(base, name, n - sl);
			base[n - sl] = '\0';
			f = fam_find(pc, base);
			if (f != NULL &&
			    (strcmp(f->type, "summary") == 0 || strcmp(f->type, "histogram") == 0))
				return f;
		}
	}
	return NULL;
}

/* The family a HELP/TYPE line names: found, or started after closing the
 * current one. NULL with pc->err when it already has samples or was
 * closed by another family (one HELP/TYPE block per family, before its
 * samples), or when the table is full. */
static struct family *family_open(struct prom_check *pc, const char *kw, const char *name,
                                  const char *line)
{
	struct family *f = fam_find(pc, name);
	if (f == NULL) {
		if (pc->cur >= 0)
			pc->fam[pc->cur].closed = 1;
		if (pc->nfam == 128) {
			snprintf(pc->err, sizeof(pc->err), "too many families");
			return NULL;
		}
		f = &pc->fam[pc->nfam];
		memset(f, 0, sizeof(*f));
		snprintf(f->name, sizeof(f->name), "%s", name);
		pc->cur = pc->nfam++;
	} else if (f->closed || f->samples > 0) {
		snprintf(pc->err, sizeof(pc->err), "%s after samples or another family: %s", kw,
		         line);
		return NULL;
	}
	return f;
}

/* A TYPE t for family f: the first one, a known type, and a counter's
 * name ends in _total. */
static int family_type(struct prom_check *pc, struct family *f, const char *name, const char *t)
{
	if (f->type[0] != '\0') {
		snprintf(pc->err, sizeof(pc->err), "second TYPE for %s", name);
		return -1;
	}
	if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "summary") &&
	    strcmp(t, "histogram") && strcmp(t, "untyped")) {
		snprintf(pc->err, sizeof(pc->err), "bad type '%s'", t);
		return -1;
	}
	snprintf(f->type, sizeof(f->type), "%s", t);
	if (strcmp(t, "counter") == 0 &&
	    (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total") != 0)) {
		snprintf(pc->err, sizeof(pc->err), "counter %s lacks _total", name);
		return -1;
	}
	return 0;
}

/* "# HELP name text" or "# TYPE name type"; any other keyword fails. */
static int prom_comment(struct prom_check *pc, const char *line)
{
	char kw[8], name[160];
	int off = 0;
	if (sscanf(line, "# %7s %159s %n", kw, name, &off) < 2) {
		snprintf(pc->err, sizeof(pc->err), "bad comment line: %s", line);
		return -1;
	}
	if (!is_name(name, strlen(name), 0)) {
		snprintf(pc->err, sizeof(pc->err), "bad name in: %s", line);
		return -1;
	}
	struct family *f = family_open(pc, kw, name, line);
	if (f == NULL)
		return -1;
	if (strcmp(kw, "TYPE") == 0)
		return family_type(pc, f, name, line + off);
	if (strcmp(kw, "HELP") != 0) {
		snprintf(pc->err, sizeof(pc->err), "unknown keyword %s", kw);
		return -1;
	}
	return 0;
}

/* One quoted label value at *pp (past the opening quote), unescaped into
 * lastlabel[ll]: only \\, \" and \n are escapes. Leaves *pp on the
 * closing quote. */
static int label_value(struct prom_check *pc, const char *line, const char **pp, char *lastlabel,
                       size_t ll)
{
	const char *p = *pp;
	size_t o = 0;
	while (*p && *p != '"') {
		char ch = *p++;
		if (ch == '\\') {
			ch = *p++;
			if (ch == 'n')
				ch = '\n';
			else if (ch != '\\' && ch != '"') {
				snprintf(pc->err, sizeof(pc->err), "bad escape in: %s", line);
				return -1;
			}
		}
		if (o + 1 < ll)
			lastlabel[o++] = ch;
	}
	if (ll)
		lastlabel[o] = '\0';
	*pp = p;
	return 0;
}

/* The label list at *pp, which points just past '{': name="value" pairs
 * separated by commas up to '}'. Leaves *pp past the '}'. */
static int prom_labels(struct prom_check *pc, const char *line, const char **pp, char *lastlabel,
                       size_t ll)
{
	const char *p = *pp;
	while (*p != '}') {
		const char *k = p;
		while (*p && *p != '=')
			p++;
		if (*p != '=' || !is_name(k, (size_t)(p - k), 1) || p[1] != '"') {
			snprintf(pc->err, sizeof(pc->err), "bad label in: %s", line);
			return -1;
		}
		p += 2;
		if (label_value(pc, line, &p, lastlabel, ll) < 0)
			return -1;
		if (*p != '"') {
			snprintf(pc->err, sizeof(pc->err), "unterminated label in: %s", line);
			return -1;
		}
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}') {
			snprintf(pc->err, sizeof(pc->err), "bad label list in: %s", line);
			return -1;
		}
	}
	*pp = p + 1;
	return 0;
}

/* " value" to the end of the line: a float, NaN or +-Inf. */
static int prom_value(struct prom_check *pc, const char *line, const char *p)
{
	if (*p != ' ') {
		snprintf(pc->err, sizeof(pc->err), "no space before value: %s", line);
		return -1;
	}
	p++;
	char *end;
	if (strcmp(p, "NaN") && strcmp(p, "+Inf") && strcmp(p, "-Inf")) {
		strtod(p, &end);
		if (end == p || *end != '\0') {
			snprintf(pc->err, sizeof(pc->err), "bad value in: %s", line);
			return -1;
		}
	}
	return 0;
}

/* A sample line: its name belongs to the current family, which has a
 * TYPE; then the labels, if any, and the value. */
static int prom_sample(struct prom_check *pc, const char *line, char *lastlabel, size_t ll)
{
	const char *p = line;
	while (*p && *p != '{' && *p != ' ')
		p++;
	char name[160];
	size_t nl = (size_t)(p - line);
	if (!is_name(line, nl, 0) || nl >= sizeof(name)) {
		snprintf(pc->err, sizeof(pc->err), "bad sample name: %s", line);
		return -1;
	}
	memcpy(name, line, nl);
	name[nl] = '\0';
	struct family *f = fam_of_sample(pc, name);
	if (f == NULL || f->type[0] == '\0') {
		snprintf(pc->err, sizeof(pc->err), "sample %s without a TYPE before it", name);
		return -1;
	}
	if (f->closed || f != &pc->fam[pc->cur]) {
		snprintf(pc->err, sizeof(pc->err), "sample %s not contiguous with its family",
		         name);
		return -1;
	}
	if (*p == '{') {
		p++;
		if (prom_labels(pc, line, &p, lastlabel, ll) < 0)
			return -1;
	}
	if (prom_value(pc, line, p) < 0)
		return -1;
	f->samples++;
	pc->nsamples++;
	return 0;
}

/* Parses one line; returns 0 or -1 with pc->err. Label values are unescaped
 * into `lastlabel` (the last label value of the line) for the caller. */
static int prom_line(struct prom_check *pc, const char *line, char *lastlabel, size_t ll)
{
	if (line[0] == '#')
		return prom_comment(pc, line);
	return prom_sample(pc, line, lastlabel, ll);
}

/* Checks a whole exposition; the last label value seen goes to lastlabel. */
static int prom_check_text(struct prom_check *pc, const char *text, char *lastlabel, size_t ll)
{
	memset(pc, 0, sizeof(*pc));
	pc->cur = -1;
	if (text[0] != '\0' && text[strlen(text) - 1] != '\n') {
		snprintf(pc->err, sizeof(pc->err), "text does not end in a newline");
		return -1;
	}
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		char line[1024];
		size_t n = (size_t)(nl - p);
		if (n >= sizeof(line) || n == 0) {
			snprintf(pc->err, sizeof(pc->err), "empty or overlong line");
			return -1;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		if (prom_line(pc, line, lastlabel, ll) < 0)
			return -1;
		p = nl + 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ tests */

static void test_prom_name_mangles_dots(void)
{
	char buf[64];
	size_t n = metrics_prom_name(buf, sizeof(buf), "memberlist.health.score");
	REQUIRE(strcmp(buf, "rumor_memberlist_health_score") == 0, "got %s", buf);
	REQUIRE(n == strlen(buf), "expected %zu, got %zu", strlen(buf), n);
	n = metrics_prom_name(buf, 8, "a.b-c");
	REQUIRE(strcmp(buf, "rumor_a") == 0 && n == 11, "truncation: got %s/%zu", buf, n);
	n = metrics_prom_name(buf, sizeof(buf), "http.request_ms");
	REQUIRE(strcmp(buf, "rumor_http_request_seconds") == 0 && n == strlen(buf),
	        "ms in base units: got %s/%zu", buf, n);
	n = metrics_prom_name(buf, 12, "x.lag_ms");
	REQUIRE(strcmp(buf, "rumor_x_lag") == 0 && n == 19, "ms truncated: got %s/%zu", buf, n);
	metrics_prom_name(buf, sizeof(buf), "x.items");
	REQUIRE(strcmp(buf, "rumor_x_items") == 0, "not a unit: got %s", buf);
}

static void test_counter_aggregates(void)
{
	metrics_reset();
	metrics_add(METRIC_PROBES, 2);
	metrics_add(METRIC_PROBES, 4);
	metrics_inc(METRIC_PROBES);
	REQUIRE_NUM(7, metrics_value(METRIC_PROBES));
	char *js = metrics_render_json(0, 0);
	REQUIRE(js != NULL, "render_json returned NULL");
	json_error_t e;
	json_t *root = json_loads(js, 0, &e);
	free(js);
	REQUIRE(root != NULL, "JSON does not parse: %s", e.text);
	json_t *c = NULL;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(root, "Counters"), i, v)
	{
		if (strcmp(json_string_value(json_object_get(v, "Name")),
		           "rumor.memberlist.probe") == 0)
			c = v;
	}
	REQUIRE(c != NULL, "no rumor.memberlist.probe counter");
	REQUIRE_NUM(3, json_integer_value(json_object_get(c, "Count")));
	REQUIRE_NUM(7, json_real_value(json_object_get(c, "Sum")));
	REQUIRE_NUM(1, json_real_value(json_object_get(c, "Min")));
	REQUIRE_NUM(4, json_real_value(json_object_get(c, "Max")));
	REQUIRE_NUM(7.0 / 3, json_real_value(json_object_get(c, "Mean")));
	REQUIRE_NUM(sqrt(7.0 / 3), json_real_value(json_object_get(c, "Stddev"))); /* var 7/3 */
	json_decref(root);
}

static void test_json_has_consul_shape(void)
{
	metrics_reset();
	metrics_set_gauge(METRIC_MEMBERS_ALIVE, 3);
	metrics_sample(METRIC_LOOP_BUSY, 0.5);
	metrics_inc_label(METRIC_HTTP_REQUESTS, "200");
	char *js = metrics_render_json(1502160910000LL, 1);
	json_error_t e;
	json_t *root = json_loads(js, 0, &e);
	free(js);
	REQUIRE(root != NULL, "JSON does not parse: %s", e.text);
	const char *ts = json_string_value(json_object_get(root, "Timestamp"));
	REQUIRE(ts && strcmp(ts, "2017-08-08 02:55:10 +0000 UTC") == 0, "Timestamp: got %s", ts);
	REQUIRE(json_is_array(json_object_get(root, "Points")) &&
	                json_array_size(json_object_get(root, "Points")) == 0,
	        "Points must be []");
	const char *arrs[] = {"Gauges", "Counters", "Samples"};
	for (int k = 0; k < 3; k++) {
		json_t *a = json_object_get(root, arrs[k]);
		REQUIRE(json_is_array(a) && json_array_size(a) > 0,
		        "%s: expected a non-empty array", arrs[k]);
		size_t i;
		json_t *v;
		json_array_foreach(a, i, v)
		{
			REQUIRE(json_is_string(json_object_get(v, "Name")), "%s[%zu].Name", arrs[k],
			        i);
			REQUIRE(json_is_object(json_object_get(v, "Labels")), "%s[%zu].Labels",
			        arrs[k], i);
			if (k == 0) {
				REQUIRE(json_is_number(json_object_get(v, "Value")),
				        "Gauges[%zu].Value", i);
				REQUIRE(json_object_size(v) == 3, "Gauges[%zu] has %zu keys", i,
				        json_object_size(v));
			} else {
				const char *keys[] = {"Count", "Sum",  "Min",
				                      "Max",   "Mean", "Stddev"};
				for (int j = 0; j < 6; j++)
					REQUIRE(json_is_number(json_object_get(v, keys[j])),
					        "%s[%zu].%s missing", arrs[k], i, keys[j]);
				REQUIRE(json_object_size(v) == 8, "%s[%zu] has %zu keys", arrs[k],
				        i, json_object_size(v));
			}
		}
	}
	/* the labelled gauge */
	json_t *g0 = json_array_get(json_object_get(root, "Gauges"), 0);
	REQUIRE(strcmp(json_string_value(json_object_get(g0, "Name")), "rumor.serf.members") == 0,
	        "first gauge: %s", json_string_value(json_object_get(g0, "Name")));
	REQUIRE(strcmp(json_string_value(json_object_get(json_object_get(g0, "Labels"), "status")),
	               "alive") == 0,
	        "label status=alive expected");
	REQUIRE_NUM(3, json_number_value(json_object_get(g0, "Value")));
	json_decref(root);
}

/* Consul's JSON (go-metrics timers) is in milliseconds: only the
 * Prometheus text converts to seconds. */
static void test_json_keeps_milliseconds(void)
{
	metrics_reset();
	metrics_sample(METRIC_HTTP_LATENCY, 250);
	char *js = metrics_render_json(0, 0);
	REQUIRE(js != NULL, "render_json returned NULL");
	json_t *root = json_loads(js, 0, NULL);
	free(js);
	REQUIRE(root != NULL, "JSON does not parse");
	json_t *found = NULL, *v;
	size_t i;
	json_array_foreach(json_object_get(root, "Samples"), i, v)
	{
		if (strcmp(json_string_value(json_object_get(v, "Name")),
		           "rumor.http.request_ms") == 0)
			found = v;
	}
	REQUIRE(found != NULL, "no rumor.http.request_ms sample");
	REQUIRE_NUM(250, json_real_value(json_object_get(found, "Sum")));
	json_decref(root);
	char *t = metrics_render_prometheus();
	REQUIRE(t != NULL && strstr(t, "rumor_http_request_seconds_sum 0.25\n") != NULL,
	        "prometheus:\n%s", t ? t : "(null)");
	free(t);
}

static void test_prometheus_is_well_formed(void)
{
	metrics_reset();
	metrics_set_gauge(METRIC_MEMBERS_ALIVE, 5);
	metrics_set_gauge(METRIC_MEMBERS_FAILED, 1);
	metrics_set_counter(METRIC_PACKETS_SENT, 42, 42);
	metrics_sample(METRIC_LOOP_BUSY, 1.5);
	metrics_sample(METRIC_LOOP_BUSY, 2.5);
	metrics_inc_label(METRIC_HTTP_REQUESTS, "200");
	metrics_inc_label(METRIC_HTTP_REQUESTS, "404");
	metrics_inc_label(METRIC_HTTP_REQUESTS, "200");
	char *t = metrics_render_prometheus();
	REQUIRE(t != NULL, "render_prometheus returned NULL");
	struct prom_check pc;
	char last[64];
	int r = prom_check_text(&pc, t, last, sizeof(last));
	if (r < 0)
		fprintf(stderr, "%s\n", t);
	REQUIRE(r == 0, "not valid exposition text: %s", pc.err);
	REQUIRE(strstr(t, "rumor_serf_members{status=\"alive\"} 5\n") != NULL, "alive gauge:\n%s",
	        t);
	REQUIRE(strstr(t, "rumor_memberlist_packets_sent_total 42\n") != NULL, "packets:\n%s", t);
	REQUIRE(strstr(t, "rumor_http_requests_total{code=\"200\"} 2\n") != NULL, "200s:\n%s", t);
	/* bumped in ms, shown in base units (seconds), counts unchanged */
	REQUIRE(strstr(t, "rumor_runtime_loop_busy_seconds_sum 0.004\n") != NULL, "sum:\n%s", t);
	REQUIRE(strstr(t, "rumor_runtime_loop_busy_seconds_count 2\n") != NULL, "count:\n%s", t);
	REQUIRE(strstr(t, "# TYPE rumor_runtime_loop_busy_seconds summary\n") != NULL,
	        "summary type");
	REQUIRE(strstr(t, "_ms_") == NULL && strstr(t, "_ms ") == NULL,
	        "an abbreviated unit left:\n%s", t);
	/* the four member rows form one family: one TYPE line */
	const char *p = t;
	int types = 0;
	while ((p = strstr(p, "# TYPE rumor_serf_members ")) != NULL) {
		types++;
		p++;
	}
	REQUIRE(types == 1, "expected 1 TYPE line for rumor_serf_members, got %d", types);
	free(t);
}

static void test_every_row_renders_valid_text(void)
{
	/* every row with a value, dynamic rows with a series */
	metrics_reset();
	for (int id = 0; id < METRICS__COUNT; id++)
		metrics_add((enum metrics_id)id, 1);
	metrics_inc_label(METRIC_HTTP_REQUESTS, "500");
	char *t = metrics_render_prometheus();
	struct prom_check pc;
	char last[64];
	int r = prom_check_text(&pc, t, last, sizeof(last));
	if (r < 0)
		fprintf(stderr, "%s\n", t);
	REQUIRE(r == 0, "not valid exposition text: %s", pc.err);
	REQUIRE(pc.nsamples >= METRICS__COUNT, "expected >= %d samples, got %d", METRICS__COUNT,
	        pc.nsamples);
	for (int i = 0; i < pc.nfam; i++)
		REQUIRE(pc.fam[i].type[0] != '\0', "family %s has no TYPE", pc.fam[i].name);
	free(t);
}

static void test_label_values_are_escaped(void)
{
	metrics_reset();
	const char *nasty = "a\"b\\c\nd";
	metrics_inc_label(METRIC_HTTP_REQUESTS, nasty);
	char *t = metrics_render_prometheus();
	REQUIRE(strstr(t, "{code=\"a\\\"b\\\\c\\nd\"}") != NULL, "escaped label not found in:\n%s",
	        t);
	struct prom_check pc;
	char last[64] = "";
	int r = prom_check_text(&pc, t, last, sizeof(last));
	REQUIRE(r == 0, "not valid exposition text: %s", pc.err);
	REQUIRE(strcmp(last, nasty) == 0, "label did not round-trip: got '%s'", last);
	free(t);
	/* JSON carries it verbatim */
	char *js = metrics_render_json(0, 0);
	json_t *root = json_loads(js, 0, NULL);
	free(js);
	int found = 0;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(root, "Counters"), i, v)
	{
		const char *code =
		        json_string_value(json_object_get(json_object_get(v, "Labels"), "code"));
		if (code && strcmp(code, nasty) == 0)
			found = 1;
	}
	json_decref(root);
	REQUIRE(found, "JSON lacks the labelled counter");
}

static void test_empty_dynamic_family_is_omitted(void)
{
	metrics_reset();
	char *t = metrics_render_prometheus();
	REQUIRE(strstr(t, "rumor_http_requests_total") == NULL, "unused dynamic family shown:\n%s",
	        t);
	free(t);
}

static void test_dynamic_series_overflow_goes_to_row(void)
{
	metrics_reset();
	char lab[16];
	for (int i = 0; i < METRICS_DYN_MAX + 5; i++) {
		snprintf(lab, sizeof(lab), "%d", i);
		metrics_inc_label(METRIC_HTTP_REQUESTS, lab);
	}
	REQUIRE_NUM(5, metrics_value(METRIC_HTTP_REQUESTS));
	REQUIRE_NUM(1, metrics_value_label(METRIC_HTTP_REQUESTS, "7"));
	char *t = metrics_render_prometheus();
	struct prom_check pc;
	char last[64];
	REQUIRE(prom_check_text(&pc, t, last, sizeof(last)) == 0, "invalid: %s", pc.err);
	REQUIRE(strstr(t, "rumor_http_requests_total 5\n") != NULL, "overflow row missing");
	free(t);
}

static int ncalls;
static void collector(void *ud)
{
	ncalls++;
	metrics_set_counter(METRIC_PROBES, 10, (double)(intptr_t)ud);
}

static void test_collectors_run_and_unregister(void)
{
	metrics_reset();
	ncalls = 0;
	REQUIRE(metrics_collector_add(collector, (void *)(intptr_t)10) == 0, "add failed");
	metrics_collect();
	REQUIRE(ncalls == 1, "expected 1 call, got %d", ncalls);
	REQUIRE_NUM(10, metrics_value(METRIC_PROBES));
	metrics_collector_remove(collector, (void *)(intptr_t)10);
	metrics_collect();
	REQUIRE(ncalls == 1, "expected no call after remove, got %d", ncalls);
}

static void test_bad_id_is_ignored(void)
{
	metrics_reset();
	metrics_inc((enum metrics_id)METRICS__COUNT);
	metrics_inc((enum metrics_id) - 1);
	metrics_inc_label((enum metrics_id)9999, "x");
	REQUIRE_NUM(0, metrics_value((enum metrics_id)METRICS__COUNT));
}

int main(void)
{
	RUN(test_prom_name_mangles_dots);
	RUN(test_counter_aggregates);
	RUN(test_json_has_consul_shape);
	RUN(test_json_keeps_milliseconds);
	RUN(test_prometheus_is_well_formed);
	RUN(test_every_row_renders_valid_text);
	RUN(test_label_values_are_escaped);
	RUN(test_empty_dynamic_family_is_omitted);
	RUN(test_dynamic_series_overflow_goes_to_row);
	RUN(test_collectors_run_and_unregister);
	RUN(test_bad_id_is_ignored);
	return check_exit_code();
}
