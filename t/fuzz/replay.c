/*
 * main() for gcc builds of a fuzz target: runs every file named on the
 * command line, and every file under a named directory (recursively, in
 * name order), through LLVMFuzzerTestOneInput() once.  Prints TAP, one
 * line per file, so prove can run it.  The target abort()s on a broken
 * property: the file that did it is named as "not ok" before the process
 * dies of the signal.  A file that cannot be read fails the run.
 */

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_path(const char *path);
static int replay_dir(const char *path);
static int replay_file(const char *path);
static void replay_crashed(int signo);


static unsigned     replay_n;
static const char  *replay_current;


int
main(int argc, char **argv)
{
    int               i, failed;
    struct sigaction  sa;

    if (argc < 2) {
        fprintf(stderr, "usage: %s file-or-dir ...\n", argv[0]);
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = replay_crashed;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);

    failed = 0;

    for (i = 1; i < argc; i++) {
        failed |= replay_path(argv[i]);
    }

    printf("1..%u\n", replay_n);

    return failed ? 1 : 0;
}


static int
replay_path(const char *path)
{
    struct stat  st;

    if (stat(path, &st) == -1) {
        printf("not ok %u - %s: %s\n", ++replay_n, path, strerror(errno));
        return 1;
    }

    if (S_ISDIR(st.st_mode)) {
        return replay_dir(path);
    }

    return replay_file(path);
}


static int
replay_dir(const char *path)
{
    int             i, n, failed;
    char           *sub;
    size_t          len;
    struct dirent **names;

    n = scandir(path, &names, NULL, alphasort);

    if (n == -1) {
        printf("not ok %u - %s: %s\n", ++replay_n, path, strerror(errno));
        return 1;
    }

    failed = 0;

    for (i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            len = strlen(path) + 1 + strlen(names[i]->d_name) + 1;
            sub = malloc(len);

            if (sub == NULL) {
                printf("not ok %u - %s: out of memory\n", ++replay_n, path);
                failed = 1;

            } else {
                snprintf(sub, len, "%s/%s", path, names[i]->d_name);
                failed |= replay_path(sub);
                free(sub);
            }
        }

        free(names[i]);
    }

    free(names);

    return failed;
}


static int
replay_file(const char *path)
{
    FILE     *f;
    long      size;
    uint8_t  *data;
    size_t    n;

    f = fopen(path, "rb");
    if (f == NULL) {
        printf("not ok %u - %s: %s\n", ++replay_n, path, strerror(errno));
        return 1;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        printf("not ok %u - %s: cannot size it\n", ++replay_n, path);
        fclose(f);
        return 1;
    }

    /* exactly size bytes (one for an empty file), so ASan sees over-reads */

    data = malloc(size ? (size_t) size : 1);
    if (data == NULL) {
        printf("not ok %u - %s: out of memory\n", ++replay_n, path);
        fclose(f);
        return 1;
    }

    n = fread(data, 1, (size_t) size, f);
    fclose(f);

    if (n != (size_t) size) {
        printf("not ok %u - %s: short read\n", ++replay_n, path);
        free(data);
        return 1;
    }

    fflush(stdout);
    replay_current = path;
    LLVMFuzzerTestOneInput(data, n);
    replay_current = NULL;
    free(data);

    printf("ok %u - %s (%zu bytes)\n", ++replay_n, path, n);

    return 0;
}


/* names the input that broke a property, then dies of the same signal */

static void
replay_crashed(int signo)
{
    static const char  head[] = "not ok - ";
    static const char  tail[] = ": property violated (abort)\n";

    if (replay_current != NULL) {
        (void) !write(STDOUT_FILENO, head, sizeof(head) - 1);
        (void) !write(STDOUT_FILENO, replay_current, strlen(replay_current));
        (void) !write(STDOUT_FILENO, tail, sizeof(tail) - 1);
    }

    raise(signo);
}
