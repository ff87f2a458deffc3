/*
 * tg-clockshift.c: an LD_PRELOAD shim for the tests, built by each test
 * that needs it into its temp directory.  The wall clock (time(),
 * gettimeofday(), clock_gettime() of CLOCK_REALTIME), shifted by the
 * seconds written first in the file named by $TG_CLOCK_OFFSET, and the
 * monotonic clock (clock_gettime() of CLOCK_MONOTONIC and its coarse
 * form) moved on by the seconds written second, if any: "-3600 61" is
 * a wall clock an hour behind and a minute that passed at once.  The
 * file is read again at most every 50 ms of the real monotonic clock.
 * A test moves the monotonic clock only forward, and only while nothing
 * it checks is in flight: every timer of nginx's falls due at once.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int          (*real_clock_gettime)(clockid_t, struct timespec *);
static long          offset;
static long          mono_offset;
static long          offset_read_ms = -1000000;
static char         *path;

/*
 * Looked up now, and copied: nginx gives its workers an environment of
 * their own, and writes its process titles over the original strings.
 */

__attribute__((constructor)) static void
init(void)
{
    const char  *p;

    p = getenv("TG_CLOCK_OFFSET");

    if (p != NULL) {
        path = strdup(p);
    }
}

static long
shift(void)
{
    int              fd;
    long             ms;
    ssize_t          n;
    char             buf[64], *end;
    struct timespec  mono;

    if (real_clock_gettime == NULL) {
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))
                             dlsym(RTLD_NEXT, "clock_gettime");
    }

    real_clock_gettime(CLOCK_MONOTONIC, &mono);
    ms = mono.tv_sec * 1000 + mono.tv_nsec / 1000000;

    if (ms - offset_read_ms < 50) {
        return offset;
    }

    offset_read_ms = ms;

    if (path == NULL || (fd = open(path, O_RDONLY)) == -1) {
        return offset;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);

    if (n > 0) {
        buf[n] = '\0';
        offset = strtol(buf, &end, 10);
        mono_offset = strtol(end, NULL, 10);
    }

    return offset;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    long  off;
    int   rc;

    off = shift();
    rc = real_clock_gettime(id, ts);

    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        ts->tv_sec += off;

    } else if (rc == 0
               && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE))
    {
        ts->tv_sec += mono_offset;
    }

    return rc;
}

int
gettimeofday(struct timeval *tv, void *tz)
{
    long             off;
    struct timespec  ts;

    (void) tz;

    off = shift();
    real_clock_gettime(CLOCK_REALTIME, &ts);

    tv->tv_sec = ts.tv_sec + off;
    tv->tv_usec = ts.tv_nsec / 1000;

    return 0;
}

time_t
time(time_t *t)
{
    long             off;
    struct timespec  ts;

    off = shift();
    real_clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += off;

    if (t != NULL) {
        *t = ts.tv_sec;
    }

    return ts.tv_sec;
}
