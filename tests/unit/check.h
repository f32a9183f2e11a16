/*
 * tests/unit/check.h — the assertions and the bookkeeping every unit test
 * (tests/unit/test_*.c) shares.  Each test file is one executable and one
 * translation unit, so the state lives here, in a static.
 *
 * Two families, one message format.  A failed check prints
 *
 *     <file>:<line>: check failed: <condition>: <message>
 *
 * to stderr (indented two spaces) and counts one failure.  Then:
 *   CHECK*    goes on with the test function;
 *   REQUIRE*  returns from it (test functions are void), for checks whose
 *             failure makes the rest of the function meaningless or unsafe.
 * CHECK(cond, fmt, ...) is also an expression, true when it passed, so a
 * helper that returns a status can write `if (!CHECK(...)) return -1;`.
 *
 * The typed checks print the expected and the actual value; their trailing
 * printf-style description is optional (its format must be a string
 * literal; leaving it out relies on GNU C / C23 empty __VA_ARGS__, and the
 * project builds as gnu11):
 *   CHECK_INT(expected, actual [, fmt, ...])   integers, as long long
 *   CHECK_STR(expected, actual [, fmt, ...])   strings (NULL equals NULL)
 *   CHECK_HAS(haystack, needle [, fmt, ...])   haystack (not NULL) contains needle
 *   CHECK_BOOL(expected, actual [, fmt, ...])  truth values
 *   CHECK_NUM(expected, actual [, fmt, ...])   doubles, within 1e-9
 * `actual` is evaluated once, after `expected` and before the description's
 * arguments (so a description may report an error the call just set).
 *
 * Driver: RUN(test_fn) runs one `void test_fn(void)`, prints "ok   name" or
 * "FAIL name" on stdout; main ends with `return check_exit_code();`, which
 * prints "N passed, M failed" (tests) and is non-zero if any check failed.
 */
#ifndef RUMOR_TESTS_UNIT_CHECK_H
#define RUMOR_TESTS_UNIT_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CHECK_PRINTF_(f, a) __attribute__((format(printf, f, a)))

struct check_state {
	int checks;   /* checks evaluated */
	int failures; /* checks failed, in the whole run */
	int passed;   /* test functions without a failed check */
	int failed;   /* test functions with one */
};

static inline struct check_state *check_state_(void)
{
	static struct check_state s;
	return &s;
}

static inline bool check_pass_(void)
{
	check_state_()->checks++;
	return true;
}

/* Prints one failed check and counts it; always false. */
static inline bool check_fail_(const char *file, int line, const char *cond, const char *fmt, ...)
        CHECK_PRINTF_(4, 5);
static inline bool check_fail_(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout); /* keep the order of "ok"/"FAIL" lines and messages */
	fprintf(stderr, "  %s:%d: check failed: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	check_state_()->checks++;
	check_state_()->failures++;
	return false;
}

/*
 * The optional description of a typed check, as "<text>: ", or "" without
 * one.  The macros pass " " __VA_ARGS__ as the format: the leading space
 * keeps an absent description from being a zero-length format, and is
 * dropped here.
 */
static inline void check_what_(char *buf, size_t cap, const char *fmt, ...) CHECK_PRINTF_(3, 4);
static inline void check_what_(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, cap, fmt + 1, ap);
	va_end(ap);
	if (n > 0 && (size_t)n + 2 < cap)
		memcpy(buf + n, ": ", 3);
}

static inline bool check_str_eq_(const char *e, const char *a)
{
	return e == NULL || a == NULL ? e == a : strcmp(e, a) == 0;
}

/* Strings with a newline print on lines of their own, in brackets. */
static inline void check_fail_str_(const char *file, int line, const char *cond, const char *what,
                                   const char *e, const char *a)
{
	if ((e && strchr(e, '\n')) || (a && strchr(a, '\n')))
		check_fail_(file, line, cond, "%sexpected:\n[%s]\nactual:\n[%s]", what,
		            e ? e : "(null)", a ? a : "(null)");
	else if (e == NULL || a == NULL)
		check_fail_(file, line, cond, "%sexpected %s%s%s, got %s%s%s", what, e ? "\"" : "",
		            e ? e : "(null)", e ? "\"" : "", a ? "\"" : "", a ? a : "(null)",
		            a ? "\"" : "");
	else
		check_fail_(file, line, cond, "%sexpected \"%s\", got \"%s\"", what, e, a);
}

static inline void check_fail_has_(const char *file, int line, const char *cond, const char *what,
                                   const char *hay, const char *needle)
{
	if (hay != NULL && strchr(hay, '\n'))
		check_fail_(file, line, cond, "%sexpected \"%s\" in:\n%s", what, needle, hay);
	else
		check_fail_(file, line, cond, "%sexpected \"%s\" in \"%s\"", what, needle,
		            hay ? hay : "(null)");
}

/* Identity; it makes CHECK's value a call's, which may go unused. */
static inline bool check_result_(bool ok)
{
	return ok;
}

/*
 * One typed check: evaluates expected, then actual, compares them with
 * `same` and on failure prints with `fail` and runs `on_fail` (nothing, or
 * return).  The public macros stringify their arguments themselves, before
 * NULL or false are expanded.
 */
#define CHECK_TYPED_(on_fail, T, exp, act, same, fail, ...)                                        \
	do {                                                                                       \
		T check_e_ = (exp);                                                                \
		T check_a_ = (act);                                                                \
		if (same) {                                                                        \
			check_pass_();                                                             \
		} else {                                                                           \
			char check_w_[256] = "";                                                   \
			check_what_(check_w_, sizeof(check_w_), " " __VA_ARGS__);                  \
			fail;                                                                      \
			on_fail;                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_INT_(on_fail, text, exp, act, ...)                                                   \
	CHECK_TYPED_(on_fail, long long, (long long)(exp), (long long)(act), check_e_ == check_a_, \
	             check_fail_(__FILE__, __LINE__, text, "%sexpected %lld, got %lld", check_w_,  \
	                         check_e_, check_a_),                                              \
	             __VA_ARGS__)

#define CHECK_STR_(on_fail, text, exp, act, ...)                                                   \
	CHECK_TYPED_(on_fail, const char *, exp, act, check_str_eq_(check_e_, check_a_),           \
	             check_fail_str_(__FILE__, __LINE__, text, check_w_, check_e_, check_a_),      \
	             __VA_ARGS__)

/* expected is the needle, actual the haystack */
#define CHECK_HAS_(on_fail, text, hay, needle, ...)                                                \
	CHECK_TYPED_(on_fail, const char *, needle, hay,                                           \
	             check_a_ != NULL && check_e_ != NULL && strstr(check_a_, check_e_) != NULL,   \
	             check_fail_has_(__FILE__, __LINE__, text, check_w_, check_a_, check_e_),      \
	             __VA_ARGS__)

#define CHECK_BOOL_(on_fail, text, exp, act, ...)                                                  \
	CHECK_TYPED_(on_fail, bool, exp, act, check_e_ == check_a_,                                \
	             check_fail_(__FILE__, __LINE__, text, "%sexpected %s, got %s", check_w_,      \
	                         check_e_ ? "true" : "false", check_a_ ? "true" : "false"),        \
	             __VA_ARGS__)

#define CHECK_NUM_(on_fail, text, exp, act, ...)                                                   \
	CHECK_TYPED_(on_fail, double, exp, act,                                                    \
	             check_e_ - check_a_ < 1e-9 && check_a_ - check_e_ < 1e-9,                     \
	             check_fail_(__FILE__, __LINE__, text, "%sexpected %.17g, got %.17g",          \
	                         check_w_, check_e_, check_a_),                                    \
	             __VA_ARGS__)

#define CHECK_COND_(text, cond, ...)                                                               \
	check_result_((cond) ? check_pass_() : check_fail_(__FILE__, __LINE__, text, __VA_ARGS__))

#define CHECK(cond, ...) CHECK_COND_(#cond, cond, __VA_ARGS__)
#define CHECK_INT(exp, act, ...) CHECK_INT_((void)0, #act " == " #exp, exp, act, __VA_ARGS__)
#define CHECK_STR(exp, act, ...) CHECK_STR_((void)0, #act " == " #exp, exp, act, __VA_ARGS__)
#define CHECK_HAS(hay, needle, ...)                                                                \
	CHECK_HAS_((void)0, #hay " contains " #needle, hay, needle, __VA_ARGS__)
#define CHECK_BOOL(exp, act, ...) CHECK_BOOL_((void)0, #act " is " #exp, exp, act, __VA_ARGS__)
#define CHECK_NUM(exp, act, ...) CHECK_NUM_((void)0, #act " == " #exp, exp, act, __VA_ARGS__)

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!CHECK_COND_(#cond, cond, __VA_ARGS__))                                        \
			return;                                                                    \
	} while (0)
#define REQUIRE_INT(exp, act, ...) CHECK_INT_(return, #act " == " #exp, exp, act, __VA_ARGS__)
#define REQUIRE_STR(exp, act, ...) CHECK_STR_(return, #act " == " #exp, exp, act, __VA_ARGS__)
#define REQUIRE_HAS(hay, needle, ...)                                                              \
	CHECK_HAS_(return, #hay " contains " #needle, hay, needle, __VA_ARGS__)
#define REQUIRE_BOOL(exp, act, ...) CHECK_BOOL_(return, #act " is " #exp, exp, act, __VA_ARGS__)
#define REQUIRE_NUM(exp, act, ...) CHECK_NUM_(return, #act " == " #exp, exp, act, __VA_ARGS__)

/* Runs one test function and prints its verdict. */
static inline void check_run_(const char *name, void (*fn)(void))
{
	struct check_state *s = check_state_();
	int before = s->failures;
	fn();
	if (s->failures > before) {
		s->failed++;
		printf("FAIL %s\n", name);
	} else {
		s->passed++;
		printf("ok   %s\n", name);
	}
	fflush(stdout);
}
#define RUN(fn) check_run_(#fn, fn)

/*
 * Prints "N passed, M failed (...)", counting test functions, and returns
 * main's exit status: 1 if any check failed, in a test function or not.
 */
static inline int check_exit_code(void)
{
	const struct check_state *s = check_state_();
	if (s->failures > 0)
		printf("%d passed, %d failed (%d of %d checks failed)\n", s->passed, s->failed,
		       s->failures, s->checks);
	else
		printf("%d passed, %d failed (%d checks)\n", s->passed, s->failed, s->checks);
	fflush(stdout);
	return s->failures > 0 || s->failed > 0 ? 1 : 0;
}

#endif
