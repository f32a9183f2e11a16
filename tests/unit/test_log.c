/*
 * test_log.c — log subscribers (levels independent of the threshold, no
 * recursion, unsubscribe), the text/JSON line formats, size rotation of
 * the log file with pruning of old files, and the ring of the last 512
 * records that a monitor gets on connect.
 */
#include "lib/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"

struct sink {
	int n;
	char last[512];
	enum log_level level;
};

static void sink_fn(void *ud, const struct log_record *r)
{
	struct sink *s = ud;
	s->n++;
	s->level = r->level;
	snprintf(s->last, sizeof(s->last), "%s", r->msg);
	log_info("recursive line from a sink"); /* must be dropped, not recursed */
}

static void test_subscriber_gets_lines_below_threshold(void)
{
	struct sink s = {0};
	log_set_level(LOG_ERR); /* stderr quiet */
	REQUIRE(log_subscribe(sink_fn, &s, LOG_DEBUG) == 0, "subscribe failed");
	log_debug("agent: hello %d", 42);
	log_trace("agent: too verbose");
	REQUIRE(s.n == 1, "expected 1 line, got %d", s.n);
	REQUIRE(strcmp(s.last, "agent: hello 42") == 0, "got '%s'", s.last);
	REQUIRE(s.level == LOG_DEBUG, "level: got %d", (int)s.level);
	log_unsubscribe(sink_fn, &s);
	log_info("agent: after");
	REQUIRE(s.n == 1, "line after unsubscribe: n=%d", s.n);
	log_set_level(LOG_INFO);
}

static void test_two_subscribers_have_their_own_levels(void)
{
	struct sink a = {0}, b = {0};
	log_set_level(LOG_ERR);
	log_subscribe(sink_fn, &a, LOG_TRACE);
	log_subscribe(sink_fn, &b, LOG_WARN);
	log_info("x: info");
	log_warn("x: warn");
	log_unsubscribe(sink_fn, &a);
	log_unsubscribe(sink_fn, &b);
	log_set_level(LOG_INFO);
	REQUIRE(a.n == 2 && b.n == 1, "expected 2 and 1, got %d and %d", a.n, b.n);
}

static void test_text_format(void)
{
	struct log_record r = {LOG_WARN, "2026-11-28T03:13:00.123Z", "memberlist: Suspect n2"};
	char buf[256];
	size_t n = log_format(buf, sizeof(buf), &r, false);
	const char *want = "2026-11-28T03:13:00.123Z [WARN]  memberlist: Suspect n2\n";
	REQUIRE(strcmp(buf, want) == 0, "got '%s'", buf);
	REQUIRE(n == strlen(want), "length %zu", n);
}

static void test_json_format_splits_module_and_escapes(void)
{
	struct log_record r = {LOG_INFO, "2026-11-28T03:13:00.123Z",
	                       "serf: say \"hi\"\\ \n\x01 done"};
	char buf[512];
	log_format(buf, sizeof(buf), &r, true);
	REQUIRE(buf[strlen(buf) - 1] == '\n', "no newline");
	json_error_t e;
	json_t *j = json_loads(buf, 0, &e);
	REQUIRE(j != NULL, "not JSON (%s): %s", e.text, buf);
	REQUIRE(strcmp(json_string_value(json_object_get(j, "@level")), "info") == 0, "level");
	REQUIRE(strcmp(json_string_value(json_object_get(j, "@module")), "serf") == 0, "module");
	REQUIRE(strcmp(json_string_value(json_object_get(j, "@message")),
	               "say \"hi\"\\ \n\x01 done") == 0,
	        "message: %s", json_string_value(json_object_get(j, "@message")));
	REQUIRE(strcmp(json_string_value(json_object_get(j, "@timestamp")),
	               "2026-11-28T03:13:00.123Z") == 0,
	        "timestamp");
	json_decref(j);
	/* no module: no @module key */
	struct log_record r2 = {LOG_ERR, "t", "plain message: with colon later"};
	log_format(buf, sizeof(buf), &r2, true);
	j = json_loads(buf, 0, NULL);
	REQUIRE(j != NULL && json_object_get(j, "@module") == NULL, "unexpected @module: %s", buf);
	REQUIRE(strcmp(json_string_value(json_object_get(j, "@level")), "error") == 0, "level err");
	json_decref(j);
}

static void test_cut_line_still_ends_in_newline(void)
{
	struct log_record r = {LOG_INFO, "t", "agent: a long message that does not fit"};
	char buf[16];
	size_t n = log_format(buf, sizeof(buf), &r, false);
	REQUIRE(n > sizeof(buf), "expected the full length %zu > 16", n);
	REQUIRE(strlen(buf) == 15 && buf[14] == '\n', "cut line: '%s'", buf);
}

static void test_file_rotates_by_size_and_keeps_max_files(void)
{
	char dir[] = "/tmp/rumor-test-log.XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL, "mkdtemp failed");
	char path[256];
	snprintf(path, sizeof(path), "%s/agent.log", dir);
	log_set_level(LOG_INFO);
	REQUIRE(log_set_file(path) == 0, "cannot open %s", path);
	log_set_rotation(300, 0, 2);
	int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, 2); /* keep stderr quiet */
	for (int i = 0; i < 40; i++)
		log_info("agent: line %02d of the rotation test, about eighty bytes long", i);
	dup2(saved, 2);
	close(saved);
	close(devnull);
	log_set_file(NULL);
	log_set_rotation(0, 0, 0);
	int rotated = 0, current = 0;
	long cur_size = -1;
	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char p[600];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (strcmp(e->d_name, "agent.log") == 0) {
			struct stat st;
			stat(p, &st);
			cur_size = (long)st.st_size;
			current = 1;
		} else if (strncmp(e->d_name, "agent.log.", 10) == 0) {
			rotated++;
		} else {
			continue;
		}
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
	REQUIRE(current == 1, "current log file missing");
	REQUIRE(rotated == 2, "expected 2 rotated files kept, got %d", rotated);
	REQUIRE(cur_size >= 0 && cur_size < 300 + 200, "current file too big: %ld", cur_size);
}

struct replay {
	int n;
	int first, last; /* the numbers in "ring: line <n>" */
	bool ordered;
	bool below_min;
	enum log_level min;
};

static void replay_fn(void *ud, const struct log_record *r)
{
	struct replay *p = ud;
	int v = -1;
	sscanf(r->msg, "ring: line %d", &v);
	if (p->n == 0)
		p->first = v;
	else if (v <= p->last)
		p->ordered = false;
	p->last = v;
	if (r->level < p->min)
		p->below_min = true;
	p->n++;
}

static void test_ring_replays_last_512_oldest_first(void)
{
	log_ring_clear();
	int fd = dup(2), null = open("/dev/null", O_WRONLY);
	dup2(null, 2); /* the 700 lines go to stderr too */
	log_set_level(LOG_INFO);
	for (int i = 0; i < 700; i++)
		log_info("ring: line %d", i);
	dup2(fd, 2);
	close(fd);
	close(null);
	struct replay p = {.ordered = true, .min = LOG_TRACE};
	size_t n = log_replay(replay_fn, &p, LOG_TRACE);
	REQUIRE(n == LOG_RING_LINES && p.n == LOG_RING_LINES, "expected %d lines, got %zu/%d",
	        LOG_RING_LINES, n, p.n);
	REQUIRE(p.first == 700 - LOG_RING_LINES && p.last == 699,
	        "expected lines %d..699, got %d..%d", 700 - LOG_RING_LINES, p.first, p.last);
	REQUIRE(p.ordered, "replay not oldest first");
	log_ring_clear();
	struct replay e = {.ordered = true};
	REQUIRE(log_replay(replay_fn, &e, LOG_TRACE) == 0 && e.n == 0, "cleared ring replayed %d",
	        e.n);
}

static void test_ring_keeps_what_stderr_got_and_replay_filters_by_level(void)
{
	log_ring_clear();
	log_set_level(LOG_WARN); /* stderr (and so the ring) from warn up */
	int fd = dup(2), null = open("/dev/null", O_WRONLY);
	dup2(null, 2);
	log_info("ring: line 1"); /* below the threshold: not kept */
	log_warn("ring: line 2");
	log_err("ring: line 3");
	dup2(fd, 2);
	close(fd);
	close(null);
	log_set_level(LOG_INFO);
	struct replay all = {.ordered = true, .min = LOG_TRACE};
	log_replay(replay_fn, &all, LOG_TRACE);
	REQUIRE(all.n == 2 && all.first == 2 && all.last == 3,
	        "expected lines 2..3, got %d (%d..%d)", all.n, all.first, all.last);
	struct replay err = {.ordered = true, .min = LOG_ERR};
	log_replay(replay_fn, &err, LOG_ERR);
	REQUIRE(err.n == 1 && err.first == 3 && !err.below_min, "error monitor: got %d (first %d)",
	        err.n, err.first);
	log_ring_clear();
}

static void test_ring_keeps_a_long_message_whole(void)
{
	log_ring_clear();
	char big[LOG_MSG_MAX];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	int fd = dup(2), null = open("/dev/null", O_WRONLY);
	dup2(null, 2);
	log_info("ring: line 7 %s", big); /* cut at LOG_MSG_MAX - 1 bytes */
	log_info("ring: line 8");         /* a short one reuses a slot, no realloc */
	dup2(fd, 2);
	close(fd);
	close(null);
	struct sink s = {0};
	REQUIRE(log_replay(sink_fn, &s, LOG_TRACE) == 2, "expected 2 lines");
	REQUIRE(strcmp(s.last, "ring: line 8") == 0, "last: '%s'", s.last);
	log_ring_clear();
}

int main(void)
{
	RUN(test_subscriber_gets_lines_below_threshold);
	RUN(test_two_subscribers_have_their_own_levels);
	RUN(test_text_format);
	RUN(test_json_format_splits_module_and_escapes);
	RUN(test_cut_line_still_ends_in_newline);
	RUN(test_file_rotates_by_size_and_keeps_max_files);
	RUN(test_ring_replays_last_512_oldest_first);
	RUN(test_ring_keeps_what_stderr_got_and_replay_filters_by_level);
	RUN(test_ring_keeps_a_long_message_whole);
	return check_exit_code();
}
