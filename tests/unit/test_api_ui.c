/*
 * tests/unit/test_api_ui.c — the web UI embedded at build time
 * (cmake/embed_ui.cmake -> ui_assets[] and ui_csp, served by
 * agent/api_ui.c): the page is one file, index.html with ui/style.css and
 * every module of ui/js/ inlined (no file of the page is loaded on its own:
 * one request on a cold load); what is inlined is the files' text; the
 * Content-Security-Policy allows the inline scripts and style by their
 * SHA-256 and nothing else; every other file of ui/ is embedded byte for
 * byte; what is served stays under 100 KB.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "agent/api_ui.h"
#include "tests/unit/check.h"

#define UI_DIR RUMOR_FIXTURES "/../../ui"

static size_t g_served; /* bytes of the files ui/ holds that are served */

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

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = buf ? fread(buf, 1, (size_t)n, fp) : 0;
	fclose(fp);
	if (buf == NULL || got != (size_t)n) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* The served page as a string (it holds no NUL). */
static char *page(void)
{
	const struct ui_asset *idx = api_ui_find("index.html");
	if (idx == NULL)
		return NULL;
	char *s = malloc(idx->len + 1);
	if (s != NULL) {
		memcpy(s, idx->data, idx->len);
		s[idx->len] = '\0';
	}
	return s;
}

/*
 * A module is inlined if each of its lines is in the page, but for its
 * imports (rewritten as destructurings) and the "export " before a
 * declaration (dropped).
 */
static void check_inlined_js(const char *rel, char *src, const char *html)
{
	for (char *line = strtok(src, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (strncmp(line, "import ", 7) == 0)
			continue;
		const char *l = strncmp(line, "export ", 7) == 0 ? line + 7 : line;
		CHECK(strstr(html, l) != NULL, "%s: line not in the page: %s", rel, l);
	}
}

/* Compares the file at dir/rel with what is served; recurses into folders. */
static void check_tree(const char *rel, const char *html)
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
			check_tree(sub, html);
			continue;
		}
		CHECK(type_for(sub) != NULL, "%s: a file type the UI should not need", sub);
		size_t len = 0;
		char *src = slurp(full, &len);
		REQUIRE(src != NULL, "read %s", full);
		const struct ui_asset *f = api_ui_find(sub);
		if (strcmp(sub, "index.html") == 0) {
			CHECK(f != NULL, "index.html is not served");
		} else if (strstr(sub, ".css") != NULL) {
			CHECK(f == NULL, "%s is served on its own, not only inlined", sub);
			CHECK(strstr(html, src) != NULL, "%s is not inlined as it is", sub);
		} else if (strstr(sub, ".js") != NULL) {
			CHECK(f == NULL, "%s is served on its own, not only inlined", sub);
			check_inlined_js(sub, src, html);
		} else if (CHECK(f != NULL, "%s is not embedded", sub)) {
			g_served += f->len;
			CHECK(f->len == len && memcmp(src, f->data, len) == 0, "%s differs", sub);
		}
		free(src);
	}
	closedir(d);
}

static void every_file_of_ui_is_served_or_inlined(void)
{
	char *html = page();
	REQUIRE(html != NULL, "no index.html");
	g_served = strlen(html);
	check_tree("", html);
	CHECK(g_served < 100 * 1024, "the UI is %zu bytes, over the 100 KB budget", g_served);
	/* one request: nothing of the page is fetched on its own */
	CHECK(strstr(html, " src=") == NULL, "the page loads a script");
	CHECK(strstr(html, "rel=\"stylesheet\"") == NULL, "the page loads a stylesheet");
	CHECK(strstr(html, "modulepreload") == NULL, "the page preloads a module");
	CHECK(strstr(html, "<script>\n(() => {\n'use strict';") != NULL, "no inline strict script");
	CHECK(strstr(html, "<script>\n// boot.js") != NULL, "boot.js is not inlined first");
	for (size_t i = 0; i < ui_assets_n; i++) {
		const struct ui_asset *f = &ui_assets[i];
		CHECK_STR(type_for(f->path), f->type, "%s", f->path);
		CHECK(strlen(f->etag) == 18 && f->etag[0] == '"' && f->etag[17] == '"',
		      "%s: ETag %s is not 16 quoted hex digits", f->path, f->etag);
	}
	CHECK(api_ui_find("../CMakeLists.txt") == NULL, "a path outside ui/ found");
	CHECK(api_ui_find("") == NULL, "the empty path found");
	free(html);
}

/*
 * "'sha256-<base64>'" of the text between the first <tag...> at or after
 * *from and its </tag>, *from moved past it; false when there is none.
 */
static bool next_hash(const char **from, const char *tag, char *out, size_t cap)
{
	char open[32], close[32];
	snprintf(open, sizeof(open), "<%s", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *a = strstr(*from, open);
	a = a ? strchr(a, '>') : NULL;
	const char *b = a ? strstr(a, close) : NULL;
	if (b == NULL)
		return false;
	unsigned char sum[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(sum, (const unsigned char *)a + 1, (unsigned long long)(b - a - 1));
	char b64[sodium_base64_ENCODED_LEN(sizeof(sum), sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b64, sizeof(b64), sum, sizeof(sum), sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, cap, "'sha256-%s'", b64);
	*from = b + strlen(close);
	return true;
}

/* The sources listed for `directive` in ui_csp, as "<directive> a b;". */
static void csp_directive(const char *directive, char *out, size_t cap)
{
	out[0] = '\0';
	const char *p = strstr(ui_csp, directive);
	const char *end = p ? strchr(p, ';') : NULL;
	if (end != NULL)
		snprintf(out, cap, "%.*s", (int)(end - p + 1), p);
}

static void the_csp_allows_the_inline_scripts_and_style_by_hash_only(void)
{
	char *html = page();
	REQUIRE(html != NULL, "no index.html");
	char want[1024], have[1024], h[128];
	static const char *const tags[] = {"script", "style"};
	for (size_t t = 0; t < 2; t++) {
		const char *tag = tags[t];
		/* every inline one's hash, in order, and nothing else */
		snprintf(want, sizeof(want), "%s-src", tag);
		const char *from = html;
		int n = 0;
		while (next_hash(&from, tag, h, sizeof(h)) &&
		       strlen(want) + strlen(h) + 2 < sizeof(want)) {
			strcat(want, " ");
			strcat(want, h);
			n++;
		}
		strcat(want, ";");
		CHECK(n > 0, "no inline %s in the page", tag);
		snprintf(h, sizeof(h), "%s-src", tag);
		csp_directive(h, have, sizeof(have));
		CHECK_STR(want, have);
	}
	CHECK(strstr(ui_csp, "unsafe") == NULL, "%s", ui_csp);
	CHECK_HAS(ui_csp, "default-src 'none';");
	CHECK_HAS(ui_csp, "connect-src 'self';");
	free(html);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(every_file_of_ui_is_served_or_inlined);
	RUN(the_csp_allows_the_inline_scripts_and_style_by_hash_only);
	return check_exit_code();
}
