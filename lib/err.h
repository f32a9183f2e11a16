/*
 * lib/err.h — the one helper behind rumor's error convention: functions that
 * can fail write a one-line message into the caller's (err, errlen) buffer
 * (docs/ARCHITECTURE.md, "Conventions every module shares"). A NULL or
 * empty buffer is allowed and means the caller does not want the text.
 */
#ifndef RUMOR_LIB_ERR_H
#define RUMOR_LIB_ERR_H

#include <stddef.h>

/* printf-style message into err (truncated to errlen, always terminated). */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
