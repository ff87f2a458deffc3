
/*
 * taurus-guard: the audit file.
 *
 * Opened with ngx_conf_open_file() so that "nginx -s reopen" rotates it.
 * Records are queued in a per-worker arena and written at the end of the
 * event loop turn, all of a turn's records with one writev() under a lock
 * in shared memory, which keeps the hash chain (every record carries the
 * link of the one before it, across workers, reopens and reloads) and
 * lets a partial write be cut back so no torn line is ever left for the
 * next record to run into.  An allow record blocks its request until the
 * end of the turn; a refusal, whose answer says whether it was audited,
 * is written at once, with whatever the turn queued before it.
 *
 * The chain is one per file, whatever wrote to it last: each append
 * also holds a POSIX record lock on the file (per process, so it holds
 * between the workers of one master, between two masters during a
 * binary upgrade, between two spellings of one path, and the kernel
 * drops it when a worker dies), and the zone remembers the file and its
 * size after the last record.  A file that is not what the zone
 * remembers was written by someone else (another master's worker, or a
 * worker killed between its write() and the update of the chain head):
 * the next record links to the file's real last line instead.  A POSIX
 * lock goes away when the process closes any descriptor of the file, so
 * no descriptor of it is closed while one is held, nor in a thread.
 *
 * A durable record is then flushed with fdatasync() before the request
 * may go on.  With nginx's thread pools the flush runs off the event
 * loop, and records written while a flush is in flight share the next
 * one (group commit), across workers too: one flush of a file runs at a
 * time, under a lock in the zone, and covers every record written
 * before it began (ngx_http_taurus_guard_audit_sync.c).  Without a
 * thread pool the event loop flushes once a turn, after the turn's
 * records are written.  The flush syncs its own duplicate of the
 * descriptor (closed on exec, as every descriptor the module keeps), so
 * "nginx -s reopen" cannot pull the file out from under it.  Each
 * request waiting for a flush has a timer (timeout=): when it fires the
 * request is taken off the queue and refused, and the timer is also what
 * keeps an exiting worker (reload, quit, binary upgrade) alive until
 * every waiting batch is answered.
 *
 * The directive, the zone and the start of the chain at "nginx -t", a
 * start or a reload are in ngx_http_taurus_guard_audit_conf.c.
 */


#include "ngx_http_taurus_guard_audit.h"

/*
 * The bytes written and flushed are counted in the zone in ngx_atomic_t,
 * compared as they grow: 32 bits would wrap after 4 GB of records, and a
 * flush could then be taken for done.
 */

#if (NGX_PTR_SIZE < 8)
#error "taurus_guard needs a 64-bit platform (the audit's byte counts)"
#endif


static void ngx_http_taurus_guard_audit_leave(
    ngx_http_taurus_guard_audit_t *audit, ngx_fd_t fd);
static void ngx_http_taurus_guard_audit_keep_prev(
    ngx_http_taurus_guard_audit_t *audit, ngx_fd_t fd);
static ngx_int_t ngx_http_taurus_guard_audit_prev_tail(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static ngx_fd_t ngx_http_taurus_guard_audit_open(
    ngx_http_taurus_guard_audit_t *audit);
static void ngx_http_taurus_guard_audit_reopened(ngx_event_t *ev);
static ngx_http_taurus_guard_audit_entry_t *
    ngx_http_taurus_guard_audit_queue(ngx_http_taurus_guard_audit_t *audit,
    tg_audit_record_t *rec, ngx_log_t *log);
static ngx_int_t ngx_http_taurus_guard_audit_wait(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit,
    ngx_http_taurus_guard_audit_entry_t *e);
static ngx_int_t ngx_http_taurus_guard_audit_append(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static void ngx_http_taurus_guard_audit_written(
    ngx_http_taurus_guard_audit_t *audit, ngx_uint_t unflushed,
    ngx_uint_t flush);
static void ngx_http_taurus_guard_audit_deliver(
    ngx_http_taurus_guard_audit_t *audit);
static void ngx_http_taurus_guard_audit_drop_behind(
    ngx_http_taurus_guard_audit_t *audit, ngx_fd_t fd, off_t from, off_t to,
    ngx_log_t *log);


/*
 * The link (tg_audit.h) of the last whole line of the file, read through
 * rfd, into last.  A torn last line (a crash in the middle of a write) is
 * cut off through wfd, so the next record cannot run into it; that is
 * logged.  A file no record goes into any more (a rotated one, wfd
 * NGX_INVALID_FILE) is left as it is.  NGX_DECLINED: no whole line is
 * left.  Reads from the end, a little first, more only for a longer line,
 * up to audit->tail_max.
 */

ngx_int_t
ngx_http_taurus_guard_audit_tail(ngx_http_taurus_guard_audit_t *audit,
    ngx_fd_t rfd, ngx_fd_t wfd, off_t *size, u_char *last, ngx_log_t *log)
{
    u_char     *buf, *p, *e, *end;
    off_t       from, want;
    ssize_t     n;
    ngx_int_t   rc;

    want = NGX_HTTP_TG_AUDIT_TAIL_MIN;

    for ( ;; ) {
        from = (*size > want) ? *size - want : 0;

        buf = ngx_alloc((size_t) (*size - from), log);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        n = pread(rfd, buf, (size_t) (*size - from), from);

        if (n != (ssize_t) (*size - from)) {
            ngx_log_error(NGX_LOG_ALERT, log, n == -1 ? ngx_errno : 0,
                          "taurus_guard: cannot read the end of audit log"
                          " \"%V\"", &audit->file->name);
            ngx_free(buf);
            return NGX_ERROR;
        }

        end = buf + n;

        /* e: the end of the last whole line, p: its start */

        e = end;

        while (e > buf && e[-1] != '\n') {
            e--;
        }

        p = e;

        if (e > buf) {
            p = e - 1;

            while (p > buf && p[-1] != '\n') {
                p--;
            }
        }

        if (p > buf || from == 0) {
            break;
        }

        ngx_free(buf);

        if (want >= (off_t) audit->tail_max) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "taurus_guard: audit log \"%V\" does not end with"
                          " a record", &audit->file->name);
            return NGX_ERROR;
        }

        want *= 2;
    }

    if (e != end && wfd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "taurus_guard: the file before audit log \"%V\" ends"
                      " with a torn record of %z bytes",
                      &audit->file->name, end - e);

    } else if (e != end) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "taurus_guard: audit log \"%V\" ends with a torn"
                      " record of %z bytes, cut off",
                      &audit->file->name, end - e);

        if (ftruncate(wfd, from + (e - buf)) == -1) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "taurus_guard: ftruncate(\"%V\") failed",
                          &audit->file->name);
            ngx_free(buf);
            return NGX_ERROR;
        }

        *size = from + (e - buf);
    }

    if (e == buf) {
        ngx_free(buf);
        return NGX_DECLINED;
    }

    rc = (tg_audit_chain_digest(p, e - p, (char *) last) == TG_OK)
         ? NGX_OK : NGX_ERROR;

    ngx_free(buf);

    return rc;
}


/*
 * The worker leaves a descriptor for a new file's (a reopen, or following
 * another worker's): it is kept if the chain is in its file, until the
 * chain goes on in the new one, and closed otherwise (a second reopen
 * before any record: the file the chain is in stays the one kept).  No
 * lock of ours is held on any file at these points: closing one of its
 * descriptors would drop it.
 */

static void
ngx_http_taurus_guard_audit_leave(ngx_http_taurus_guard_audit_t *audit,
    ngx_fd_t fd)
{
    ngx_file_info_t  fi;

    if (ngx_fd_info(fd, &fi) != NGX_FILE_ERROR && ngx_is_file(&fi)
        && ngx_file_uniq(&fi) == audit->sh->ino
        && fi.st_dev == audit->sh->dev)
    {
        ngx_http_taurus_guard_audit_keep_prev(audit, fd);
        return;
    }

    (void) ngx_close_file(fd);
}


static void
ngx_http_taurus_guard_audit_keep_prev(ngx_http_taurus_guard_audit_t *audit,
    ngx_fd_t fd)
{
    if (audit->prev_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(audit->prev_fd);
    }

    audit->prev_fd = fd;
}


/*
 * The first record of a new file (a rotation) links to the last record
 * of the file before it, which this zone may not have written: another
 * master's workers during a binary upgrade, another spelling of the
 * path, write to it under the same file lock.  So the previous file is
 * read back under that lock when it is not as the zone left it.  Called
 * under the zone's mutex and the new file's lock: those who hold the
 * previous file's lock never wait for the new one's while they do.  The
 * kept descriptor is closed by the caller once the new file's lock is
 * released: whatever file it is, closing it here could drop a lock.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_prev_tail(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    off_t                              size;
    ngx_fd_t                           fd, rfd;
    ngx_int_t                          rc;
    ngx_file_info_t                    fi;
    ngx_http_taurus_guard_audit_sh_t  *sh;
    u_char                             proc[sizeof("/proc/self/fd/")
                                            + NGX_INT_T_LEN];

    sh = audit->sh;
    fd = audit->prev_fd;

    /* only the file the zone's last record is in */

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)
        || ngx_file_uniq(&fi) != sh->ino || fi.st_dev != sh->dev)
    {
        return NGX_OK;
    }

    if (ngx_http_taurus_guard_audit_lock(fd, F_WRLCK) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "taurus_guard: cannot lock the previous file of audit"
                      " log \"%V\"", &audit->file->name);
        return NGX_ERROR;
    }

    rc = NGX_OK;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        rc = NGX_ERROR;
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size == 0 || size == sh->size) {
        goto done;
    }

    ngx_sprintf(proc, "/proc/self/fd/%d%Z", fd);

    rfd = ngx_open_file(proc, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (rfd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "taurus_guard: cannot read the previous file of audit"
                      " log \"%V\"", &audit->file->name);
        rc = NGX_ERROR;
        goto done;
    }

    rc = ngx_http_taurus_guard_audit_tail(audit, rfd, fd, &size, sh->last,
                                          log);

    (void) ngx_close_file(rfd);

    if (rc == NGX_DECLINED) {
        rc = NGX_OK;
    }

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "taurus_guard: audit log \"%V\" is new, the chain"
                      " goes on from the last record of the file before it,"
                      " written by another process", &audit->file->name);
    }

done:

    (void) ngx_http_taurus_guard_audit_lock(fd, F_UNLCK);

    return rc;
}


/* a POSIX record lock on the whole file, or its release */

ngx_int_t
ngx_http_taurus_guard_audit_lock(ngx_fd_t fd, int type)
{
    struct flock  fl;

    ngx_memzero(&fl, sizeof(struct flock));

    fl.l_type = (short) type;
    fl.l_whence = SEEK_SET;

    while (fcntl(fd, type == F_UNLCK ? F_SETLK : F_SETLKW, &fl) == -1) {
        if (ngx_errno != NGX_EINTR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A duplicate of the audit file's descriptor, for a worker to keep (a
 * flush's own, the file a rotation left): closed on exec, as nginx's own
 * descriptor is (dup() clears that flag).  A program another module runs
 * from a worker must not hold the audit file open for writing.
 */

ngx_fd_t
ngx_http_taurus_guard_audit_dup(ngx_fd_t fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}


/*
 * Takes one record.  NGX_HTTP_TG_AUDIT_LATER: queued, written at the end
 * of this turn of the event loop, NGX_OK unless it could not even be
 * queued.  NGX_HTTP_TG_AUDIT_NOW: written (with whatever was queued)
 * before this returns, NGX_OK or NGX_ERROR.  NGX_HTTP_TG_AUDIT_DURABLE:
 * NGX_AGAIN, the request blocked until its record is written at the end
 * of the turn and, if the file is durable, flushed (by the thread pool's
 * group flush, or in the event loop once for the whole turn), or either
 * failed or timed out: its write_event_handler then runs with
 * ctx->sync_failed (and ctx->sync_reason) set or not; NGX_ERROR: not
 * even queued.
 */

ngx_int_t
ngx_http_taurus_guard_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit, tg_audit_record_t *rec,
    ngx_uint_t how)
{
    ngx_http_taurus_guard_audit_entry_t  *e;

    e = ngx_http_taurus_guard_audit_queue(audit, rec, r->connection->log);

    if (e == NULL) {
        return NGX_ERROR;
    }

    if (how == NGX_HTTP_TG_AUDIT_LATER) {
        return NGX_OK;
    }

    if (how == NGX_HTTP_TG_AUDIT_DURABLE) {
        return ngx_http_taurus_guard_audit_wait(r, audit, e);
    }

    /*
     * Written now.  What counts is this record: the entry stays readable
     * until the next one is queued, though the queue is spent.
     */

    (void) ngx_http_taurus_guard_audit_append(audit, r->connection->log);

    return e->written ? NGX_OK : NGX_ERROR;
}


/*
 * The record, all of it but its link, is written and hashed in one pass
 * into the arena, then waits for the end of the turn: the link (always
 * 64 hex digits, TG_AUDIT_LINK_LEN bytes) is known only under the lock,
 * where the previous record is.  A full arena is written out first.
 */

static ngx_http_taurus_guard_audit_entry_t *
ngx_http_taurus_guard_audit_queue(ngx_http_taurus_guard_audit_t *audit,
    tg_audit_record_t *rec, ngx_log_t *log)
{
    u_char                               *arena;
    size_t                                bound, need, size, room, extra;
    tg_out_t                              o;
    ngx_http_taurus_guard_main_conf_t    *mcf;
    ngx_http_taurus_guard_audit_entry_t  *e;

    rec->prev = NGX_HTTP_TG_ZERO_HASH;
    bound = tg_audit_bound(rec);

    /*
     * A record that may be too long for the syslog collector gets room
     * for its stand-in before its bytes, written from rec now: the
     * strings rec points to may be gone by the time the record is sent.
     */

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_taurus_guard_module);
    room = (mcf != NULL && mcf->syslog != NULL)
           ? ngx_http_taurus_guard_syslog_room(mcf->syslog) : 0;
    extra = (room && bound > room) ? TG_AUDIT_STAND_IN_MAX : 0;

    need = ngx_align(sizeof(ngx_http_taurus_guard_audit_entry_t)
                     + extra + bound, NGX_ALIGNMENT);

    if (audit->arena_used + need > audit->arena_size) {

        if (!ngx_queue_empty(&audit->unwritten)) {
            /* its blocked requests learn how it went from the event */
            (void) ngx_http_taurus_guard_audit_append(audit, log);
        }

        if (need > audit->arena_size) {
            size = ngx_max(audit->arena_size, NGX_HTTP_TG_AUDIT_ARENA);

            while (size < need) {
                if (size > NGX_MAX_SIZE_T_VALUE / 2) {
                    return NULL;
                }

                size *= 2;
            }

            arena = ngx_alloc(size, log);
            if (arena == NULL) {
                return NULL;
            }

            if (audit->arena != NULL) {
                ngx_free(audit->arena);
            }

            audit->arena = arena;
            audit->arena_size = size;
        }
    }

    e = (ngx_http_taurus_guard_audit_entry_t *)
            (audit->arena + audit->arena_used);
    audit->arena_used += need;

    tg_out_init(&e->out, (u_char *) e + sizeof(*e) + extra, bound);
    tg_sha256_init(&e->sha);
    tg_out_hash(&e->out, &e->sha);

    tg_audit_write_head(&e->out, rec);
    tg_out_flush(&e->out);

    /* the line without its '\n', the link always 64 hex digits long */

    e->stand_in = NULL;
    e->stand_in_len = 0;

    if (extra && e->out.len + TG_AUDIT_LINK_LEN - 1 > room) {
        tg_out_init(&o, (u_char *) e + sizeof(*e), TG_AUDIT_STAND_IN_MAX);
        tg_audit_write_stand_in(&o, rec, e->out.len + TG_AUDIT_LINK_LEN - 1);

        if (!o.overflow) {
            e->stand_in = o.buf;
            e->stand_in_len = o.pos;
        }
    }

    /*
     * The bound counts every byte escaped six times over: what the link
     * does not need goes back to the arena, so a busy turn's records
     * fill it by their real size.  A head that overran its bound keeps
     * it, for the check before the write to refuse.
     */

    if (!e->out.overflow && e->out.pos == e->out.len
        && e->out.pos + TG_AUDIT_LINK_LEN < e->out.size)
    {
        e->out.size = e->out.pos + TG_AUDIT_LINK_LEN;
        audit->arena_used -= need
                             - ngx_align(sizeof(*e) + extra + e->out.size,
                                         NGX_ALIGNMENT);
    }

    e->ctx = NULL;
    e->hashed = 0;
    e->written = 0;
    e->time_sec = rec->time_sec;
    e->time_msec = rec->time_msec;

    ngx_queue_insert_tail(&audit->unwritten, &e->queue);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "taurus_guard: audit record %s %s queued, %uz bytes"
                   " before its link", rec->id ? rec->id : "",
                   tg_decision_name(rec->decision), e->out.len);

    if (!audit->append.posted) {
        ngx_post_event(&audit->append, &ngx_posted_events);
    }

    return e;
}


/*
 * The request is blocked until its record is written and, if the file is
 * durable, flushed: nothing runs for it until then, as a write event on
 * a keep-alive connection would otherwise resume it early.
 * ngx_http_taurus_guard_audit_resume() puts ctx->resume back in place.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_wait(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit,
    ngx_http_taurus_guard_audit_entry_t *e)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    if (ctx->flush_wait.handler == NULL) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_taurus_guard_audit_wait_cleanup;
        cln->data = ctx;

        ctx->flush_wait.handler = ngx_http_taurus_guard_audit_timeout;
        ctx->flush_wait.data = ctx;
        ctx->flush_wait.log = r->connection->log;
    }

    ctx->request = r;
    ctx->sync_failed = 0;
    ngx_str_null(&ctx->sync_reason);

    ctx->entry = e;
    e->ctx = ctx;

    r->write_event_handler = ngx_http_request_empty_handler;
    r->main->blocked++;
    r->aio = 1;

    return NGX_AGAIN;
}


/* the end of the turn: the records queued during it go to the file */

void
ngx_http_taurus_guard_audit_append_handler(ngx_event_t *ev)
{
    ngx_http_taurus_guard_audit_t  *audit = ev->data;

    (void) ngx_http_taurus_guard_audit_append(audit, ev->log);

    ngx_http_taurus_guard_audit_deliver(audit);
}


/*
 * The configuration goes (a reload without a master process): what its
 * last turn queued is written, and no posted event is left in memory
 * about to be freed.  A worker that exits writes its queue in
 * ngx_http_taurus_guard_audit_exit().
 */

void
ngx_http_taurus_guard_audit_cleanup(void *data)
{
    ngx_http_taurus_guard_audit_t  *audit = data;

    (void) ngx_http_taurus_guard_audit_append(audit, ngx_cycle->log);

    if (audit->append.posted) {
        ngx_delete_posted_event(&audit->append);
    }

    if (audit->reopened.posted) {
        ngx_delete_posted_event(&audit->reopened);
    }

    if (audit->arena != NULL) {
        ngx_free(audit->arena);
        audit->arena = NULL;
        audit->arena_size = 0;
    }

#if (NGX_THREADS)
    /* a flush keeps one for the next: there is none (no flush uses it) */
    if (audit->kept_fd != NGX_INVALID_FILE) {
        (void) close(audit->kept_fd);
        audit->kept_fd = NGX_INVALID_FILE;
    }
#endif

    ngx_http_taurus_guard_audit_keep_prev(audit, NGX_INVALID_FILE);
}


/*
 * Writes every queued record with one writev() under the locks: the
 * records of a turn cost one lock, one look at the file and one write
 * between them.  All or none: a failed or partial write is cut back and
 * fails every record of it.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_append(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    off_t                                 end;
    size_t                                total, chunk;
    ssize_t                               n;
    ngx_fd_t                              fd, rfd;
    ngx_err_t                             err, lerr;
    ngx_int_t                             rc, lrc, sync;
    ngx_atomic_uint_t                     from;
    ngx_uint_t                            i, niov, nrec, bad, writes, waiting,
                                          flush;
    tg_out_t                              o;
    ngx_queue_t                          *q;
    const char                           *what;
    ngx_file_info_t                       fi, pfi;
    ngx_http_taurus_guard_audit_sh_t     *sh;
    ngx_http_taurus_guard_main_conf_t    *mcf;
    ngx_http_taurus_guard_audit_entry_t  *e;
    tg_audit_record_t                     rec;
    struct iovec                          iov[NGX_HTTP_TG_AUDIT_IOVS];
    ngx_http_taurus_guard_audit_entry_t  *in[NGX_HTTP_TG_AUDIT_IOVS];
    u_char                                md[TG_SHA256_LEN];
    char                                  last[TG_SHA256_HEX_LEN + 1];
    char                                  good[TG_SHA256_HEX_LEN + 1];
    u_char                                proc[sizeof("/proc/self/fd/")
                                               + NGX_INT_T_LEN];

    if (ngx_queue_empty(&audit->unwritten)) {
        return NGX_OK;
    }

    sh = audit->sh;
    rfd = NGX_INVALID_FILE;
    what = NULL;
    err = 0;

    ngx_shmtx_lock(&audit->shpool->mutex);

    lrc = ngx_http_taurus_guard_audit_lock(audit->file->fd, F_WRLCK);
    lerr = ngx_errno;

    if (ngx_fd_info(audit->file->fd, &fi) == NGX_FILE_ERROR) {
        /* a file removed under the gateway would swallow records */
        err = ngx_errno;
        what = ngx_fd_info_n;
        goto failed;
    }

    /*
     * Another worker may have reopened the file already: follow the name
     * under the lock, so the switch to a new file is one point in the
     * chain for every worker.  The old file is unlocked first, then its
     * descriptor kept while the chain's last record is in it (the first
     * record of the new file links to it), or closed
     * (ngx_http_taurus_guard_audit_leave()).
     */

    if (ngx_is_file(&fi)
        && ngx_file_info(audit->file->name.data, &pfi) != NGX_FILE_ERROR
        && (ngx_file_uniq(&pfi) != ngx_file_uniq(&fi)
            || pfi.st_dev != fi.st_dev))
    {
        fd = ngx_http_taurus_guard_audit_open(audit);

        if (fd != NGX_INVALID_FILE) {
            if (lrc == NGX_OK) {
                (void) ngx_http_taurus_guard_audit_lock(audit->file->fd,
                                                        F_UNLCK);
            }

            ngx_http_taurus_guard_audit_leave(audit, audit->file->fd);
            audit->file->fd = fd;

            lrc = ngx_http_taurus_guard_audit_lock(fd, F_WRLCK);
            lerr = ngx_errno;

            if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
                err = ngx_errno;
                what = ngx_fd_info_n;
                goto failed;
            }

        } else {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, ngx_errno,
                           "taurus_guard: cannot follow audit log \"%V\"",
                           &audit->file->name);
        }
    }

    fd = audit->file->fd;
    end = -1;

    if (ngx_is_file(&fi)) {

        if (lrc != NGX_OK) {
            err = lerr;
            what = "fcntl(F_SETLKW)";
            goto failed;
        }

        if (fi.st_nlink == 0) {
            what = "the file was removed, write()";
            goto failed;
        }

        end = ngx_file_size(&fi);

        if (end == 0 && audit->prev_fd != NGX_INVALID_FILE
            && (ngx_file_uniq(&fi) != sh->ino || fi.st_dev != sh->dev))
        {
            if (ngx_http_taurus_guard_audit_prev_tail(audit, log) != NGX_OK) {
                what = "reading the previous file back";
                goto failed;
            }
        }

        /*
         * Not the file and size the last record left: someone else wrote
         * last (another master's worker, another spelling of the path),
         * or a worker died between its write() and the update below.
         * The chain goes on from the file's real last line.  An empty
         * file is a new one after a rotation: the chain goes on from the
         * last record of the previous file.
         */

        if (end > 0
            && (end != sh->size || ngx_file_uniq(&fi) != sh->ino
                || fi.st_dev != sh->dev))
        {
            ngx_sprintf(proc, "/proc/self/fd/%d%Z", fd);

            rfd = ngx_open_file(proc, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

            if (rfd == NGX_INVALID_FILE) {
                err = ngx_errno;
                what = "reading it back, open()";
                goto failed;
            }

            rc = ngx_http_taurus_guard_audit_tail(audit, rfd, fd, &end,
                                                  sh->last, log);
            if (rc == NGX_ERROR) {
                goto failed;
            }

            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "taurus_guard: audit log \"%V\" was written by"
                          " another process, the chain goes on from its"
                          " last record", &audit->file->name);
        }
    }

#if (NGX_THREADS)
    audit->written_ino = ngx_file_uniq(&fi);
    audit->written_dev = fi.st_dev;
#endif

    /*
     * Each record links to the one before it: the chain goes on in
     * "last", and into the zone ("good") as each writev() succeeds.  A
     * record that cannot be encoded (a bound that was wrong, a bug, or a
     * hash that failed) is refused alone: the chain skips it.
     */

    ngx_memcpy(last, sh->last, sizeof(last));
    ngx_memcpy(good, last, sizeof(last));

    total = 0;
    nrec = 0;
    bad = 0;
    niov = 0;
    chunk = 0;
    writes = 0;
    q = ngx_queue_head(&audit->unwritten);

    while (q != ngx_queue_sentinel(&audit->unwritten)) {
        e = ngx_queue_data(q, ngx_http_taurus_guard_audit_entry_t, queue);
        q = ngx_queue_next(q);

        tg_audit_write_link(&e->out, last);
        e->hashed = 1;

        if (tg_out_sha256(&e->out, md) != TG_OK || e->out.overflow
            || e->out.pos != e->out.len)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "taurus_guard: cannot encode an audit record of"
                          " %uz bytes, refused", e->out.len);
            ngx_http_taurus_guard_audit_failed(audit, fd, 0);
            bad++;

        } else {
            tg_sha256_hex_of(md, last);

            if (e->stand_in != NULL) {
                /* its link is the one the next record takes for "prev" */
                tg_out_init(&o, e->stand_in + e->stand_in_len,
                            TG_AUDIT_STAND_IN_MAX - e->stand_in_len);
                tg_audit_write_stand_in_link(&o, last);
                e->stand_in_len = o.overflow ? 0 : e->stand_in_len + o.pos;
                e->stand_in = o.overflow ? NULL : e->stand_in;
            }

            iov[niov].iov_base = e->out.buf;
            iov[niov].iov_len = e->out.pos;
            in[niov] = e;
            niov++;
            chunk += e->out.pos;
        }

        if (niov == 0
            || (niov < NGX_HTTP_TG_AUDIT_IOVS
                && q != ngx_queue_sentinel(&audit->unwritten)))
        {
            continue;
        }

        /* one writev() on an O_APPEND descriptor: records never interleave */

        n = writev(fd, iov, (int) niov);
        err = ngx_errno;

        if (n != (ssize_t) chunk) {
            what = (n == -1) ? "write()" : "partial write()";
            err = (n == -1) ? err : 0;

            /* none of it is left: the next record would link past it */

            if (n > 0 && end != -1 && ftruncate(fd, end + total) == -1) {
                /* the next record finds the torn line and cuts it then */
                ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                              "taurus_guard: ftruncate(\"%V\") failed",
                              &audit->file->name);
            }

            break;
        }

        for (i = 0; i < niov; i++) {
            in[i]->written = 1;
        }

        ngx_memcpy(good, last, sizeof(last));
        total += chunk;
        nrec += niov;
        niov = 0;
        chunk = 0;
        writes++;
    }

    ngx_memcpy(sh->last, good, sizeof(good));

    sh->dev = fi.st_dev;
    sh->ino = ngx_file_uniq(&fi);
    sh->size = (end == -1) ? -1 : end + (off_t) total;
    sh->records += nrec;

    /* where these records end among all bytes written: what must be flushed */

    from = ngx_atomic_fetch_add(&sh->written, total) + 1;

#if (NGX_THREADS)
    audit->written_upto = from - 1 + total;
#endif

    if (lrc == NGX_OK) {
        (void) ngx_http_taurus_guard_audit_lock(fd, F_UNLCK);
    }

    ngx_shmtx_unlock(&audit->shpool->mutex);

    /* only now: closing a descriptor of the file drops the lock */

    if (rfd != NGX_INVALID_FILE) {
        (void) ngx_close_file(rfd);
    }

    if (nrec && audit->prev_fd != NGX_INVALID_FILE) {
        /* the chain is in this file now */
        ngx_http_taurus_guard_audit_keep_prev(audit, NGX_INVALID_FILE);
    }

    if (what != NULL) {
        ngx_http_taurus_guard_audit_error(log, audit, err, what);
    }

    if (writes) {
        ngx_http_taurus_guard_metrics_audit_written(nrec, writes);

        /* the file works again, as far as writing goes */
        sh->write_failing = 0;
    }

    if (end != -1 && total) {
        ngx_http_taurus_guard_audit_drop_behind(audit, fd, end,
                                                end + (off_t) total, log);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "taurus_guard: %ui audit records, %uz bytes, in %ui"
                   " writes", nrec, total, writes);

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_taurus_guard_module);
    ngx_memzero(&rec, sizeof(tg_audit_record_t));
    waiting = 0;

    for (q = ngx_queue_head(&audit->unwritten);
         q != ngx_queue_sentinel(&audit->unwritten);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_taurus_guard_audit_entry_t, queue);

        if (!e->written) {
            continue;
        }

        /* the file first, the collector after: the file is the truth */

        if (mcf != NULL && mcf->syslog != NULL) {
            rec.time_sec = e->time_sec;
            rec.time_msec = e->time_msec;
            ngx_http_taurus_guard_syslog_send(mcf->syslog, &rec, e->out.buf,
                                              e->out.pos - 1, e->stand_in,
                                              e->stand_in_len);
        }

        if (e->ctx != NULL) {
            waiting++;
        }
    }

    flush = (waiting && audit->fsync);
    sync = NGX_OK;

    /*
     * Without a thread pool, or without a descriptor for the thread, the
     * turn's records are flushed here, in the event loop, once.  A failed
     * flush fails the requests that wait for it, not what this returns:
     * their records are written.
     */

#if (NGX_THREADS)
    if (flush
        && (audit->thread_pool == NULL
            || ngx_http_taurus_guard_audit_pending_fd(audit, log) != NGX_OK))
#else
    if (flush)
#endif
    {
        sync = ngx_http_taurus_guard_audit_sync_here(audit, waiting, from,
                                                     log);
        flush = 0;

        /*
         * The flush held the event loop for as long as it took (a slow
         * disk, another worker's flush), and nginx's clock stood still
         * meanwhile: the requests that go on now (the age of their
         * signature, the life left to their token) count from the time
         * it is now.  A flush in the thread pool ends in a later turn,
         * on a clock nginx has read again.
         */

        ngx_time_update();
    }

#if (NGX_THREADS)
    if (flush && audit->pending_from == 0) {
        audit->pending_from = from;
    }
#endif

    ngx_http_taurus_guard_audit_written(audit, sync != NGX_OK, flush);

    return (what == NULL && bad == 0) ? NGX_OK : NGX_ERROR;

failed:

    if (lrc == NGX_OK) {
        (void) ngx_http_taurus_guard_audit_lock(audit->file->fd, F_UNLCK);
    }

    ngx_shmtx_unlock(&audit->shpool->mutex);

    if (rfd != NGX_INVALID_FILE) {
        (void) ngx_close_file(rfd);
    }

    if (what != NULL) {
        ngx_http_taurus_guard_audit_error(log, audit, err, what);
    }

    ngx_http_taurus_guard_audit_written(audit, 0, 0);

    return NGX_ERROR;
}


/*
 * The queue is spent: a state the hash left open is wiped, the requests
 * its records blocked go to "written" for the event to resume (refused
 * if their record is not in the file or its flush here failed), or to
 * "pending" for the next group flush, and the arena is free for the next
 * turn.
 *
 * A request waits in "pending" from the moment its descriptor is in
 * pending_fds: a flush started before the event runs (a thread's flush
 * ending in the same turn) takes both, or neither.  Were the request
 * still in "written" then, the flush would take its descriptor without
 * it, and a later flush with no descriptor would wake it as flushed.
 */

static void
ngx_http_taurus_guard_audit_written(ngx_http_taurus_guard_audit_t *audit,
    ngx_uint_t unflushed, ngx_uint_t flush)
{
    ngx_queue_t                          *q;
    ngx_http_taurus_guard_ctx_t          *ctx;
    ngx_http_taurus_guard_audit_entry_t  *e;

    for (q = ngx_queue_head(&audit->unwritten);
         q != ngx_queue_sentinel(&audit->unwritten);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_taurus_guard_audit_entry_t, queue);

        if (!e->hashed) {
            tg_sha256_wipe(&e->sha);
        }

        ctx = e->ctx;

        if (ctx == NULL) {
            continue;
        }

        ctx->entry = NULL;
        ctx->sync_failed = (!e->written || unflushed);

#if (NGX_THREADS)
        if (e->written && flush) {

            /*
             * The timer bounds the wait, and keeps a worker that is
             * exiting (a reload, a quit) alive until the request is
             * answered: nginx leaves when no timer is left, and a
             * blocked request has none of its own.
             */

            ngx_queue_insert_tail(&audit->pending, &ctx->queue);
            ngx_add_timer(&ctx->flush_wait, audit->timeout);

            continue;
        }
#endif

        ngx_queue_insert_tail(&audit->written, &ctx->queue);
    }

    ngx_queue_init(&audit->unwritten);
    audit->arena_used = 0;
}


/*
 * The requests whose records were written go on, or are refused, and the
 * group flush starts for those waiting for it.  A request resumed here
 * may queue another record: the event is posted again for it.
 */

static void
ngx_http_taurus_guard_audit_deliver(ngx_http_taurus_guard_audit_t *audit)
{
    ngx_queue_t                  *q;
    ngx_http_taurus_guard_ctx_t  *ctx;

    while (!ngx_queue_empty(&audit->written)) {
        q = ngx_queue_head(&audit->written);
        ngx_queue_remove(q);
        q->next = NULL;

        ctx = ngx_queue_data(q, ngx_http_taurus_guard_ctx_t, queue);

        ngx_http_taurus_guard_audit_resume(ctx->request, ctx,
                                           ctx->sync_failed, NULL);
    }

#if (NGX_THREADS)
    if (!audit->busy && !ngx_queue_empty(&audit->pending)) {
        ngx_http_taurus_guard_audit_start_sync(audit);
    }
#endif
}


/* a worker that exits writes what its last turn left */

void
ngx_http_taurus_guard_audit_exit(ngx_cycle_t *cycle)
{
    ngx_uint_t                          i;
    ngx_http_taurus_guard_audit_t     **a;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_taurus_guard_module);
    if (mcf == NULL) {
        return;
    }

    a = mcf->audits.elts;

    for (i = 0; i < mcf->audits.nelts; i++) {
        (void) ngx_http_taurus_guard_audit_append(a[i], cycle->log);
    }
}


/*
 * The open file's flush callback (file->flush), not a flush of records
 * (that is ngx_http_taurus_guard_audit_sync.c): nginx calls it when it
 * is about to reopen the file (ngx_reopen_files()).  The turn's queued
 * records go to the file they were meant for, the worker keeps a
 * descriptor of it while the chain's last record is in it (the first
 * record of the next file links to it), and once nginx has reopened
 * it, the worker looks whether its reopen worked.  The next loop of the
 * worker runs that check at once, without waiting for an event.
 *
 * The master keeps the file the chain is in as well: a worker it starts
 * later (in place of one that died, or at a reload, which hands it on)
 * may write the first record of the new file, and must read the last
 * one of the old file back when another master's workers, another
 * spelling of the path or a killed worker wrote it.
 */

void
ngx_http_taurus_guard_audit_flush(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_fd_t                            fd;
    ngx_uint_t                          i;
    ngx_http_taurus_guard_audit_t     **a;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (ngx_process == NGX_PROCESS_MASTER) {
        mcf = ngx_http_cycle_get_module_main_conf(
                                              (ngx_cycle_t *) ngx_cycle,
                                              ngx_http_taurus_guard_module);
        if (mcf == NULL) {
            return;
        }

        a = mcf->audits.elts;

        for (i = 0; i < mcf->audits.nelts; i++) {
            if (a[i]->file == file && a[i]->sh != NULL) {
                fd = ngx_http_taurus_guard_audit_dup(file->fd);

                if (fd != NGX_INVALID_FILE) {
                    ngx_http_taurus_guard_audit_leave(a[i], fd);
                }
            }
        }

        return;
    }

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_exiting || ngx_terminate)
    {
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf((ngx_cycle_t *) ngx_cycle,
                                              ngx_http_taurus_guard_module);
    if (mcf == NULL) {
        return;
    }

    a = mcf->audits.elts;

    for (i = 0; i < mcf->audits.nelts; i++) {
        if (a[i]->file != file) {
            continue;
        }

        /* what the turn queued goes to the file it was meant for */
        (void) ngx_http_taurus_guard_audit_append(a[i], log);

        /* the file the chain is in, for the first record of the next */

        fd = ngx_http_taurus_guard_audit_dup(file->fd);

        if (fd != NGX_INVALID_FILE) {
            ngx_http_taurus_guard_audit_leave(a[i], fd);
        }

        if (a[i]->reopened.posted) {
            continue;
        }

        a[i]->reopened.handler = ngx_http_taurus_guard_audit_reopened;
        a[i]->reopened.data = a[i];
        a[i]->reopened.log = ngx_cycle->log;

        ngx_post_event(&a[i]->reopened, &ngx_posted_next_events);
    }
}


/*
 * A reload, in the master: the new configuration's workers get the file
 * the chain is in when it is not the one they write (rotated since the
 * last record), as a reopen gives it to a worker, so that the first
 * record of the new file links to the last one of the old file, whoever
 * wrote it.  The one the old configuration kept is handed on as a copy,
 * or not at all when not needed: the old configuration keeps its own,
 * as a reload that fails late (a listen in use, after the zones) goes
 * on with it and starts workers from it; a reload that works frees it.
 */

void
ngx_http_taurus_guard_audit_reloaded(ngx_http_taurus_guard_audit_t *audit,
    ngx_http_taurus_guard_audit_t *oaudit)
{
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = (oaudit->prev_fd == NGX_INVALID_FILE)
         ? NGX_INVALID_FILE : ngx_http_taurus_guard_audit_dup(oaudit->prev_fd);

    if (ngx_fd_info(audit->file->fd, &fi) != NGX_FILE_ERROR
        && ngx_file_uniq(&fi) == audit->sh->ino
        && fi.st_dev == audit->sh->dev)
    {
        if (fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(fd);
        }

        return;
    }

    /* each is kept only if the chain is in its file */

    if (fd != NGX_INVALID_FILE) {
        ngx_http_taurus_guard_audit_leave(audit, fd);
    }

    if (audit->prev_fd == NGX_INVALID_FILE) {
        fd = ngx_http_taurus_guard_audit_dup(oaudit->file->fd);

        if (fd != NGX_INVALID_FILE) {
            ngx_http_taurus_guard_audit_leave(audit, fd);
        }
    }
}


/*
 * After "nginx -s reopen": the name must point at the file the worker
 * writes.  If the worker could not reopen it (as the worker user: a
 * directory it cannot enter, a file it cannot write), records go on to
 * the rotated file, which nginx's own [emerg] does not say.
 */

static void
ngx_http_taurus_guard_audit_reopened(ngx_event_t *ev)
{
    ngx_http_taurus_guard_audit_t  *audit = ev->data;

    ngx_fd_t         fd;
    ngx_err_t        err;
    ngx_file_info_t  fi, pfi;

    if (ngx_fd_info(audit->file->fd, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi))
    {
        return;
    }

    if (ngx_file_info(audit->file->name.data, &pfi) != NGX_FILE_ERROR) {

        if (ngx_file_uniq(&pfi) == ngx_file_uniq(&fi)
            && pfi.st_dev == fi.st_dev)
        {
            return;
        }

        fd = ngx_http_taurus_guard_audit_open(audit);

        if (fd != NGX_INVALID_FILE) {
            /* no lock is held here */
            ngx_http_taurus_guard_audit_leave(audit, audit->file->fd);
            audit->file->fd = fd;
            return;
        }
    }

    err = ngx_errno;

    ngx_log_error(NGX_LOG_ALERT, ev->log, err,
                  "taurus_guard: audit log \"%V\" could not be reopened,"
                  " records go on to the file it named before",
                  &audit->file->name);
}


/*
 * The file the name leads to now, for a worker that follows it: only a
 * regular file.  O_NONBLOCK: a FIFO put at the path would otherwise hold
 * the worker in open() until a reader came, with the zone's mutex and
 * so every worker's records, or the worker's whole event loop.
 * O_CLOEXEC: it takes the place of nginx's descriptor, closed on exec.
 */

static ngx_fd_t
ngx_http_taurus_guard_audit_open(ngx_http_taurus_guard_audit_t *audit)
{
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(audit->file->name.data,
                       NGX_FILE_APPEND|NGX_FILE_NONBLOCK|O_CLOEXEC,
                       NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        return NGX_INVALID_FILE;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        (void) ngx_close_file(fd);
        ngx_set_errno(NGX_EINVAL);
        return NGX_INVALID_FILE;
    }

    return fd;
}


/*
 * The file is written once and never read back by nginx: what lies far
 * enough behind its end is dropped from the page cache, as PostgreSQL
 * does with its WAL, so that an audit log of gigabytes does not push
 * everything else out of memory.  The last DROP_KEEP bytes stay, for the
 * tail read at a start or after someone else wrote, and for a follower
 * (rsyslog's imfile, tail -F) reading just behind the writer.
 *
 * Each time an append crosses a DROP_STEP boundary, the four steps
 * before the kept end (more if it crossed several) are handed to
 * POSIX_FADV_DONTNEED, which drops pages that are on disk and starts
 * writing the others (with fsync=off nothing else would for up to half
 * a minute): a later crossing drops those.  Only clean pages are ever
 * dropped, so no record can be lost here; a failure (a file system that
 * does not do it) changes nothing but the memory used.
 *
 * The call runs in the event loop, once a megabyte, and takes as long
 * as freeing a megabyte of pages does: 0.2 to 0.4 ms measured under
 * load (about a quarter of a microsecond a kilobyte, a stall of the
 * worker as short as an access log's buffer write).  What it buys is
 * more: in a virtual machine a page the guest has never touched (or
 * gave back to the host) costs a fault in the host the first time the
 * page cache writes to it, and writing into recycled pages is several
 * times cheaper (see "Performance" in the README).
 */

static void
ngx_http_taurus_guard_audit_drop_behind(ngx_http_taurus_guard_audit_t *audit,
    ngx_fd_t fd, off_t from, off_t to, ngx_log_t *log)
{
#if (NGX_HAVE_POSIX_FADVISE)
    off_t  edge, start;

    if (from / NGX_HTTP_TG_AUDIT_DROP_STEP == to / NGX_HTTP_TG_AUDIT_DROP_STEP)
    {
        return;
    }

    edge = to / NGX_HTTP_TG_AUDIT_DROP_STEP * NGX_HTTP_TG_AUDIT_DROP_STEP
           - NGX_HTTP_TG_AUDIT_DROP_KEEP;

    if (edge <= 0) {
        return;
    }

    /* four steps for one crossing, more for an append of megabytes */

    start = from / NGX_HTTP_TG_AUDIT_DROP_STEP * NGX_HTTP_TG_AUDIT_DROP_STEP
            - NGX_HTTP_TG_AUDIT_DROP_KEEP - 3 * NGX_HTTP_TG_AUDIT_DROP_STEP;

    if (start < 0) {
        start = 0;
    }

    /* posix_fadvise() returns its error, it does not set errno */

    if (posix_fadvise(fd, start, edge - start, POSIX_FADV_DONTNEED) != 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "taurus_guard: posix_fadvise(\"%V\") failed",
                       &audit->file->name);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "taurus_guard: audit log \"%V\" dropped from the cache"
                   " up to %O, end %O", &audit->file->name, edge, to);
#endif
}


/*
 * Something done to the file fd failed, kept in the file's zone with the
 * file it was of.  flush == 1 marks a failed flush (not counted: the
 * flush's error is logged, and counted, by audit_error(), which also
 * comes here with flush == 0); flush == 0 counts a failure and marks a
 * failed write, which the next write that works clears.  Only a flush
 * that works clears a failed flush: a record written since (the error
 * record of a refused batch) says nothing of the flush.
 */

void
ngx_http_taurus_guard_audit_failed(ngx_http_taurus_guard_audit_t *audit,
    ngx_fd_t fd, ngx_uint_t flush)
{
    ngx_atomic_uint_t                  dev, ino;
    ngx_file_info_t                    fi;
    ngx_http_taurus_guard_audit_sh_t  *sh;

    sh = audit->sh;
    dev = 0;
    ino = 0;

    if (fd != NGX_INVALID_FILE && ngx_fd_info(fd, &fi) != NGX_FILE_ERROR) {
        dev = (ngx_atomic_uint_t) fi.st_dev;
        ino = (ngx_atomic_uint_t) fi.st_ino;
    }

    if (flush) {
        sh->flush_failing_dev = dev;
        sh->flush_failing_ino = ino;
        sh->flush_failing = ngx_time();
        return;
    }

    ngx_http_taurus_guard_metrics_audit_failed();

    sh->write_failing_dev = dev;
    sh->write_failing_ino = ino;
    sh->write_failing = ngx_time();
}


/*
 * Whether the last write or flush of the audit file failed, on the file
 * fi (or on one nobody knows), or on any file when fi is NULL.
 */

ngx_uint_t
ngx_http_taurus_guard_audit_failing(ngx_http_taurus_guard_audit_t *audit,
    ngx_file_info_t *fi)
{
    ngx_http_taurus_guard_audit_sh_t  *sh;

    sh = audit->sh;

    if (sh == NULL) {
        return 0;
    }

    if (sh->flush_failing
        && (fi == NULL || sh->flush_failing_ino == 0
            || (sh->flush_failing_ino == (ngx_atomic_uint_t) fi->st_ino
                && sh->flush_failing_dev == (ngx_atomic_uint_t) fi->st_dev)))
    {
        return 1;
    }

    if (sh->write_failing
        && (fi == NULL || sh->write_failing_ino == 0
            || (sh->write_failing_ino == (ngx_atomic_uint_t) fi->st_ino
                && sh->write_failing_dev == (ngx_atomic_uint_t) fi->st_dev)))
    {
        return 1;
    }

    return 0;
}


void
ngx_http_taurus_guard_audit_error(ngx_log_t *log,
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err, const char *what)
{
    ngx_http_taurus_guard_audit_failed(audit, audit->file->fd, 0);

    if (!ngx_http_taurus_guard_pace(&audit->error_pace)) {
        return;
    }

    ngx_log_error(NGX_LOG_ALERT, log, err,
                  "taurus_guard: %s to audit log \"%V\" failed,"
                  " requests are refused until it works",
                  what, &audit->file->name);
}

