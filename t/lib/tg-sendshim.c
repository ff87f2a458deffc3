/*
 * tg-sendshim.c: an LD_PRELOAD shim for t/028, built into its temp
 * directory, that makes the first TCP connection to the port
 * TG_SHIM_PORT take no more than it is allowed: while the file
 * TG_SHIM_DIR/hold exists, holding a number N, write() on it takes N
 * bytes more than it had taken when the file was first seen, then fails
 * with EAGAIN.  Other connections, and all once the file is gone, are
 * not touched.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>


ssize_t
write(int fd, const void *buf, size_t count)
{
    FILE                *f;
    long                 n;
    ssize_t              w;
    socklen_t            len;
    struct sockaddr_in   sin;
    static long          total, base = -1;
    static int           first = -1;
    static ssize_t     (*real)(int, const void *, size_t);

    if (real == NULL) {
        real = (ssize_t (*)(int, const void *, size_t))
                   dlsym(RTLD_NEXT, "write");
    }

    len = sizeof(sin);

    if (getpeername(fd, (struct sockaddr *) &sin, &len) != 0
        || sin.sin_family != AF_INET || ntohs(sin.sin_port) != TG_SHIM_PORT)
    {
        return real(fd, buf, count);
    }

    len = sizeof(sin);

    if (getsockname(fd, (struct sockaddr *) &sin, &len) != 0) {
        return real(fd, buf, count);
    }

    if (first == -1) {
        first = ntohs(sin.sin_port);
    }

    if (ntohs(sin.sin_port) != first) {
        return real(fd, buf, count);
    }

    f = fopen(TG_SHIM_DIR "/hold", "r");

    if (f == NULL) {
        base = -1;

    } else {
        n = 0;
        if (fscanf(f, "%ld", &n) != 1) {
            n = 0;
        }
        fclose(f);

        if (base == -1) {
            base = total;
        }

        if (total >= base + n) {
            errno = EAGAIN;
            return -1;
        }

        if ((long) count > base + n - total) {
            count = base + n - total;
        }
    }

    w = real(fd, buf, count);

    if (w > 0) {
        total += w;
    }

    return w;
}
