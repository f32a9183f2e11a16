/*
 * tests/fuzz/replay_main.c — runs a libFuzzer target without libFuzzer.
 *
 * Used when the tree is built without -DRUMOR_FUZZ=ON (gcc, CI): feeds the
 * target every file of its corpus directory, then a fixed-seed stream of
 * mutations of those files and of random bytes, so each ctest run still
 * drives every decoder over tens of thousands of inputs under ASan/UBSan.
 * Exit status 0 unless the target crashes (a crash aborts the process).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT 65536
#define MAX_FILES 4096

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

struct input {
	uint8_t *data;
	size_t len;
};

static size_t load_corpus(const char *dir, struct input *in, size_t max)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max) {
		if (e->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "rb");
		if (f == NULL)
			continue;
		uint8_t *buf = malloc(REPLAY_MAX_INPUT);
		size_t len = fread(buf, 1, REPLAY_MAX_INPUT, f);
		fclose(f);
		in[n].data = buf;
		in[n].len = len;
		n++;
	}
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	static struct input corpus[MAX_FILES];
	size_t n = argc > 1 ? load_corpus(argv[1], corpus, MAX_FILES) : 0;
	long iterations = 20000;
	const char *env = getenv("RUMOR_FUZZ_ITERATIONS");
	if (env != NULL)
		iterations = atol(env);

	for (size_t i = 0; i < n; i++)
		LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].len);

	uint8_t *buf = malloc(REPLAY_MAX_INPUT);
	for (long it = 0; it < iterations; it++) {
		size_t len;
		if (n > 0 && (rng() & 3) != 0) {
			const struct input *src = &corpus[rng() % n];
			len = src->len;
			memcpy(buf, src->data, len);
			int flips = 1 + (int)(rng() % 8);
			for (int f = 0; f < flips && len > 0; f++) {
				size_t at = rng() % len;
				switch (rng() % 4) {
				case 0:
					buf[at] ^= (uint8_t)(1u << (rng() % 8));
					break;
				case 1:
					buf[at] = (uint8_t)rng();
					break;
				case 2:
					len = at;
					break; /* truncate */
				default:
					buf[at] = (uint8_t[]){0x00, 0xff, 0x7f, 0x80, 0xc0,
					                      0xdc, 0xdd, 0xde, 0xdf}[rng() % 9];
					break;
				}
			}
		} else {
			len = rng() % 2048;
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rng();
		}
		LLVMFuzzerTestOneInput(buf, len);
	}
	free(buf);
	for (size_t i = 0; i < n; i++)
		free(corpus[i].data);
	printf("replayed %zu corpus files and %ld generated inputs\n", n, iterations);
	return 0;
}
