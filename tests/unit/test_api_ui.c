/*
 * tests/unit/test_api_ui.c — the web UI embedded at build time
 * (cmake/embed_ui.cmake -> ui_assets[], served by agent/api_ui.c): every
 * file of ui/ is in the table byte for byte, with its Content-Type and a
 * quoted ETag, and nothing else is; the whole stays under 100 KB.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/api_ui.h"
#include "tests/unit/check.h"

#define UI_DIR RUMOR_FIXTURES "/../../ui"

static size_t g_files, g_bytes;

static const char *type_for(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (dot == NULL)
		return NULL;
	if (strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	if (strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	return NULL;
}

/* Compares the file at dir/rel with its table entry; recurses into folders. */
static void check_tree(const char *rel)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", UI_DIR, rel);
	DIR *d = opendir(path);
	REQUIRE(d != NULL, "cannot open %s", path);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char sub[512], full[1200];
		snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
		snprintf(full, sizeof(full), "%s/%s", UI_DIR, sub);
		struct stat st;
		REQUIRE(stat(full, &st) == 0, "stat %s", full);
		if (S_ISDIR(st.st_mode)) {
			check_tree(sub);
			continue;
		}
		const struct ui_asset *f = api_ui_find(sub);
		CHECK(f != NULL, "%s is not embedded", sub);
		if (f == NULL)
			continue;
		g_files++;
		g_bytes += (size_t)st.st_size;
		CHECK_INT((long long)st.st_size, (long long)f->len, "%s", sub);
		FILE *fp = fopen(full, "rb");
		unsigned char *buf = malloc((size_t)st.st_size + 1);
		size_t got = fp && buf ? fread(buf, 1, (size_t)st.st_size, fp) : 0;
		CHECK(got == f->len && memcmp(buf, f->data, got) == 0, "%s differs from its file",
		      sub);
		free(buf);
		if (fp)
			fclose(fp);
		const char *want = type_for(sub);
		CHECK(want != NULL, "%s: a file type the UI should not need", sub);
		if (want != NULL)
			CHECK_STR(want, f->type, "%s", sub);
		CHECK(strlen(f->etag) == 18 && f->etag[0] == '"' && f->etag[17] == '"',
		      "%s: ETag %s is not 16 quoted hex digits", sub, f->etag);
	}
	closedir(d);
}

static void every_file_of_ui_is_embedded_as_it_is(void)
{
	check_tree("");
	CHECK_INT((long long)ui_assets_n, (long long)g_files, "table entries vs files in ui/");
	CHECK(g_bytes < 100 * 1024, "the UI is %zu bytes, over the 100 KB budget", g_bytes);
	const struct ui_asset *idx = api_ui_find("index.html");
	REQUIRE(idx != NULL, "no index.html");
	CHECK(api_ui_find("../CMakeLists.txt") == NULL, "a path outside ui/ found");
	CHECK(api_ui_find("") == NULL, "the empty path found");
}

int main(void)
{
	RUN(every_file_of_ui_is_embedded_as_it_is);
	return check_exit_code();
}
