/*
 * tests/unit/test_memtrim.c — agent/memtrim.c: the main stack's pages below
 * the current frame are given back (a deep call made once does not keep its
 * pages resident), and the stack works as before afterwards.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "agent/memtrim.h"
#include "tests/unit/check.h"

/* Resident KiB of the [stack] mapping (/proc/self/smaps), -1 if not found. */
static long stack_rss_kib(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (f == NULL)
		return -1;
	char line[512];
	bool in_stack = false;
	long rss = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		/* a mapping's first line starts with its address (lower-case
		 * hex); its fields (Rss:, ...) start with a capital */
		if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))
			in_stack = strstr(line, "[stack]") != NULL;
		if (in_stack && sscanf(line, "Rss: %ld kB", &rss) == 1)
			break;
	}
	fclose(f);
	return rss;
}

/* Touches about depth * 4 KiB of stack and returns a checksum of it. */
static __attribute__((noinline)) unsigned deep(int depth)
{
	volatile unsigned char buf[4096];
	for (size_t i = 0; i < sizeof(buf); i += 64)
		buf[i] = (unsigned char)(depth + i);
	unsigned sum = depth > 0 ? deep(depth - 1) : 0;
	for (size_t i = 0; i < sizeof(buf); i += 64)
		sum += buf[i];
	return sum;
}

static void test_stack_below_the_frame_is_given_back(void)
{
	unsigned a = deep(128); /* about 512 KiB of stack */
	long before = stack_rss_kib();
	REQUIRE(before >= 400, "the deep call left %ld KiB of stack resident, expected >= 400",
	        before);
	size_t advised = memtrim_run();
	long after = stack_rss_kib();
	REQUIRE(advised >= 300u << 10, "advised %zu bytes, expected the stack's 300+ KiB", advised);
	REQUIRE(after >= 0 && after < before - 300,
	        "stack resident %ld KiB after the trim, %ld before: not given back", after, before);
	/* the same depth again: pages come back zeroed and the call is correct */
	REQUIRE(deep(128) == a, "the stack computes differently after the trim");
	REQUIRE(memtrim_run() > 0, "a second trim advised nothing");
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(test_stack_below_the_frame_is_given_back);
	return check_exit_code();
}
