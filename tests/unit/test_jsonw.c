/*
 * test_jsonw.c — lib/jsonw: strings come out as jansson writes them (the
 * answers it replaced must not change by a byte), every byte string gives
 * JSON that parses back, invalid UTF-8 becomes U+FFFD instead of breaking
 * the document, and the buffer grows from nothing.
 */
#include "lib/jsonw.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

static char *jansson_str(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (j == NULL)
		return NULL;
	char *out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return out;
}

static void test_strings_match_jansson(void)
{
	static const char *const cases[] = {"",
	                                    "plain",
	                                    "quote\" and \\ backslash",
	                                    "tab\tnl\ncr\rbs\bff\f",
	                                    "vt\x0b nul-free ctl \x01\x1f del\x7f",
	                                    "slash / stays",
	                                    "utf-8: caf\xc3\xa9 \xe2\x82\xac "
	                                    "\xf0\x9f\x98\x80",
	                                    "id 5daad7ec-5cef-402c-add2-cbe3c14b6312"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct jsonw w;
		jsonw_init(&w, 0);
		jsonw_str(&w, cases[i], strlen(cases[i]));
		char *want = jansson_str(cases[i], strlen(cases[i]));
		REQUIRE(want != NULL, "jansson refused case %zu", i);
		CHECK_STR(want, w.buf, "case %zu", i);
		free(want);
		free(w.buf);
	}
}

static void test_invalid_utf8_becomes_replacement(void)
{
	/* a lone continuation byte, a truncated sequence, an overlong '/', a
	 * surrogate, a byte that never starts one, and a valid one after them */
	static const char in[] = "a\x80"
	                         "b\xe2\x82"
	                         "c\xc0\xaf"
	                         "d\xed\xa0\x80"
	                         "e\xff"
	                         "f\xc3\xa9";
	struct jsonw w;
	jsonw_init(&w, 0);
	jsonw_str(&w, in, sizeof(in) - 1);
	json_error_t err;
	json_t *j = json_loadb(w.buf, w.len, JSON_DECODE_ANY, &err);
	REQUIRE(j != NULL, "output does not parse: %s (%s)", err.text, w.buf);
	const char *got = json_string_value(j);
	REQUIRE(got != NULL, "not a string: %s", w.buf);
	CHECK_STR("a\xef\xbf\xbd"
	          "b\xef\xbf\xbd\xef\xbf\xbd"
	          "c\xef\xbf\xbd\xef\xbf\xbd"
	          "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	          "e\xef\xbf\xbd"
	          "f\xc3\xa9",
	          got, "replacement characters");
	json_decref(j);
	free(w.buf);
}

static void test_every_byte_pair_parses(void)
{
	/* all 65,536 two-byte strings, with a byte of context either side:
	 * each must be one valid JSON string */
	struct jsonw w;
	jsonw_init(&w, 16);
	int bad = 0;
	for (unsigned a = 0; a < 256 && bad == 0; a++)
		for (unsigned b = 0; b < 256; b++) {
			char in[4] = {'x', (char)a, (char)b, 'y'};
			w.len = 0;
			jsonw_str(&w, in, sizeof(in));
			json_t *j =
			        json_loadb(w.buf, w.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
			if (j == NULL || !json_is_string(j)) {
				CHECK(false, "bytes %02x %02x gave %s", a, b, w.buf);
				bad++;
				json_decref(j);
				break;
			}
			json_decref(j);
		}
	free(w.buf);
}

static void test_structure_and_numbers(void)
{
	struct jsonw w;
	jsonw_init(&w, 0); /* grows from the smallest buffer */
	jsonw_lit(&w, "[");
	for (int i = 0; i < 1000; i++) {
		if (i > 0)
			jsonw_raw(&w, ",", 1);
		jsonw_lit(&w, "{\"N\":");
		jsonw_int(&w, i == 999 ? INT64_MIN : (int64_t)i * 1000003);
		jsonw_lit(&w, ",\"S\":");
		char name[16];
		snprintf(name, sizeof(name), "n%d", i);
		jsonw_str(&w, name, strlen(name));
		jsonw_lit(&w, "}");
	}
	jsonw_lit(&w, "]");
	REQUIRE(strlen(w.buf) == w.len, "length %zu, strlen %zu", w.len, strlen(w.buf));
	json_t *j = json_loadb(w.buf, w.len, 0, NULL);
	REQUIRE(j != NULL && json_array_size(j) == 1000, "1,000 objects do not parse back");
	CHECK(json_integer_value(json_object_get(json_array_get(j, 7), "N")) == 7000021,
	      "a number changed");
	CHECK(json_integer_value(json_object_get(json_array_get(j, 999), "N")) == INT64_MIN,
	      "INT64_MIN changed");
	CHECK_STR("n500", json_string_value(json_object_get(json_array_get(j, 500), "S")),
	          "a string changed");
	json_decref(j);
	free(w.buf);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(test_strings_match_jansson);
	RUN(test_invalid_utf8_becomes_replacement);
	RUN(test_every_byte_pair_parses);
	RUN(test_structure_and_numbers);
	return check_exit_code();
}
