/*
 * lib/err.c — see err.h. Four modules carried a copy of this function
 * (config, the CLI's flags and commands, the HTTP client); one is enough.
 */
#include "lib/err.h"

#include <stdarg.h>
#include <stdio.h>

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
