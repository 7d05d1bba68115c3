/* Error text into a caller's buffer: the one formatter behind the
 * (char *err, size_t errlen) arguments of the config, key and TLS readers.
 * No state; any thread. */
#ifndef RAPI_PROTO_ERRBUF_H
#define RAPI_PROTO_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>

/* Format into err[0..errlen) (always NUL-terminated, truncated to fit);
 * does nothing when err is NULL or errlen is 0. */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void errbuf_vset(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
