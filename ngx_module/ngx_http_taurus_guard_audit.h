
/*
 * taurus-guard: what the audit file's three parts share (the file and
 * its chain, ngx_http_taurus_guard_audit.c; the directive and the chain's
 * start, ngx_http_taurus_guard_audit_conf.c; the flush and the requests
 * waiting for it, ngx_http_taurus_guard_audit_sync.c).  Nothing outside
 * them includes it.
 */


#ifndef _NGX_HTTP_TAURUS_GUARD_AUDIT_H_INCLUDED_
#define _NGX_HTTP_TAURUS_GUARD_AUDIT_H_INCLUDED_


#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_AUDIT_ZONE_SIZE  (64 * 1024)
#define NGX_HTTP_TG_AUDIT_TAIL_MIN   (64 * 1024)
#define NGX_HTTP_TG_AUDIT_TAIL_MAX   (1024 * 1024)
#define NGX_HTTP_TG_AUDIT_TIMEOUT    10000     /* ms, timeout= default */
#define NGX_HTTP_TG_AUDIT_TIMEOUT_MAX  600000  /* ms: 10m, under 15 min */
#define NGX_HTTP_TG_AUDIT_DELAY_MAX  1000000   /* usec, flush_delay= max */
#define NGX_HTTP_TG_AUDIT_ARENA      (64 * 1024)   /* a turn's records */
#define NGX_HTTP_TG_AUDIT_IOVS       64        /* records a writev() */
#define NGX_HTTP_TG_AUDIT_DROP_STEP  (1024 * 1024)     /* see drop_behind() */
#define NGX_HTTP_TG_AUDIT_DROP_KEEP  (4 * 1024 * 1024)


#define NGX_HTTP_TG_ZERO_HASH                                                 \
    "0000000000000000000000000000000000000000000000000000000000000000"


/* what all workers share about one audit file */
struct ngx_http_taurus_guard_audit_sh_s {
    u_char                       last[TG_SHA256_HEX_LEN + 1]; /* chain */
    ngx_uint_t                   records;

    /* the file the last record went to, and its size after it */
    dev_t                        dev;
    ngx_file_uniq_t              ino;
    off_t                        size;

    /*
     * Group commit across workers: bytes appended so far (a record's
     * end is its position), up to where a flush of which file covered
     * them, and the name (pid and start time) of the one worker
     * flushing now.
     */
    ngx_atomic_t                 written;
    ngx_atomic_t                 flushed;
    dev_t                        flushed_dev;
    ngx_file_uniq_t              flushed_ino;
    ngx_atomic_t                 flush_lock;
    uint32_t                     flush_seq;     /* unlocks, a futex */
    ngx_atomic_t                 flush_waiters; /* asleep on it, or about
                                                   to be */

    /*
     * What had been written when a flush last failed.  The kernel
     * reports a lost write once per open file, to the first flush that
     * looks, and the workers share the master's: a later flush of
     * records written before that failure ended says nothing of them.
     * A record is at risk when its first byte's position + 1 is not
     * above this.
     */
    ngx_atomic_t                 sync_failed;

    /*
     * For the health check: since when the last write, and the last
     * flush, of this file failed (0: it worked), and of which file (a
     * rotation puts another in its place).  One state per audit file: a
     * write or a flush of another file says nothing of this one.
     */
    ngx_atomic_t                 write_failing;
    ngx_atomic_t                 write_failing_dev;
    ngx_atomic_t                 write_failing_ino;
    ngx_atomic_t                 flush_failing;
    ngx_atomic_t                 flush_failing_dev;
    ngx_atomic_t                 flush_failing_ino;
};


/* a record queued for the end of the turn, its bytes right after it */
struct ngx_http_taurus_guard_audit_entry_s {
    ngx_queue_t                  queue;     /* in audit->unwritten */
    tg_out_t                     out;       /* the record but its link */
    tg_sha256_t                  sha;       /* of what out holds */
    ngx_http_taurus_guard_ctx_t *ctx;       /* a request blocked on it */
    int64_t                      time_sec;  /* for the collector */
    int                          time_msec;
    u_char                      *stand_in;  /* for the collector, when the
                                               record is too long for it */
    size_t                       stand_in_len;
    unsigned                     hashed:1;  /* sha finalized */
    unsigned                     written:1; /* in the file */
};


/* a group flush in a thread: the descriptors it syncs, and the result */
typedef struct {
    ngx_fd_t                     fds[NGX_HTTP_TG_AUDIT_FDS];
    ngx_uint_t                   nfds;
    ngx_err_t                    err;
    ngx_msec_t                   usec;      /* how long it took */
    dev_t                        devs[NGX_HTTP_TG_AUDIT_FDS];
    ngx_file_uniq_t              inos[NGX_HTTP_TG_AUDIT_FDS];
    ngx_atomic_uint_t            upto;      /* the records to cover */
    ngx_atomic_uint_t            from;      /* and the first's start + 1 */
    ngx_uint_t                   delay;     /* flush_delay=, in usec */
    ngx_uint_t                   synced;    /* fdatasync() calls made */
    ngx_http_taurus_guard_audit_sh_t  *sh;
    ngx_slab_pool_t             *shpool;
    ngx_atomic_uint_t            self;      /* the worker, for the lock */
} ngx_http_taurus_guard_audit_task_t;


/* ngx_http_taurus_guard_audit.c */
ngx_int_t ngx_http_taurus_guard_audit_tail(
    ngx_http_taurus_guard_audit_t *audit, ngx_fd_t rfd, ngx_fd_t wfd,
    off_t *size, u_char *last, ngx_log_t *log);
ngx_int_t ngx_http_taurus_guard_audit_lock(ngx_fd_t fd, int type);
ngx_fd_t ngx_http_taurus_guard_audit_dup(ngx_fd_t fd);
void ngx_http_taurus_guard_audit_flush(ngx_open_file_t *file,
    ngx_log_t *log);
void ngx_http_taurus_guard_audit_reloaded(
    ngx_http_taurus_guard_audit_t *audit,
    ngx_http_taurus_guard_audit_t *oaudit);
void ngx_http_taurus_guard_audit_append_handler(ngx_event_t *ev);
void ngx_http_taurus_guard_audit_cleanup(void *data);
void ngx_http_taurus_guard_audit_failed(
    ngx_http_taurus_guard_audit_t *audit, ngx_fd_t fd, ngx_uint_t flush);
void ngx_http_taurus_guard_audit_error(ngx_log_t *log,
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err, const char *what);

/* ngx_http_taurus_guard_audit_sync.c */
ngx_int_t ngx_http_taurus_guard_audit_sync_here(
    ngx_http_taurus_guard_audit_t *audit, ngx_uint_t records,
    ngx_atomic_uint_t from, ngx_log_t *log);
void ngx_http_taurus_guard_audit_timeout(ngx_event_t *ev);
void ngx_http_taurus_guard_audit_resume(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t failed, const char *reason);
void ngx_http_taurus_guard_audit_wait_cleanup(void *data);
#if (NGX_THREADS)
ngx_int_t ngx_http_taurus_guard_audit_pending_fd(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
void ngx_http_taurus_guard_audit_start_sync(
    ngx_http_taurus_guard_audit_t *audit);
void ngx_http_taurus_guard_audit_not_started(ngx_event_t *ev);
#endif


#endif /* _NGX_HTTP_TAURUS_GUARD_AUDIT_H_INCLUDED_ */
