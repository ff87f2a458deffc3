/*
 * tg-syncshim.c: an LD_PRELOAD shim for the tests, built by each test
 * that needs it into its temp directory (Test::TaurusGuard::sync_shim),
 * that makes fdatasync() slow, held or failing on demand:
 *
 *   - it sleeps TG_SHIM_DELAY_MS first (0 by default);
 *   - it waits while the file TG_SHIM_DIR/hold exists (at most 60 s);
 *   - it fails with EIO while TG_SHIM_DIR/fail exists.
 *
 * The directory is compiled in: nginx gives its workers an environment
 * of their own.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <unistd.h>

#ifndef TG_SHIM_DELAY_MS
#define TG_SHIM_DELAY_MS  0
#endif


int
fdatasync(int fd)
{
    int          i;
    static int  (*real)(int);

    if (real == NULL) {
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    }

    if (TG_SHIM_DELAY_MS) {
        usleep(TG_SHIM_DELAY_MS * 1000);
    }

    for (i = 0; i < 6000 && access(TG_SHIM_DIR "/hold", F_OK) == 0; i++) {
        usleep(10000);
    }

    if (access(TG_SHIM_DIR "/fail", F_OK) == 0) {
        errno = EIO;
        return -1;
    }

    return real(fd);
}
