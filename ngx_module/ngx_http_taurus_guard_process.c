
/*
 * taurus-guard: who a process is, for what a worker leaves in shared
 * memory under its name (the holder of an audit file's flush lock, the
 * owner of a slot of the syslog queue's gauge, the worker fetching a
 * secret), and the others take over or stop counting once that process
 * is gone.
 *
 * A pid alone does not say it: the kernel gives the number of a process
 * that died to another one sooner or later, and kill(pid, 0) then finds
 * that other process alive.  A process is named here by its pid and the time
 * it started (clock ticks since boot, field 22 of /proc/PID/stat), in
 * one word that an atomic compare-and-set can take: the low 32 bits of
 * the start time above the pid.  A process with the same number started
 * at another tick, unless exactly a multiple of 2^32 ticks later (497
 * days at 100 Hz).  Where the start time cannot be read (no /proc), a
 * process is named by its pid only; and one whose start time cannot be
 * read now (a /proc mounted with hidepid= hides another user's process)
 * is taken to be alive: a lock held too long is a smaller harm than two
 * holders.
 */


#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_PROCESS_STAT     1024      /* /proc/PID/stat, read */


static ngx_int_t ngx_http_taurus_guard_process_start(ngx_pid_t pid,
    uint64_t *start);


/* a process's name: its pid, and its start time when it can be read */

ngx_atomic_uint_t
ngx_http_taurus_guard_process_name(ngx_pid_t pid)
{
    uint64_t  start;

    if (ngx_http_taurus_guard_process_start(pid, &start) != NGX_OK) {
        start = 0;
    }

    return ((ngx_atomic_uint_t) (start & 0xffffffff) << 32)
           | (ngx_atomic_uint_t) (uint32_t) pid;
}


/* this worker's, read once when it started (init_process) */

ngx_atomic_uint_t
ngx_http_taurus_guard_process_self(void)
{
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_core_module)
        != NULL)
    {
        mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                  ngx_http_taurus_guard_module);

        if (mcf != NULL && mcf->process != 0) {
            return mcf->process;
        }
    }

    return ngx_http_taurus_guard_process_name(ngx_pid);
}


/*
 * Whether the process named who is gone: no process has its pid, or the
 * one that has it now started at another time.  Safe in a thread.
 */

ngx_uint_t
ngx_http_taurus_guard_process_gone(ngx_atomic_uint_t who)
{
    uint64_t   start;
    ngx_pid_t  pid;

    pid = (ngx_pid_t) (who & 0xffffffff);

    if (pid <= 0) {
        return 0;
    }

    if (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
        return 1;
    }

    /* alive, or another user's (EPERM): the same process? */

    if ((who >> 32) == 0
        || ngx_http_taurus_guard_process_start(pid, &start) != NGX_OK)
    {
        return 0;
    }

    return (start & 0xffffffff) != (who >> 32);
}


/*
 * Field 22 of /proc/PID/stat.  The command's name (field 2) is in
 * parentheses and may hold spaces and parentheses itself: the fields
 * are counted from the last ')'.
 */

static ngx_int_t
ngx_http_taurus_guard_process_start(ngx_pid_t pid, uint64_t *start)
{
    u_char      *p, *last;
    ssize_t      n;
    uint64_t     v;
    ngx_fd_t     fd;
    ngx_uint_t   spaces;
    u_char       path[sizeof("/proc//stat") + NGX_INT64_LEN];
    u_char       buf[NGX_HTTP_TG_PROCESS_STAT];

    (void) ngx_sprintf(path, "/proc/%P/stat%Z", pid);

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return NGX_DECLINED;
    }

    n = read(fd, buf, sizeof(buf));

    (void) ngx_close_file(fd);

    if (n <= 0) {
        return NGX_DECLINED;
    }

    last = buf + n;

    for (p = last; p > buf && p[-1] != ')'; p--) { /* void */ }

    if (p == buf) {
        return NGX_DECLINED;
    }

    /* ") S PPID ...": field 3 after the first space, field 22 the 20th */

    for (spaces = 0; p < last && spaces < 20; p++) {
        if (*p == ' ') {
            spaces++;
        }
    }

    if (spaces < 20 || p == last || *p < '0' || *p > '9') {
        return NGX_DECLINED;
    }

    for (v = 0; p < last && *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
    }

    *start = v;

    return NGX_OK;
}
