/*
 * agent/metrics.c — see metrics.h.
 *
 * Storage: one struct metrics_val per table row (static array indexed by
 * enum metrics_id) plus a small array of dynamic-label series found by a
 * linear scan (a few dozen entries at most: status codes, rcodes).
 * Renderers walk the table in order; rows of one family are adjacent, so a
 * family's HELP and TYPE lines are written once, before its first sample.
 *
 * Units: values are kept as bumped (milliseconds for "_ms" names), and the
 * JSON shows them so, as go-metrics' timers and Consul's JSON do.  The
 * Prometheus renderer converts to base units, because Prometheus' naming
 * rules (and `promtool check metrics`) want seconds: "x_ms" is shown as
 * "x_seconds" with its values divided by 1000; counts stay counts.
 */
#include "agent/metrics.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct metrics_def {
	enum metrics_kind kind;
	const char *name;
	const char *lkey;
	const char *lval;
	const char *help;
};

static const struct metrics_def defs[METRICS__COUNT] = {
#define METRICS_X_DEF(id, kind, name, lk, lv, help) {METRICS_##kind, name, lk, lv, help},
        METRICS_TABLE(METRICS_X_DEF)
#undef METRICS_X_DEF
};

struct metrics_val {
	uint64_t count;
	double sum, min, max, sumsq;
};

struct metrics_dyn {
	int id; /* -1: free */
	char label[METRICS_LABEL_MAX];
	struct metrics_val v;
};

struct metrics_collector {
	void (*fn)(void *ud);
	void *ud;
};

static struct metrics_val vals[METRICS__COUNT];
static struct metrics_dyn dyn[METRICS_DYN_MAX];
static size_t ndyn;
static struct metrics_collector collectors[METRICS_MAX_COLLECTORS];

static int valid(enum metrics_id id)
{
	return (unsigned)id < METRICS__COUNT;
}

static void val_add(struct metrics_val *v, double x)
{
	if (v->count == 0 || x < v->min)
		v->min = x;
	if (v->count == 0 || x > v->max)
		v->max = x;
	v->count++;
	v->sum += x;
	v->sumsq += x * x;
}

static void val_set_total(struct metrics_val *v, uint64_t count, double sum)
{
	v->count = count;
	v->sum = sum;
	double mean = count ? sum / (double)count : 0;
	v->min = v->max = mean;
	v->sumsq = count ? sum * mean : 0; /* stddev 0 */
}

void metrics_inc(enum metrics_id id)
{
	metrics_add(id, 1);
}

void metrics_add(enum metrics_id id, double v)
{
	if (valid(id))
		val_add(&vals[id], v);
}

void metrics_sample(enum metrics_id id, double v)
{
	metrics_add(id, v);
}

void metrics_set_gauge(enum metrics_id id, double v)
{
	if (valid(id)) {
		vals[id].count = 1;
		vals[id].sum = v;
	}
}

void metrics_set_counter(enum metrics_id id, uint64_t count, double sum)
{
	if (valid(id))
		val_set_total(&vals[id], count, sum);
}

/* The series of (id, label); created if absent; falls back to the row. */
static struct metrics_val *dyn_get(enum metrics_id id, const char *label)
{
	if (!valid(id))
		return NULL;
	if (label == NULL || defs[id].lkey == NULL || defs[id].lval != NULL)
		return &vals[id];
	for (size_t i = 0; i < ndyn; i++)
		if (dyn[i].id == (int)id && strcmp(dyn[i].label, label) == 0)
			return &dyn[i].v;
	if (ndyn == METRICS_DYN_MAX)
		return &vals[id];
	struct metrics_dyn *d = &dyn[ndyn++];
	memset(d, 0, sizeof(*d));
	d->id = (int)id;
	snprintf(d->label, sizeof(d->label), "%s", label);
	return &d->v;
}

void metrics_inc_label(enum metrics_id id, const char *label)
{
	metrics_add_label(id, label, 1);
}

void metrics_add_label(enum metrics_id id, const char *label, double v)
{
	struct metrics_val *mv = dyn_get(id, label);
	if (mv != NULL)
		val_add(mv, v);
}

void metrics_set_gauge_label(enum metrics_id id, const char *label, double v)
{
	struct metrics_val *mv = dyn_get(id, label);
	if (mv != NULL) {
		mv->count = 1;
		mv->sum = v;
	}
}

int metrics_collector_add(void (*fn)(void *ud), void *ud)
{
	for (size_t i = 0; i < METRICS_MAX_COLLECTORS; i++) {
		if (collectors[i].fn == NULL) {
			collectors[i].fn = fn;
			collectors[i].ud = ud;
			return 0;
		}
	}
	return -1;
}

void metrics_collector_remove(void (*fn)(void *ud), void *ud)
{
	for (size_t i = 0; i < METRICS_MAX_COLLECTORS; i++)
		if (collectors[i].fn == fn && collectors[i].ud == ud)
			collectors[i].fn = NULL;
}

void metrics_collect(void)
{
	for (size_t i = 0; i < METRICS_MAX_COLLECTORS; i++)
		if (collectors[i].fn != NULL)
			collectors[i].fn(collectors[i].ud);
}

void metrics_reset(void)
{
	memset(vals, 0, sizeof(vals));
	memset(dyn, 0, sizeof(dyn));
	ndyn = 0;
}

double metrics_value(enum metrics_id id)
{
	return valid(id) ? vals[id].sum : 0;
}

double metrics_value_label(enum metrics_id id, const char *label)
{
	for (size_t i = 0; i < ndyn; i++)
		if (dyn[i].id == (int)id && strcmp(dyn[i].label, label) == 0)
			return dyn[i].v.sum;
	return 0;
}

/* True when a dotted name is in milliseconds (ends in "_ms"): Prometheus
 * wants base units, so the renderer shows it as _seconds, values / 1000. */
static int is_ms(const char *dotted)
{
	size_t l = strlen(dotted);
	return l > 3 && strcmp(dotted + l - 3, "_ms") == 0;
}

size_t metrics_prom_name(char *out, size_t outlen, const char *dotted)
{
	static const char prefix[] = "rumor_", seconds[] = "_seconds";
	size_t n = 0, dl = strlen(dotted);
	if (is_ms(dotted))
		dl -= 3;
	for (const char *p = prefix; *p; p++, n++)
		if (n + 1 < outlen)
			out[n] = *p;
	for (size_t i = 0; i < dl; i++, n++) {
		char ch = dotted[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		         (ch >= '0' && ch <= '9') || ch == '_';
		if (n + 1 < outlen)
			out[n] = ok ? ch : '_';
	}
	for (const char *p = seconds; dl < strlen(dotted) && *p; p++, n++)
		if (n + 1 < outlen)
			out[n] = *p;
	if (outlen > 0)
		out[n < outlen ? n : outlen - 1] = '\0';
	return n;
}

/* ---------------------------------------------------------------- JSON */

static double stddev(const struct metrics_val *v)
{
	if (v->count < 2)
		return 0;
	double mean = v->sum / (double)v->count;
	double var = (v->sumsq - mean * v->sum) / (double)(v->count - 1);
	return var > 0 ? sqrt(var) : 0;
}

static json_t *labels_json(const char *key, const char *value)
{
	json_t *o = json_object();
	if (key != NULL && value != NULL)
		json_object_set_new(o, key, json_string(value));
	return o;
}

static json_t *agg_json(const char *name, const struct metrics_val *v, const char *lk,
                        const char *lv)
{
	return json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:o}", "Name", name, "Count",
	                 (json_int_t)v->count, "Sum", v->sum, "Min", v->min, "Max", v->max, "Mean",
	                 v->count ? v->sum / (double)v->count : 0.0, "Stddev", stddev(v), "Labels",
	                 labels_json(lk, lv));
}

static void add_series(json_t *gauges, json_t *counters, json_t *samples, enum metrics_id id,
                       const struct metrics_val *v, const char *lv)
{
	const struct metrics_def *d = &defs[id];
	char name[160];
	snprintf(name, sizeof(name), "rumor.%s", d->name);
	switch (d->kind) {
	case METRICS_GAUGE:
		json_array_append_new(gauges,
		                      json_pack("{s:s, s:f, s:o}", "Name", name, "Value", v->sum,
		                                "Labels", labels_json(d->lkey, lv)));
		break;
	case METRICS_COUNTER:
		json_array_append_new(counters, agg_json(name, v, d->lkey, lv));
		break;
	case METRICS_SAMPLE:
		json_array_append_new(samples, agg_json(name, v, d->lkey, lv));
		break;
	}
}

char *metrics_render_json(int64_t unix_ms, int pretty)
{
	json_t *gauges = json_array(), *counters = json_array(), *samples = json_array();
	for (int id = 0; id < METRICS__COUNT; id++) {
		const struct metrics_def *d = &defs[id];
		int dynamic = d->lkey != NULL && d->lval == NULL;
		/* a dynamic row shows its unlabelled overflow only if used */
		if (!dynamic || vals[id].count > 0)
			add_series(gauges, counters, samples, id, &vals[id], d->lval);
		if (dynamic)
			for (size_t i = 0; i < ndyn; i++)
				if (dyn[i].id == id)
					add_series(gauges, counters, samples, id, &dyn[i].v,
					           dyn[i].label);
	}
	/* Consul's (Go's) time format: "2017-08-08 02:55:10 +0000 UTC" */
	time_t secs = (time_t)(unix_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char ts[64];
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
	json_t *root = json_pack("{s:s, s:o, s:[], s:o, s:o}", "Timestamp", ts, "Gauges", gauges,
	                         "Points", "Counters", counters, "Samples", samples);
	if (root == NULL)
		return NULL;
	char *s = json_dumps(root, pretty ? JSON_INDENT(4) : JSON_COMPACT);
	json_decref(root);
	return s;
}

/* ---------------------------------------------------------- Prometheus */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (size_t)n + 1;
		char *np = realloc(b->p, ncap);
		if (np == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Escaping per the exposition format: HELP escapes \ and newline; label
 * values also escape the double quote. */
static void sb_escaped(struct sbuf *b, const char *s, int quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			sb_printf(b, "\\\\");
		else if (*s == '\n')
			sb_printf(b, "\\n");
		else if (quote && *s == '"')
			sb_printf(b, "\\\"");
		else
			sb_printf(b, "%c", *s);
	}
}

static void sb_value(struct sbuf *b, double v)
{
	if (isnan(v))
		sb_printf(b, "NaN");
	else if (isinf(v))
		sb_printf(b, v > 0 ? "+Inf" : "-Inf");
	else {
		/* the shortest of 15 or 17 digits that reads back as v: 0.004,
		 * not 0.0040000000000000001 */
		char t[32];
		snprintf(t, sizeof(t), "%.15g", v);
		if (strtod(t, NULL) != v)
			snprintf(t, sizeof(t), "%.17g", v);
		sb_printf(b, "%s", t);
	}
}

static void prom_sample(struct sbuf *b, const char *name, const char *suffix, const char *lk,
                        const char *lv, double v)
{
	sb_printf(b, "%s%s", name, suffix);
	if (lk != NULL && lv != NULL) {
		sb_printf(b, "{%s=\"", lk);
		sb_escaped(b, lv, 1);
		sb_printf(b, "\"}");
	}
	sb_printf(b, " ");
	sb_value(b, v);
	sb_printf(b, "\n");
}

static void prom_series(struct sbuf *b, const struct metrics_def *d, const char *name,
                        const struct metrics_val *v, const char *lv)
{
	double div = is_ms(d->name) ? 1000 : 1; /* base units: seconds */
	switch (d->kind) {
	case METRICS_GAUGE:
		prom_sample(b, name, "", d->lkey, lv, v->sum / div);
		break;
	case METRICS_COUNTER:
		prom_sample(b, name, "_total", d->lkey, lv, v->sum / div);
		break;
	case METRICS_SAMPLE:
		prom_sample(b, name, "_sum", d->lkey, lv, v->sum / div);
		prom_sample(b, name, "_count", d->lkey, lv, (double)v->count);
		break;
	}
}

char *metrics_render_prometheus(void)
{
	struct sbuf b = {0};
	b.cap = 4096;
	b.p = malloc(b.cap);
	if (b.p == NULL)
		return NULL;
	b.p[0] = '\0';
	const char *family = NULL;
	const char *help = NULL;
	for (int id = 0; id < METRICS__COUNT; id++) {
		const struct metrics_def *d = &defs[id];
		int dynamic = d->lkey != NULL && d->lval == NULL;
		if (family == NULL || strcmp(family, d->name) != 0) {
			family = d->name;
			help = d->help;
		} else if (d->help != NULL) {
			help = d->help;
		}
		int any = !dynamic || vals[id].count > 0;
		for (size_t i = 0; dynamic && !any && i < ndyn; i++)
			any = dyn[i].id == id;
		if (!any)
			continue;
		char name[160];
		metrics_prom_name(name, sizeof(name), d->name);
		/* HELP/TYPE before the first row of the family that has a sample */
		int first = id == 0 || strcmp(defs[id - 1].name, d->name) != 0;
		int printed = 0;
		for (int j = id - 1; !first && j >= 0 && strcmp(defs[j].name, d->name) == 0; j--) {
			int jdyn = defs[j].lkey != NULL && defs[j].lval == NULL;
			if (!jdyn || vals[j].count > 0)
				printed = 1;
			for (size_t i = 0; jdyn && i < ndyn; i++)
				if (dyn[i].id == j)
					printed = 1;
		}
		if (!printed) {
			const char *type = d->kind == METRICS_GAUGE     ? "gauge"
			                   : d->kind == METRICS_COUNTER ? "counter"
			                                                : "summary";
			const char *suffix = d->kind == METRICS_COUNTER ? "_total" : "";
			sb_printf(&b, "# HELP %s%s ", name, suffix);
			sb_escaped(&b, help ? help : d->name, 0);
			sb_printf(&b, "\n# TYPE %s%s %s\n", name, suffix, type);
		}
		if (!dynamic || vals[id].count > 0)
			prom_series(&b, d, name, &vals[id], d->lval);
		for (size_t i = 0; dynamic && i < ndyn; i++)
			if (dyn[i].id == id)
				prom_series(&b, d, name, &dyn[i].v, dyn[i].label);
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
