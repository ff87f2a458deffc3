/*
 * A minimal TAP producer for the core's unit tests, run by prove.
 */

#ifndef TG_TAP_H
#define TG_TAP_H


#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tg_core.h"


#if defined(__GNUC__) || defined(__clang__)
#define TAP_UNUSED  __attribute__((unused))
#else
#define TAP_UNUSED
#endif


static int  tap_n;
static int  tap_failed;


#define ok(cond, ...)                                                         \
    tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                                \
    tap_is_int((long long) (got), (long long) (want), __FILE__, __LINE__,     \
               __VA_ARGS__)

#define is_str(got, want, ...)                                                \
    tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

/* s2n-tls's EXPECT_FAILURE_WITH_ERRNO: the call fails with that code */
#define is_rc(got, want, ...)                                                 \
    tap_is_rc((int) (got), (int) (want), __FILE__, __LINE__, __VA_ARGS__)


TAP_UNUSED static void
tap_vdesc(const char *fmt, va_list ap)
{
    vprintf(fmt, ap);
    printf("\n");
}


TAP_UNUSED static int
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list  ap;

    tap_n++;
    printf("%sok %d - ", pass ? "" : "not ", tap_n);
    va_start(ap, fmt);
    tap_vdesc(fmt, ap);
    va_end(ap);

    if (!pass) {
        tap_failed++;
        printf("#   failed at %s line %d\n", file, line);
    }

    return pass;
}


TAP_UNUSED static int
tap_is_int(long long got, long long want, const char *file, int line,
    const char *fmt, ...)
{
    int      pass;
    va_list  ap;

    pass = (got == want);
    tap_n++;
    printf("%sok %d - ", pass ? "" : "not ", tap_n);
    va_start(ap, fmt);
    tap_vdesc(fmt, ap);
    va_end(ap);

    if (!pass) {
        tap_failed++;
        printf("#   failed at %s line %d\n#   got: %lld\n#   expected: %lld\n",
               file, line, got, want);
    }

    return pass;
}


TAP_UNUSED static int
tap_is_str(const char *got, const char *want, const char *file, int line,
    const char *fmt, ...)
{
    int      pass;
    va_list  ap;

    pass = (got != NULL && want != NULL && strcmp(got, want) == 0);
    tap_n++;
    printf("%sok %d - ", pass ? "" : "not ", tap_n);
    va_start(ap, fmt);
    tap_vdesc(fmt, ap);
    va_end(ap);

    if (!pass) {
        tap_failed++;
        printf("#   failed at %s line %d\n#   got: '%s'\n#   expected: '%s'\n",
               file, line, got ? got : "(null)", want ? want : "(null)");
    }

    return pass;
}


TAP_UNUSED static int
tap_is_rc(int got, int want, const char *file, int line, const char *fmt,
    ...)
{
    int      pass;
    va_list  ap;

    pass = (got == want);
    tap_n++;
    printf("%sok %d - ", pass ? "" : "not ", tap_n);
    va_start(ap, fmt);
    tap_vdesc(fmt, ap);
    va_end(ap);

    if (!pass) {
        tap_failed++;
        printf("#   failed at %s line %d\n#   got: %s\n#   expected: %s\n",
               file, line, tg_strerror((tg_rc_t) got),
               tg_strerror((tg_rc_t) want));
    }

    return pass;
}


TAP_UNUSED static int
done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}


#endif /* TG_TAP_H */
