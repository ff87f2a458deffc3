/*
 * tg-killshim.c: an LD_PRELOAD shim for the tests, built by each test
 * that needs it into its temp directory (Test::TaurusGuard::kill_shim):
 * while the file TG_SHIM_DIR/kill exists, the process raises SIGKILL right
 * after a write() or writev() that wrote an audit record (its bytes hold
 * "prev":"), that is between the record's write and the update of the
 * chain head.
 *
 * The directory is compiled in: nginx gives its workers an environment
 * of their own.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>


static void
kill_after(const void *buf, size_t n)
{
    if (memmem(buf, n, "\"prev\":\"", 8) != NULL
        && access(TG_SHIM_DIR "/kill", F_OK) == 0)
    {
        raise(SIGKILL);
    }
}


ssize_t
write(int fd, const void *buf, size_t n)
{
    ssize_t         rc;
    static ssize_t  (*real)(int, const void *, size_t);

    if (real == NULL) {
        real = (ssize_t (*)(int, const void *, size_t))
                   dlsym(RTLD_NEXT, "write");
    }

    rc = real(fd, buf, n);

    if (rc > 0) {
        kill_after(buf, n);
    }

    return rc;
}


ssize_t
writev(int fd, const struct iovec *iov, int niov)
{
    int             i;
    ssize_t         rc;
    static ssize_t  (*real)(int, const struct iovec *, int);

    if (real == NULL) {
        real = (ssize_t (*)(int, const struct iovec *, int))
                   dlsym(RTLD_NEXT, "writev");
    }

    rc = real(fd, iov, niov);

    for (i = 0; rc > 0 && i < niov; i++) {
        kill_after(iov[i].iov_base, iov[i].iov_len);
    }

    return rc;
}
