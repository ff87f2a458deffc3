
/*
 * taurus-guard: the audit file's flush, and the requests waiting for it.
 *
 * A durable record is flushed with fdatasync() before its request may go
 * on: in a thread of nginx's pool (group commit: one flush of a file at
 * a time, across workers, under the flush lock in the zone, covering
 * every record written before it began), or in the event loop once a
 * turn without one.  A flush that fails fails every record written
 * before it ended, whoever's flush covers them later (the kernel tells
 * of a lost write once).  Each waiting request has a timer (timeout=).
 */


#include "ngx_http_taurus_guard_audit.h"

#if (NGX_LINUX)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif


static void ngx_http_taurus_guard_audit_sync_failed(
    ngx_http_taurus_guard_audit_sh_t *sh, ngx_slab_pool_t *shpool);
static ngx_msec_t ngx_http_taurus_guard_audit_usec(void);

static void ngx_http_taurus_guard_audit_flush_lock(
    ngx_http_taurus_guard_audit_sh_t *sh, ngx_atomic_uint_t self);
static void ngx_http_taurus_guard_audit_flush_unlock(
    ngx_http_taurus_guard_audit_sh_t *sh, ngx_atomic_uint_t self);

#if (NGX_THREADS)
static void ngx_http_taurus_guard_audit_sync_thread(void *data,
    ngx_log_t *log);
static void ngx_http_taurus_guard_audit_sync_done(ngx_event_t *ev);
static void ngx_http_taurus_guard_audit_fail_later(
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err);
static void ngx_http_taurus_guard_audit_close_fds(
    ngx_http_taurus_guard_audit_task_t *t);
static void ngx_http_taurus_guard_audit_keep_fd(
    ngx_http_taurus_guard_audit_t *audit,
    ngx_http_taurus_guard_audit_task_t *t);
static void ngx_http_taurus_guard_audit_wake(
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err);
#endif


/*
 * In the event loop, for "records", the first starting at from - 1: this
 * flush cannot be timed out.  It runs under the flush lock, as a thread's
 * does, so that a failure another worker's flush was told of is known
 * here (see sync_failed).
 */

ngx_int_t
ngx_http_taurus_guard_audit_sync_here(ngx_http_taurus_guard_audit_t *audit,
    ngx_uint_t records, ngx_atomic_uint_t from, ngx_log_t *log)
{
    ngx_err_t                          err;
    ngx_msec_t                         start;
    ngx_atomic_uint_t                  self;
    ngx_http_taurus_guard_audit_sh_t  *sh;

    sh = audit->sh;
    start = ngx_http_taurus_guard_audit_usec();
    err = 0;
    self = ngx_http_taurus_guard_process_self();

    ngx_http_taurus_guard_audit_flush_lock(sh, self);

    if (fdatasync(audit->file->fd) == -1) {
        err = ngx_errno;
        ngx_http_taurus_guard_audit_sync_failed(sh, audit->shpool);

    } else if (from <= sh->sync_failed) {
        err = EIO;
    }

    ngx_http_taurus_guard_audit_flush_unlock(sh, self);

    if (err) {
        ngx_http_taurus_guard_audit_failed(audit, audit->file->fd, 1);
        ngx_http_taurus_guard_audit_error(log, audit, err, "fdatasync()");
        return NGX_ERROR;
    }

    ngx_http_taurus_guard_metrics_flush(ngx_http_taurus_guard_audit_usec()
                                        - start, records, 0);

    sh->write_failing = 0;
    sh->flush_failing = 0;

    return NGX_OK;
}


/*
 * A flush failed: what has been written until now is at risk.  Read
 * under the zone's mutex, which an append holds from its first write()
 * to the count of its bytes: a record written before the failure ended
 * is counted, however long its worker took to count it (preempted,
 * throttled in a second write()).  In a thread too: the event loop never
 * waits for the flush lock while it holds the mutex.
 */

static void
ngx_http_taurus_guard_audit_sync_failed(ngx_http_taurus_guard_audit_sh_t *sh,
    ngx_slab_pool_t *shpool)
{
    ngx_shmtx_lock(&shpool->mutex);
    sh->sync_failed = sh->written;
    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * The holder is in fdatasync(): another worker's thread, or another
 * worker's event loop (thread_pool=off, or a build without threads: the
 * lock orders the failure mark against every flush).  On Linux the
 * waiters sleep on a futex that an unlock wakes, elsewhere they poll.
 * Both look again every 100 ms at least: a worker killed while it held
 * the lock leaves its name behind (self: its pid and start time,
 * ngx_http_taurus_guard_process.c), and the lock is taken over once
 * that process is gone, even when another process has its pid by then
 * (which would otherwise keep every later flush waiting for good).
 *
 * An unlock wakes only when someone said it may sleep: a waiter counts
 * itself in flush_waiters before FUTEX_WAIT, an unlock bumps flush_seq
 * before it reads the count (both full barriers).  So either the unlock
 * sees the waiter, or the waiter's FUTEX_WAIT finds flush_seq changed
 * since it read it, and does not sleep.  Most flushes have nobody
 * waiting: one system call a flush less.  A waiter killed while counted
 * leaves the count up, and unlocks then wake for nothing, as they all
 * did before.
 */

static void
ngx_http_taurus_guard_audit_flush_lock(ngx_http_taurus_guard_audit_sh_t *sh,
    ngx_atomic_uint_t self)
{
    uint32_t           seq;
    ngx_uint_t         n;
    ngx_atomic_uint_t  holder;
#if (NGX_LINUX)
    struct timespec    ts;
#endif

    for (n = 0; /* void */; n++) {

        seq = *(volatile uint32_t *) &sh->flush_seq;
        ngx_memory_barrier();

        holder = sh->flush_lock;

        if (holder == 0) {
            if (ngx_atomic_cmp_set(&sh->flush_lock, 0, self)) {
                return;
            }

            continue;
        }

        /* this worker's other flush (thread or event loop) is alive */

        if (holder != self && ngx_http_taurus_guard_process_gone(holder)) {
            (void) ngx_atomic_cmp_set(&sh->flush_lock, holder, 0);
            continue;
        }

#if (NGX_LINUX)
        /* returns at once if an unlock came in between */

        ts.tv_sec = 0;
        ts.tv_nsec = 100000000;

        (void) ngx_atomic_fetch_add(&sh->flush_waiters, 1);

        (void) syscall(SYS_futex, &sh->flush_seq, FUTEX_WAIT, seq, &ts,
                       NULL, 0);

        (void) ngx_atomic_fetch_add(&sh->flush_waiters, -1);
#else
        (void) seq;
        (void) usleep(n < 20 ? 50 : 250);
#endif
    }
}


static void
ngx_http_taurus_guard_audit_flush_unlock(ngx_http_taurus_guard_audit_sh_t *sh,
    ngx_atomic_uint_t self)
{
    ngx_memory_barrier();

    (void) ngx_atomic_cmp_set(&sh->flush_lock, self, 0);

    (void) __sync_fetch_and_add(&sh->flush_seq, 1);

#if (NGX_LINUX)
    /* all of them: another worker's records may all be covered */

    if (sh->flush_waiters != 0) {
        (void) syscall(SYS_futex, &sh->flush_seq, FUTEX_WAKE, INT_MAX, NULL,
                       NULL, 0);
    }
#endif
}


#if (NGX_THREADS)

/*
 * The next flush covers every descriptor written to since the last one
 * started: usually one, two if the file was reopened in between.  Each
 * is a duplicate of the file's, so that a reopen cannot close it under a
 * flush; the last flush's is kept for the next one of the same file
 * (ngx_http_taurus_guard_audit_keep_fd()), which then needs no dup()
 * and no close() of its own.  Called once the file's lock is released.
 */

ngx_int_t
ngx_http_taurus_guard_audit_pending_fd(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    ngx_fd_t    fd;
    ngx_uint_t  i;

    /* by file, not by descriptor number: a reopen may reuse a number */

    for (i = 0; i < audit->npending; i++) {
        if (audit->pending_ino[i] == audit->written_ino
            && audit->pending_dev[i] == audit->written_dev)
        {
            return NGX_OK;
        }
    }

    if (audit->npending == NGX_HTTP_TG_AUDIT_FDS) {
        return NGX_DECLINED;
    }

    if (audit->kept_fd != NGX_INVALID_FILE
        && audit->kept_ino == audit->written_ino
        && audit->kept_dev == audit->written_dev)
    {
        fd = audit->kept_fd;
        audit->kept_fd = NGX_INVALID_FILE;

    } else {
        fd = ngx_http_taurus_guard_audit_dup(audit->file->fd);

        if (fd == -1) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "taurus_guard: dup() of the audit log failed");
            return NGX_ERROR;
        }
    }

    audit->pending_ino[audit->npending] = audit->written_ino;
    audit->pending_dev[audit->npending] = audit->written_dev;
    audit->pending_fds[audit->npending] = fd;
    audit->npending++;

    return NGX_OK;
}


void
ngx_http_taurus_guard_audit_start_sync(ngx_http_taurus_guard_audit_t *audit)
{
    ngx_uint_t                           i;
    ngx_atomic_uint_t                    from;
    ngx_thread_task_t                   *task;
    ngx_http_taurus_guard_audit_task_t  *t;

    /* what was written until now rides on this flush */

    ngx_queue_add(&audit->syncing, &audit->pending);
    ngx_queue_init(&audit->pending);

    from = audit->pending_from ? audit->pending_from : 1;
    audit->pending_from = 0;

    if (audit->npending == 0) {
        /* a flush of nothing would wake them as flushed: never */
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "taurus_guard: no descriptor of \"%V\" to flush",
                      &audit->file->name);

        ngx_http_taurus_guard_audit_fail_later(audit, NGX_EBADF);
        return;
    }

    task = audit->task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool,
                                  sizeof(ngx_http_taurus_guard_audit_task_t));
        if (task == NULL) {
            for (i = 0; i < audit->npending; i++) {
                (void) close(audit->pending_fds[i]);
            }

            audit->npending = 0;
            ngx_http_taurus_guard_audit_fail_later(audit, NGX_ENOMEM);
            return;
        }

        task->handler = ngx_http_taurus_guard_audit_sync_thread;
        task->event.handler = ngx_http_taurus_guard_audit_sync_done;
        task->event.data = audit;
        task->event.log = ngx_cycle->log;

        audit->task = task;
    }

    t = task->ctx;

    for (i = 0; i < audit->npending; i++) {
        t->fds[i] = audit->pending_fds[i];
        t->devs[i] = audit->pending_dev[i];
        t->inos[i] = audit->pending_ino[i];
    }

    t->nfds = audit->npending;
    t->err = 0;
    t->upto = audit->written_upto;
    t->from = from;
    t->delay = audit->flush_delay;
    t->synced = 0;
    t->sh = audit->sh;
    t->shpool = audit->shpool;
    t->self = ngx_http_taurus_guard_process_self();
    audit->npending = 0;

    if (ngx_thread_task_post(audit->thread_pool, task) != NGX_OK) {
        ngx_http_taurus_guard_audit_close_fds(t);

        /* fail closed: nobody waiting is forwarded */
        ngx_http_taurus_guard_audit_fail_later(audit, NGX_EAGAIN);
        return;
    }

    audit->busy = 1;
}


/*
 * One flush in flight per file, across all workers, as PostgreSQL's
 * group commit does with its WAL flush pointer: under the zone's flush
 * lock, a worker whose records another worker's flush has covered
 * already (its flush began after they were written) is done without a
 * flush of its own; otherwise it waits flush_delay= for more records to
 * come, then covers every record written until then, by anyone.  Those
 * workers' own flushes then find their records covered.
 *
 * In a thread of the pool: no nginx state is touched here, and no
 * descriptor is closed, which would drop the event loop's file lock.
 */

static void
ngx_http_taurus_guard_audit_sync_thread(void *data, ngx_log_t *log)
{
    ngx_http_taurus_guard_audit_task_t  *t = data;

    ngx_uint_t                         i;
    ngx_atomic_uint_t                  upto;
    ngx_http_taurus_guard_audit_sh_t  *sh;

    sh = t->sh;

    t->usec = ngx_http_taurus_guard_audit_usec();

    for (i = 0; i < t->nfds; i++) {

        ngx_http_taurus_guard_audit_flush_lock(sh, t->self);

        /*
         * A flush that failed after the first of these records was
         * written may have lost them, and nobody else is told: they
         * fail, even if a flush since (another's, or this one) works.
         */

        if (t->from <= sh->sync_failed) {
            if (t->err == 0) {
                t->err = EIO;
            }

            ngx_http_taurus_guard_audit_flush_unlock(sh, t->self);
            continue;
        }

        if (sh->flushed >= t->upto
            && sh->flushed_ino == t->inos[i] && sh->flushed_dev == t->devs[i])
        {
            ngx_http_taurus_guard_audit_flush_unlock(sh, t->self);
            continue;
        }

        if (t->delay) {
            (void) usleep((useconds_t) t->delay);
        }

        /* every record that ends here has been written: this covers it */

        upto = sh->written;
        ngx_memory_barrier();

        t->synced++;

        if (fdatasync(t->fds[i]) == -1) {
            if (t->err == 0) {
                t->err = ngx_errno;
            }

            ngx_http_taurus_guard_audit_sync_failed(sh, t->shpool);

        } else if (t->err == 0) {
            sh->flushed_dev = t->devs[i];
            sh->flushed_ino = t->inos[i];
            sh->flushed = upto;
        }

        ngx_http_taurus_guard_audit_flush_unlock(sh, t->self);
    }

    t->usec = ngx_http_taurus_guard_audit_usec() - t->usec;
}


/*
 * A flush that could not start (no task, the thread pool's queue full)
 * fails those waiting for it as a failed flush would, from the event
 * loop: waking them here would run the request that is writing its
 * record, from inside its own audit call.
 */

static void
ngx_http_taurus_guard_audit_fail_later(ngx_http_taurus_guard_audit_t *audit,
    ngx_err_t err)
{
    audit->busy = 1;
    audit->failed_err = err;

    ngx_post_event(&audit->failed, &ngx_posted_events);
}


void
ngx_http_taurus_guard_audit_not_started(ngx_event_t *ev)
{
    ngx_http_taurus_guard_audit_t  *audit = ev->data;

    ngx_http_taurus_guard_audit_wake(audit, audit->failed_err);

    audit->busy = 0;

    if (!ngx_queue_empty(&audit->pending)) {
        ngx_http_taurus_guard_audit_start_sync(audit);
    }
}


static void
ngx_http_taurus_guard_audit_sync_done(ngx_event_t *ev)
{
    ngx_http_taurus_guard_audit_t  *audit = ev->data;

    ngx_uint_t                           i;
    ngx_http_taurus_guard_audit_task_t  *t;

    t = audit->task->ctx;

    if (t->err && t->nfds) {
        /* the newest file it synced, before its descriptor goes */
        ngx_http_taurus_guard_audit_failed(audit, t->fds[t->nfds - 1], 1);
    }

    ngx_http_taurus_guard_audit_keep_fd(audit, t);

    ngx_http_taurus_guard_audit_wake(audit, t->err);

    audit->busy = 0;

    if (!ngx_queue_empty(&audit->pending)) {
        ngx_http_taurus_guard_audit_start_sync(audit);
        return;
    }

    /* those who wrote to them timed out meanwhile */

    for (i = 0; i < audit->npending; i++) {
        (void) close(audit->pending_fds[i]);
    }

    audit->npending = 0;
    audit->pending_from = 0;
}


/*
 * A flush that ended keeps its newest descriptor for the next flush of
 * that file, and closes the others, with a kept one of another file.
 * In the event loop, where no lock of the file is held: closing one of
 * its descriptors would drop it.
 */

static void
ngx_http_taurus_guard_audit_keep_fd(ngx_http_taurus_guard_audit_t *audit,
    ngx_http_taurus_guard_audit_task_t *t)
{
    ngx_uint_t  n;

    n = t->nfds;

    if (n == 0) {
        return;
    }

    t->nfds = n - 1;
    ngx_http_taurus_guard_audit_close_fds(t);

    if (audit->kept_fd != NGX_INVALID_FILE) {
        (void) close(audit->kept_fd);
    }

    audit->kept_fd = t->fds[n - 1];
    audit->kept_ino = t->inos[n - 1];
    audit->kept_dev = t->devs[n - 1];
}


static void
ngx_http_taurus_guard_audit_close_fds(ngx_http_taurus_guard_audit_task_t *t)
{
    ngx_uint_t  i;

    for (i = 0; i < t->nfds; i++) {
        (void) close(t->fds[i]);
    }

    t->nfds = 0;
}


/* the requests that waited for a flush go on, or are refused */

static void
ngx_http_taurus_guard_audit_wake(ngx_http_taurus_guard_audit_t *audit,
    ngx_err_t err)
{
    ngx_uint_t                           n;
    ngx_queue_t                         *q, done;
    ngx_http_taurus_guard_ctx_t         *ctx;
    ngx_http_taurus_guard_audit_task_t  *t;

    if (err) {
        ngx_http_taurus_guard_audit_error(ngx_cycle->log, audit, err,
                                          "fdatasync()");
    }

    /*
     * Those this flush covered, and only they: a request resumed here
     * that writes a durable record joins the next flush.
     */

    ngx_queue_init(&done);

    if (!ngx_queue_empty(&audit->syncing)) {
        ngx_queue_add(&done, &audit->syncing);
        ngx_queue_init(&audit->syncing);
    }

    n = 0;

    for (q = ngx_queue_head(&done);
         q != ngx_queue_sentinel(&done);
         q = ngx_queue_next(q))
    {
        n++;
    }

    if (audit->task != NULL) {
        t = audit->task->ctx;

        if (err || t->synced) {
            ngx_http_taurus_guard_metrics_flush(t->usec, n, err);

        } else {
            /* another worker's flush covered them */
            ngx_http_taurus_guard_metrics_flush_joined(n);
        }
    }

    if (!err) {
        audit->sh->write_failing = 0;
        audit->sh->flush_failing = 0;
    }

    while (!ngx_queue_empty(&done)) {
        q = ngx_queue_head(&done);
        ngx_queue_remove(q);
        q->next = NULL;

        ctx = ngx_queue_data(q, ngx_http_taurus_guard_ctx_t, queue);

        ngx_http_taurus_guard_audit_resume(ctx->request, ctx, err ? 1 : 0,
                                           NULL);
    }
}


#endif


/*
 * The flush did not end in time: the request leaves the queue, so the
 * late flush cannot touch it, and is refused; nothing is forwarded.
 */

void
ngx_http_taurus_guard_audit_timeout(ngx_event_t *ev)
{
    ngx_http_taurus_guard_ctx_t  *ctx = ev->data;

    ngx_queue_remove(&ctx->queue);
    ctx->queue.next = NULL;

    ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                  "taurus_guard: audit flush for record %s timed out"
                  " after %M ms", ctx->id, ctx->audit->timeout);

    ngx_http_taurus_guard_audit_resume(ctx->request, ctx, 1,
                                       "audit flush timed out");
}


void
ngx_http_taurus_guard_audit_resume(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t failed, const char *reason)
{
    ngx_connection_t  *c;

    c = r->connection;

    if (ctx->flush_wait.timer_set) {
        ngx_del_timer(&ctx->flush_wait);
    }

    ctx->sync_failed = failed;

    if (reason != NULL) {
        ctx->sync_reason.data = (u_char *) reason;
        ctx->sync_reason.len = ngx_strlen(reason);
    }

    r->main->blocked--;
    r->aio = 0;

    /* unless nginx meanwhile decided to end the request */

    if (r->write_event_handler == ngx_http_request_empty_handler) {
        r->write_event_handler = ctx->resume;
    }

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


/* a request freed while it waits: the queue and the timer forget it */

void
ngx_http_taurus_guard_audit_wait_cleanup(void *data)
{
    ngx_http_taurus_guard_ctx_t  *ctx = data;

    if (ctx->flush_wait.timer_set) {
        ngx_del_timer(&ctx->flush_wait);
    }

    if (ctx->queue.next != NULL) {
        ngx_queue_remove(&ctx->queue);
        ctx->queue.next = NULL;
    }

    /* its record is still written: nobody waits for it */

    if (ctx->entry != NULL) {
        ctx->entry->ctx = NULL;
        ctx->entry = NULL;
    }
}


/* microseconds of the monotonic clock, for the flush histogram */

static ngx_msec_t
ngx_http_taurus_guard_audit_usec(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
        return 0;
    }

    return (ngx_msec_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
