/*
 * tests/sim/main.c — rumor-sim: run one scenario of the gossip simulator.
 *
 * A scenario is a small JSON document (a file with -f, or inline with -e);
 * command-line flags override its fields. Nodes chosen by "count" or
 * "fraction" are drawn from the seed, so the seed alone reproduces the run.
 * Exit status: 0 when every invariant held, 1 on a violation, 2 on usage.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/sim/sim.h"

static void usage(void)
{
	fprintf(stderr,
	        "usage: rumor-sim [-f scenario.json] [-e JSON] [options]\n"
	        "  -n N            nodes                     -s SEED     seed (default 1)\n"
	        "  -d SECONDS      virtual duration          -p PROFILE  lan|wan|local\n"
	        "  --loss P        packet loss 0..1          --dup P     duplication 0..1\n"
	        "  --latency MS    one-way base latency      --jitter MS exponential jitter mean\n"
	        "  --no-lifeguard  suspicion_max_timeout_mult=1, awareness_max_multiplier=1\n"
	        "  --no-tcp-ping   no TCP fallback ping      --cold      start with a join storm\n"
	        "  --consul-meta   nodes carry a Consul agent's serf tags (~140 B of meta)\n"
	        "  --no-compress   gossip packets uncompressed (memberlist EnableCompression off)\n"
	        "  --crash K@T  --leave K@T  --join K@T  --pause K@T+D   (K nodes at T seconds)\n"
	        "  --curve FILE    write dissemination curves  -v verbose  -q quiet\n"
	        "  --summary FILE  append one tab-separated line of the key figures\n"
	        "network coordinates (docs/SIMULATION.md, \"Network coordinates\"):\n"
	        "  --coords | --no-coords   SWIM's Vivaldi on (implied by --regions) or off\n"
	        "  --regions R     latency matrix: R regions (0: the flat model)\n"
	        "  --world MS  --region-spread MS  --access MS  --detour F  --pair-noise F\n"
	        "  --coord-threshold X  converged: median relative error <= X for good (0.10)\n"
	        "  --coord-every S  --coord-pairs K  --coord-curve FILE (error against time)\n"
	        "  --coord-cdf FILE  append the last sample's error distribution\n"
	        "scenario JSON: {name,nodes,seed,duration,profile,lifeguard,start:warm|join,\n"
	        "  join_window,join_seed,tcp_ping,consul_meta,compress,serf_nodes,\n"
	        "  network:{latency_ms,link_spread_ms,jitter_ms,loss,dup},\n"
	        "  actions:[{at,do:crash|restart|leave|join|pause|partition|heal|loss|slow|flap,\n"
	        "    nodes:[..]|count|fraction,for,value,sizes:[..],oneway,down,up,times}],\n"
	        "  expect:{fp_max,false_suspicions_max,detect_within,first_suspect_within,\n"
	        "    "
	        "join_within,storm_tail,converge,load_max,kv_converge,kv_spread_within,kv_heal_"
	        "within},\n"
	        "  kv:{sync_interval,value_size,map_mb,clock_skew_ms,sync:true|false},\n"
	        "  topology:{regions,world_ms,region_ms,access_ms,detour,pair_noise},\n"
	        "  coordinates:true|false|{threshold,every,pairs},\n"
	        "  expect:{coord_median_max,coord_p90_max,coord_converge_within}}\n"
	        "  kv actions: {at,do:kv_write|kv_delete,nodes:[..]|count,for,key|keys,\n"
	        "    value_size}: count operations at random live nodes, or count at each\n"
	        "    listed node, spread over `for` s; the key, or k0..k<keys-1> drawn per\n"
	        "    operation\n");
}

struct pick {
	int count;
	double fraction;
};

static struct sim_action *actions;
static struct pick *picks;
static int nactions, actions_cap;

/* seconds from a scenario or flag to milliseconds, rounded (0.29 s is
 * 290 ms, not the 289 that truncating 289.99999 gives) */
static int64_t secs_ms(double secs)
{
	return (int64_t)llround(secs * 1000.0);
}

static struct sim_action *add_action(int64_t at_ms, enum sim_act_type t, struct pick p)
{
	if (nactions == actions_cap) {
		actions_cap = actions_cap ? actions_cap * 2 : 16;
		actions = realloc(actions, (size_t)actions_cap * sizeof(*actions));
		picks = realloc(picks, (size_t)actions_cap * sizeof(*picks));
		if (actions == NULL || picks == NULL)
			abort();
	}
	struct sim_action *a = &actions[nactions];
	memset(a, 0, sizeof(*a));
	a->at_ms = at_ms;
	a->type = t;
	picks[nactions] = p;
	nactions++;
	return a;
}

static int parse_type(const char *s, enum sim_act_type *t)
{
	static const struct {
		const char *name;
		enum sim_act_type t;
	} map[] = {{"crash", SIM_CRASH},        {"restart", SIM_RESTART},
	           {"leave", SIM_LEAVE},        {"join", SIM_JOIN},
	           {"pause", SIM_PAUSE},        {"partition", SIM_PARTITION},
	           {"heal", SIM_HEAL},          {"loss", SIM_LOSS},
	           {"slow", SIM_SLOW},          {"kv_write", SIM_KV_WRITE},
	           {"kv_delete", SIM_KV_DELETE}};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(s, map[i].name) == 0) {
			*t = map[i].t;
			return 0;
		}
	}
	return -1;
}

static double jnum(json_t *o, const char *key, double def)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : def;
}

static void set_nodes(struct sim_action *a, json_t *arr)
{
	a->nnodes = (int)json_array_size(arr);
	a->nodes = calloc((size_t)a->nnodes + 1, sizeof(int));
	if (a->nodes == NULL)
		abort();
	for (int i = 0; i < a->nnodes; i++)
		a->nodes[i] = (int)json_integer_value(json_array_get(arr, (size_t)i));
}

static int load_actions(json_t *arr, char *err, size_t errlen)
{
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o)
	{
		const char *what = json_string_value(json_object_get(o, "do"));
		if (what == NULL) {
			snprintf(err, errlen, "action %zu: missing \"do\"", i);
			return -1;
		}
		int64_t at = secs_ms(jnum(o, "at", 0));
		struct pick p = {(int)jnum(o, "count", 0), jnum(o, "fraction", 0)};
		json_t *nodes = json_object_get(o, "nodes");
		if (strcmp(what, "flap") == 0) {
			/* down for `down` s, up for `up` s, `times` times */
			int64_t down = secs_ms(jnum(o, "down", 5));
			int64_t up = secs_ms(jnum(o, "up", 10));
			int times = (int)jnum(o, "times", 3);
			int first = nactions;
			for (int k = 0; k < times; k++) {
				struct sim_action *c = add_action(at, SIM_CRASH, p);
				if (nodes != NULL)
					set_nodes(c, nodes);
				else if (k > 0)
					picks[nactions - 1].count = -1 - first; /* same as first */
				add_action(at + down, SIM_RESTART, (struct pick){0, 0});
				at += down + up;
			}
			continue;
		}
		enum sim_act_type t;
		if (parse_type(what, &t) < 0) {
			snprintf(err, errlen, "action %zu: unknown \"do\": %s", i, what);
			return -1;
		}
		struct sim_action *a = add_action(at, t, p);
		if (nodes != NULL)
			set_nodes(a, nodes);
		a->count = p.count;
		a->value = jnum(o, "value", 0);
		a->dur_ms = secs_ms(jnum(o, "for", 0));
		a->oneway = json_is_true(json_object_get(o, "oneway"));
		if (t == SIM_KV_WRITE || t == SIM_KV_DELETE) {
			json_t *k = json_object_get(o, "key");
			a->key = json_is_string(k) ? json_string_value(k) : NULL;
			a->keys = (int)jnum(o, "keys", 1);
			a->value_size = (int)jnum(o, "value_size", 0);
			if (a->keys < 1 || a->keys > 100000 || a->value_size < 0 ||
			    a->value_size > 65536 || (a->key != NULL && strlen(a->key) == 0)) {
				snprintf(err, errlen,
				         "action %zu: keys 1..100000, value_size "
				         "0..65536, key not empty",
				         i);
				return -1;
			}
		}
		json_t *sizes = json_object_get(o, "sizes");
		for (size_t k = 0; k < json_array_size(sizes) && k < 8; k++)
			a->sizes[a->nsizes++] = (int)json_integer_value(json_array_get(sizes, k));
	}
	return 0;
}

/* -1: coordinates neither asked for nor refused (a topology turns them on) */
static int coords_set = -1;

static void load_coord_json(struct sim_cfg *c, json_t *j)
{
	json_t *t = json_object_get(j, "topology");
	if (json_is_object(t)) {
		c->topo.regions = (int)jnum(t, "regions", c->topo.regions);
		c->topo.world_ms = jnum(t, "world_ms", c->topo.world_ms);
		c->topo.region_ms = jnum(t, "region_ms", c->topo.region_ms);
		c->topo.access_ms = jnum(t, "access_ms", c->topo.access_ms);
		c->topo.detour = jnum(t, "detour", c->topo.detour);
		c->topo.pair_noise = jnum(t, "pair_noise", c->topo.pair_noise);
	}
	json_t *co = json_object_get(j, "coordinates");
	if (json_is_boolean(co))
		coords_set = json_is_true(co);
	if (json_is_object(co)) {
		json_t *en = json_object_get(co, "enabled");
		coords_set = en == NULL || json_is_true(en);
		c->coord.threshold = jnum(co, "threshold", c->coord.threshold);
		c->coord.every_ms = secs_ms(jnum(co, "every", c->coord.every_ms / 1000.0));
		c->coord.max_pairs = (size_t)jnum(co, "pairs", (double)c->coord.max_pairs);
	}
	json_t *ex = json_object_get(j, "expect");
	if (ex != NULL) {
		c->expect.coord_median_max = jnum(ex, "coord_median_max", 0);
		c->expect.coord_p90_max = jnum(ex, "coord_p90_max", 0);
		c->expect.coord_converge_ms = secs_ms(jnum(ex, "coord_converge_within", 0));
	}
}

/* The coordinate flags: how many arguments it took (0: not one of them). */
static int coord_flag(struct sim_cfg *c, const char *a, const char *v)
{
	if (strcmp(a, "--coords") == 0 || strcmp(a, "--no-coords") == 0) {
		coords_set = a[2] == 'c';
		return 1;
	}
	if (v == NULL)
		return 0;
	if (strcmp(a, "--regions") == 0)
		c->topo.regions = atoi(v);
	else if (strcmp(a, "--world") == 0)
		c->topo.world_ms = atof(v);
	else if (strcmp(a, "--region-spread") == 0)
		c->topo.region_ms = atof(v);
	else if (strcmp(a, "--access") == 0)
		c->topo.access_ms = atof(v);
	else if (strcmp(a, "--detour") == 0)
		c->topo.detour = atof(v);
	else if (strcmp(a, "--pair-noise") == 0)
		c->topo.pair_noise = atof(v);
	else if (strcmp(a, "--coord-threshold") == 0)
		c->coord.threshold = atof(v);
	else if (strcmp(a, "--coord-every") == 0)
		c->coord.every_ms = secs_ms(atof(v));
	else if (strcmp(a, "--coord-pairs") == 0)
		c->coord.max_pairs = (size_t)atol(v);
	else if (strcmp(a, "--coord-curve") == 0)
		c->coord.curve = v;
	else if (strcmp(a, "--coord-cdf") == 0)
		c->coord.cdf = v;
	else
		return 0;
	return 2;
}

static int load_json(struct sim_cfg *c, json_t *j, char *err, size_t errlen)
{
	if (!json_is_object(j)) {
		snprintf(err, errlen, "scenario is not a JSON object");
		return -1;
	}
	json_t *v;
	if ((v = json_object_get(j, "name")) && json_is_string(v))
		c->name = json_string_value(v);
	c->nodes = (int)jnum(j, "nodes", c->nodes);
	c->seed = (uint64_t)jnum(j, "seed", (double)c->seed);
	c->duration_ms = secs_ms(jnum(j, "duration", c->duration_ms / 1000.0));
	if ((v = json_object_get(j, "profile")) && json_is_string(v))
		c->profile = json_string_value(v);
	if ((v = json_object_get(j, "lifeguard")))
		c->lifeguard = json_is_true(v);
	if ((v = json_object_get(j, "tcp_ping")))
		c->tcp_ping = json_is_true(v);
	if ((v = json_object_get(j, "join_seed")))
		c->join_seed = json_is_true(v);
	if ((v = json_object_get(j, "consul_meta")))
		c->consul_meta = json_is_true(v);
	if ((v = json_object_get(j, "serf_nodes")) && json_is_integer(v))
		c->serf_nodes = (int)json_integer_value(v);
	if ((v = json_object_get(j, "compress")))
		c->gossip_plain = !json_is_true(v);
	if ((v = json_object_get(j, "start")) && json_is_string(v))
		c->warm = strcmp(json_string_value(v), "join") != 0;
	c->join_window_ms = secs_ms(jnum(j, "join_window", c->join_window_ms / 1000.0));
	json_t *net = json_object_get(j, "network");
	if (net != NULL) {
		c->latency_ms = jnum(net, "latency_ms", c->latency_ms);
		c->link_spread_ms = jnum(net, "link_spread_ms", c->link_spread_ms);
		c->jitter_ms = jnum(net, "jitter_ms", c->jitter_ms);
		c->loss = jnum(net, "loss", c->loss);
		c->dup = jnum(net, "dup", c->dup);
	}
	json_t *ex = json_object_get(j, "expect");
	if (ex != NULL) {
		c->expect.fp_max = (int64_t)jnum(ex, "fp_max", -1);
		c->expect.detect_ms = secs_ms(jnum(ex, "detect_within", 0));
		c->expect.first_suspect_ms = secs_ms(jnum(ex, "first_suspect_within", 0));
		c->expect.join_ms = secs_ms(jnum(ex, "join_within", 0));
		c->expect.storm_tail = jnum(ex, "storm_tail", 0);
		c->expect.converge = json_is_true(json_object_get(ex, "converge"));
		c->expect.load_max = jnum(ex, "load_max", 0);
		c->expect.fsusp_max = (int64_t)jnum(ex, "false_suspicions_max", -1);
		c->expect.kv_converge = json_is_true(json_object_get(ex, "kv_converge"));
		c->expect.kv_spread_ms = secs_ms(jnum(ex, "kv_spread_within", 0));
		c->expect.kv_heal_ms = secs_ms(jnum(ex, "kv_heal_within", 0));
	}
	json_t *kv = json_object_get(j, "kv");
	if (kv != NULL) {
		c->kv.enabled = true;
		c->kv.sync_interval_ms =
		        secs_ms(jnum(kv, "sync_interval", c->kv.sync_interval_ms / 1000.0));
		c->kv.value_size = (int)jnum(kv, "value_size", c->kv.value_size);
		c->kv.map_size = (size_t)(jnum(kv, "map_mb", (double)(c->kv.map_size >> 20))) << 20;
		c->kv.skew_ms = jnum(kv, "clock_skew_ms", c->kv.skew_ms);
		if ((v = json_object_get(kv, "sync")))
			c->kv.no_sync = json_is_false(v);
		if (c->kv.sync_interval_ms < 100 || c->kv.value_size < 0 ||
		    c->kv.value_size > 65536 || c->kv.map_size < (1u << 20)) {
			snprintf(err, errlen,
			         "kv: sync_interval >= 0.1 s, value_size 0..65536, "
			         "map_mb >= 1");
			return -1;
		}
	}
	load_coord_json(c, j);
	json_t *acts = json_object_get(j, "actions");
	if (acts != NULL && load_actions(acts, err, errlen) < 0)
		return -1;
	return 0;
}

/* Draw the nodes of actions given by count/fraction, distinct across actions. */
static void resolve_picks(struct sim_cfg *c)
{
	uint64_t x = c->seed * 0x9e3779b97f4a7c15ull + 12345;
	char *used = calloc((size_t)c->nodes + 1, 1);
	if (used == NULL)
		abort();
	int avail = c->nodes - 1; /* node 0 is the seed joiners contact first */
	for (int i = 0; i < nactions; i++) {
		struct sim_action *a = &actions[i];
		if (a->type == SIM_KV_WRITE || a->type == SIM_KV_DELETE) {
			c->kv.enabled = true; /* their nodes are drawn while running */
			continue;
		}
		if (a->nnodes > 0 || a->type == SIM_JOIN || a->type == SIM_RESTART ||
		    a->type == SIM_HEAL || a->type == SIM_LOSS || a->type == SIM_PARTITION)
			continue;
		if (picks[i].count < 0) {
			struct sim_action *f = &actions[-1 - picks[i].count];
			a->nnodes = f->nnodes;
			a->nodes = calloc((size_t)a->nnodes + 1, sizeof(int));
			if (a->nodes == NULL)
				abort();
			memcpy(a->nodes, f->nodes, (size_t)a->nnodes * sizeof(int));
			continue;
		}
		int k = picks[i].count;
		if (picks[i].fraction > 0)
			k = (int)(picks[i].fraction * c->nodes + 0.5);
		if (k < 1)
			k = 1;
		if (k > avail)
			k = avail;
		a->nodes = calloc((size_t)k + 1, sizeof(int));
		if (a->nodes == NULL)
			abort();
		for (int got = 0; got < k;) {
			x += 0x9e3779b97f4a7c15ull;
			uint64_t z = x;
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
			z ^= z >> 31;
			int id = 1 + (int)(z % (uint64_t)(c->nodes - 1));
			if (used[id])
				continue;
			used[id] = 1;
			a->nodes[got++] = id;
			avail--;
		}
		a->nnodes = k;
	}
	free(used);
}

static int parse_kat(const char *s, int *k, double *at, double *dur)
{
	*dur = 0;
	char *end;
	*k = (int)strtol(s, &end, 10);
	if (*end != '@')
		return -1;
	*at = strtod(end + 1, &end);
	if (*end == '+')
		*dur = strtod(end + 1, &end);
	return *end == '\0' ? 0 : -1;
}

/* Load every -f file and -e document into c, in order; the JSON roots
 * (c points into them) go to roots[]. 0, or 2 after printing why not. */
static int load_docs(int argc, char **argv, struct sim_cfg *c, json_t **roots)
{
	char err[256];
	int nroots = 0;
	for (int i = 1; i < argc; i++) {
		json_t *j = NULL;
		json_error_t je;
		if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
			j = json_load_file(argv[++i], 0, &je);
		} else if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
			j = json_loads(argv[++i], 0, &je);
		} else {
			continue;
		}
		if (j == NULL) {
			fprintf(stderr, "rumor-sim: %s: line %d: %s\n", argv[i], je.line, je.text);
			return 2;
		}
		if (load_json(c, j, err, sizeof(err)) < 0) {
			fprintf(stderr, "rumor-sim: %s: %s\n", argv[i], err);
			return 2;
		}
		roots[nroots++ % 8] = j; /* strings in c point into it */
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sim_cfg c;
	sim_cfg_defaults(&c);
	char err[256];
	json_t *roots[8] = {NULL};
	/* the JSON first, so flags override it whatever their order */
	if (load_docs(argc, argv, &c, roots) != 0)
		return 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int k;
		double at, dur;
		int took = coord_flag(&c, a, v);
		if (took > 0) {
			i += took - 1;
		} else if (strcmp(a, "-f") == 0 || strcmp(a, "-e") == 0) {
			i++;
		} else if (strcmp(a, "-n") == 0 && v) {
			c.nodes = atoi(v);
			i++;
		} else if (strcmp(a, "-s") == 0 && v) {
			c.seed = strtoull(v, NULL, 10);
			i++;
		} else if (strcmp(a, "-d") == 0 && v) {
			c.duration_ms = secs_ms(atof(v));
			i++;
		} else if (strcmp(a, "-p") == 0 && v) {
			c.profile = v;
			i++;
		} else if (strcmp(a, "--loss") == 0 && v) {
			c.loss = atof(v);
			i++;
		} else if (strcmp(a, "--dup") == 0 && v) {
			c.dup = atof(v);
			i++;
		} else if (strcmp(a, "--latency") == 0 && v) {
			c.latency_ms = atof(v);
			i++;
		} else if (strcmp(a, "--jitter") == 0 && v) {
			c.jitter_ms = atof(v);
			i++;
		} else if (strcmp(a, "--curve") == 0 && v) {
			c.curve_csv = v;
			i++;
		} else if (strcmp(a, "--summary") == 0 && v) {
			c.summary = v;
			i++;
		} else if (strcmp(a, "--no-lifeguard") == 0) {
			c.lifeguard = false;
		} else if (strcmp(a, "--lifeguard") == 0) {
			c.lifeguard = true;
		} else if (strcmp(a, "--no-tcp-ping") == 0) {
			c.tcp_ping = false;
		} else if (strcmp(a, "--consul-meta") == 0) {
			c.consul_meta = true;
		} else if (strcmp(a, "--no-compress") == 0) {
			c.gossip_plain = true;
		} else if (strcmp(a, "--cold") == 0) {
			c.warm = false;
		} else if (strcmp(a, "-v") == 0) {
			c.verbose++;
		} else if (strcmp(a, "-q") == 0) {
			c.quiet = true;
		} else if ((strcmp(a, "--crash") == 0 || strcmp(a, "--leave") == 0 ||
		            strcmp(a, "--join") == 0 || strcmp(a, "--pause") == 0) &&
		           v && parse_kat(v, &k, &at, &dur) == 0) {
			enum sim_act_type t = a[2] == 'c'   ? SIM_CRASH
			                      : a[2] == 'l' ? SIM_LEAVE
			                      : a[2] == 'j' ? SIM_JOIN
			                                    : SIM_PAUSE;
			struct sim_action *x = add_action(secs_ms(at), t, (struct pick){k, 0});
			x->count = k;
			x->dur_ms = secs_ms(dur);
			i++;
		} else {
			usage();
			return 2;
		}
	}
	c.coord.enabled = coords_set >= 0 ? coords_set == 1 : c.topo.regions > 0;
	resolve_picks(&c);
	for (int i = 0; i < nactions && c.verbose; i++) {
		printf("action %d at %.3f s:", i, actions[i].at_ms / 1e3);
		for (int k = 0; k < actions[i].nnodes; k++)
			printf(" n%d", actions[i].nodes[k]);
		printf("\n");
	}
	c.actions = actions;
	c.nactions = nactions;
	struct sim *sim = sim_new(&c, err, sizeof(err));
	if (sim == NULL) {
		fprintf(stderr, "rumor-sim: %s\n", err);
		return 2;
	}
	int v = sim_run(sim, stdout);
	sim_free(sim);
	for (int i = 0; i < nactions; i++)
		free(actions[i].nodes);
	free(actions);
	free(picks);
	for (int i = 0; i < 8; i++)
		json_decref(roots[i]);
	return v > 0 ? 1 : 0;
}
