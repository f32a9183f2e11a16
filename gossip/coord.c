/*
 * gossip/coord.c — Vivaldi coordinates as Serf computes them (see coord.h).
 */
#include "gossip/coord.h"

#include <math.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include "lib/cursor.h"
#include "lib/mp.h"
#include "lib/xalloc.h"

#define ZERO_THRESHOLD 1.0e-6

void coord_config_default(struct coord_config *cfg)
{
	*cfg = (struct coord_config){
	        .error_max = 1.5,
	        .ce = 0.25,
	        .cc = 0.25,
	        .height_min = 10.0e-6,
	        .gravity_rho = 150.0,
	        .adj_window = COORD_ADJ_WINDOW,
	};
}

void coord_new(const struct coord_config *cfg, struct coord *c)
{
	memset(c, 0, sizeof *c);
	c->error = cfg->error_max;
	c->height = cfg->height_min;
}

bool coord_valid(const struct coord *c)
{
	for (int i = 0; i < COORD_DIM; i++)
		if (!isfinite(c->vec[i]))
			return false;
	return isfinite(c->error) && isfinite(c->adjustment) && isfinite(c->height);
}

static double magnitude(const double *v)
{
	double sum = 0.0;
	for (int i = 0; i < COORD_DIM; i++)
		sum += v[i] * v[i];
	return sqrt(sum);
}

/* Go's time.Duration(seconds * 1e9): truncation toward zero, clamped
 * where Go's conversion would be undefined. */
static int64_t to_ns(double seconds)
{
	double ns = seconds * 1.0e9;
	if (isnan(ns))
		return 0;
	if (ns >= 9.2e18)
		return INT64_MAX;
	if (ns <= -9.2e18)
		return INT64_MIN;
	return (int64_t)ns;
}

/* Go's Duration.Seconds(). */
static double ns_seconds(int64_t d)
{
	int64_t sec = d / 1000000000, nsec = d % 1000000000;
	return (double)sec + (double)nsec / 1e9;
}

static double raw_distance(const struct coord *a, const struct coord *b)
{
	double d[COORD_DIM];
	for (int i = 0; i < COORD_DIM; i++)
		d[i] = a->vec[i] - b->vec[i];
	return magnitude(d) + a->height + b->height;
}

int64_t coord_distance_ns(const struct coord *a, const struct coord *b)
{
	double dist = raw_distance(a, b);
	double adjusted = dist + a->adjustment + b->adjustment;
	if (adjusted > 0.0)
		dist = adjusted;
	return to_ns(dist);
}

static double distance_s(const struct coord *a, const struct coord *b)
{
	return ns_seconds(coord_distance_ns(a, b));
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* A uniform double in [0, 1), as Go's rand.Float64. */
static double rand01(uint64_t *s)
{
	return (double)(xorshift(s) >> 11) / 9007199254740992.0;
}

/* The unit vector from b to a and the distance; a random direction (and
 * distance 0) when they coincide. */
static double unit_vector_at(uint64_t *rng, const double *a, const double *b, double *u)
{
	for (int i = 0; i < COORD_DIM; i++)
		u[i] = a[i] - b[i];
	double mag = magnitude(u);
	if (mag > ZERO_THRESHOLD) {
		for (int i = 0; i < COORD_DIM; i++)
			u[i] *= 1.0 / mag;
		return mag;
	}
	for (int i = 0; i < COORD_DIM; i++)
		u[i] = rand01(rng) - 0.5;
	mag = magnitude(u);
	if (mag > ZERO_THRESHOLD) {
		for (int i = 0; i < COORD_DIM; i++)
			u[i] *= 1.0 / mag;
		return 0.0;
	}
	memset(u, 0, sizeof(double) * COORD_DIM);
	u[0] = 1.0;
	return 0.0;
}

/* Serf's ApplyForce: move c by force along the line from other. */
static void apply_force(struct coord_client *cl, struct coord *c, double force,
                        const struct coord *other)
{
	double u[COORD_DIM];
	double mag = unit_vector_at(&cl->rng, c->vec, other->vec, u);
	for (int i = 0; i < COORD_DIM; i++)
		c->vec[i] += u[i] * force;
	if (mag > ZERO_THRESHOLD) {
		c->height = (c->height + other->height) * force / mag + c->height;
		c->height = fmax(c->height, cl->cfg.height_min);
	}
}

void coord_client_init(struct coord_client *cl, const struct coord_config *cfg, uint64_t seed)
{
	memset(cl, 0, sizeof *cl);
	if (cfg)
		cl->cfg = *cfg;
	else
		coord_config_default(&cl->cfg);
	if (cl->cfg.adj_window > COORD_ADJ_WINDOW)
		cl->cfg.adj_window = COORD_ADJ_WINDOW;
	coord_new(&cl->cfg, &cl->c);
	coord_new(&cl->cfg, &cl->origin);
	cl->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

void coord_client_free(struct coord_client *cl)
{
	for (size_t i = 0; i < cl->npeers; i++)
		free(cl->peers[i].name);
	free(cl->peers);
	cl->peers = NULL;
	cl->npeers = cl->cap = 0;
}

static struct coord_peer *peer_get(struct coord_client *cl, const char *node)
{
	for (size_t i = 0; i < cl->npeers; i++)
		if (strcmp(cl->peers[i].name, node) == 0)
			return &cl->peers[i];
	if (cl->npeers == cl->cap) {
		cl->cap = cl->cap ? cl->cap * 2 : 8;
		cl->peers = xrealloc(cl->peers, cl->cap * sizeof *cl->peers);
	}
	struct coord_peer *p = &cl->peers[cl->npeers++];
	*p = (struct coord_peer){.name = xstrdup(node)};
	return p;
}

void coord_client_forget(struct coord_client *cl, const char *node)
{
	for (size_t i = 0; i < cl->npeers; i++) {
		if (strcmp(cl->peers[i].name, node) == 0) {
			free(cl->peers[i].name);
			cl->peers[i] = cl->peers[--cl->npeers];
			return;
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The median of the peer's last COORD_LATENCY_FILTER samples. */
static double latency_filter(struct coord_client *cl, const char *node, double rtt)
{
	struct coord_peer *p = peer_get(cl, node);
	if (p->n == COORD_LATENCY_FILTER) {
		memmove(p->s, p->s + 1, sizeof(double) * (COORD_LATENCY_FILTER - 1));
		p->n--;
	}
	p->s[p->n++] = rtt;
	double sorted[COORD_LATENCY_FILTER];
	memcpy(sorted, p->s, sizeof(double) * p->n);
	qsort(sorted, p->n, sizeof(double), cmp_double);
	return sorted[p->n / 2];
}

static void update_vivaldi(struct coord_client *cl, const struct coord *other, double rtt)
{
	double dist = distance_s(&cl->c, other);
	if (rtt < ZERO_THRESHOLD)
		rtt = ZERO_THRESHOLD;
	double wrongness = fabs(dist - rtt) / rtt;
	double total = cl->c.error + other->error;
	if (total < ZERO_THRESHOLD)
		total = ZERO_THRESHOLD;
	double weight = cl->c.error / total;
	cl->c.error = cl->cfg.ce * weight * wrongness + cl->c.error * (1.0 - cl->cfg.ce * weight);
	if (cl->c.error > cl->cfg.error_max)
		cl->c.error = cl->cfg.error_max;
	double force = cl->cfg.cc * weight * (rtt - dist);
	apply_force(cl, &cl->c, force, other);
}

static void update_adjustment(struct coord_client *cl, const struct coord *other, double rtt)
{
	unsigned w = cl->cfg.adj_window;
	if (w == 0)
		return;
	cl->adj[cl->adj_i] = rtt - raw_distance(&cl->c, other);
	cl->adj_i = (cl->adj_i + 1) % w;
	double sum = 0.0;
	for (unsigned i = 0; i < w; i++)
		sum += cl->adj[i];
	cl->c.adjustment = sum / (2.0 * (double)w);
}

static void update_gravity(struct coord_client *cl)
{
	double dist = distance_s(&cl->origin, &cl->c);
	double force = -1.0 * pow(dist / cl->cfg.gravity_rho, 2.0);
	struct coord origin = cl->origin;
	apply_force(cl, &cl->c, force, &origin);
}

int coord_client_update(struct coord_client *cl, const char *node, const struct coord *other,
                        int64_t rtt_ns)
{
	if (!coord_valid(other) || rtt_ns < 0 || rtt_ns > COORD_MAX_RTT_NS) {
		cl->rejected++;
		return -1;
	}
	double rtt = latency_filter(cl, node, ns_seconds(rtt_ns));
	update_vivaldi(cl, other, rtt);
	update_adjustment(cl, other, rtt);
	update_gravity(cl);
	cl->updates++;
	if (!coord_valid(&cl->c)) {
		cl->resets++;
		coord_new(&cl->cfg, &cl->c);
	}
	return 0;
}

/* ---- wire ---------------------------------------------------------------- */

static void write_f64(struct wcursor *w, double v)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	wcursor_u8(w, 0xcb);
	wcursor_be64(w, bits);
}

static void write_coord(struct wcursor *w, const struct coord *c)
{
	/* go-msgpack writes a struct's fields sorted by name */
	mp_write_map(w, 4);
	mp_write_str(w, "Adjustment");
	write_f64(w, c->adjustment);
	mp_write_str(w, "Error");
	write_f64(w, c->error);
	mp_write_str(w, "Height");
	write_f64(w, c->height);
	mp_write_str(w, "Vec");
	mp_write_array(w, COORD_DIM);
	for (int i = 0; i < COORD_DIM; i++)
		write_f64(w, c->vec[i]);
}

int coord_encode(const struct coord *c, uint8_t *buf, size_t cap)
{
	struct wcursor w = {.p = buf, .cap = cap};
	write_coord(&w, c);
	return wcursor_done(&w);
}

int coord_payload_encode(const struct coord *c, uint8_t *buf, size_t cap)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, COORD_PING_VERSION);
	write_coord(&w, c);
	return wcursor_done(&w);
}

/* A number as Go decodes one into a float64: float32/64, or an integer. */
static int read_number(struct cursor *c, double *v)
{
	if (!cursor_has(c, 1))
		return MP_AGAIN;
	uint8_t b = c->p[0];
	if (b == 0xcb || b == 0xca) {
		unsigned w = b == 0xcb ? 8 : 4;
		if (!cursor_has(c, 1 + (size_t)w))
			return MP_AGAIN;
		if (w == 8) {
			uint64_t bits = be64_get(c->p + 1);
			memcpy(v, &bits, sizeof *v);
		} else {
			uint32_t bits = be32_get(c->p + 1);
			float f;
			memcpy(&f, &bits, sizeof f);
			*v = f;
		}
		c->p += 1 + w;
		return MP_OK;
	}
	if (b >= 0xe0) { /* negative fixint */
		*v = (double)(int8_t)b;
		c->p++;
		return MP_OK;
	}
	uint64_t u;
	int rc = mp_read_uint(c, &u);
	if (rc == MP_OK)
		*v = (double)u;
	return rc;
}

static int read_vec(struct cursor *c, struct coord *out)
{
	uint32_t n;
	if (mp_read_array_or_nil(c, &n) != MP_OK || n != COORD_DIM) {
		mp_fail("coordinate: Vec: not %d numbers", COORD_DIM);
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (read_number(c, &out->vec[i]) != MP_OK) {
			mp_fail("coordinate: Vec[%u]: not a number", (unsigned)i);
			return -1;
		}
	}
	return 0;
}

static int read_field(struct cursor *c, const char *key, struct coord *out, bool *have_vec)
{
	double *f = NULL;
	if (strcasecmp(key, "Vec") == 0) {
		*have_vec = true;
		return read_vec(c, out);
	}
	if (strcasecmp(key, "Error") == 0)
		f = &out->error;
	else if (strcasecmp(key, "Adjustment") == 0)
		f = &out->adjustment;
	else if (strcasecmp(key, "Height") == 0)
		f = &out->height;
	if (!f)
		return mp_skip(c) == MP_OK ? 0 : -1;
	if (read_number(c, f) != MP_OK) {
		mp_fail("coordinate: %s: not a number", key);
		return -1;
	}
	return 0;
}

int coord_decode(const uint8_t *buf, size_t len, struct coord *out, size_t *used)
{
	struct cursor c = {.p = buf, .end = buf + len};
	uint32_t n;
	memset(out, 0, sizeof *out);
	if (mp_read_map(&c, &n) != MP_OK) {
		mp_fail("coordinate: not a map");
		return -1;
	}
	bool have_vec = false;
	for (uint32_t i = 0; i < n; i++) {
		char key[16];
		if (mp_read_key(&c, key, sizeof key) != MP_OK) {
			mp_fail("coordinate: bad key");
			return -1;
		}
		if (read_field(&c, key, out, &have_vec) != 0)
			return -1;
	}
	if (!have_vec) {
		mp_fail("coordinate: no Vec");
		return -1;
	}
	if (!coord_valid(out)) {
		mp_fail("coordinate: not finite");
		return -1;
	}
	if (used)
		*used = (size_t)(c.p - buf);
	return 0;
}

int coord_payload_decode(const uint8_t *buf, size_t len, struct coord *c)
{
	if (len < 1 || buf[0] != COORD_PING_VERSION) {
		mp_fail("coordinate: ping version %d", len ? buf[0] : -1);
		return -1;
	}
	return coord_decode(buf + 1, len - 1, c, NULL);
}
