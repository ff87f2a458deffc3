
/*
 * taurus-guard: the audit file.
 *
 * Opened with ngx_conf_open_file() so that "nginx -s reopen" rotates it.
 * Each record is sized first and written with one write() under a lock
 * in shared memory, which keeps the hash chain (every record carries the
 * SHA-256 of the one before it, across workers, reopens and reloads) and
 * lets a partial write be cut back so no torn line is ever left for the
 * next record to run into.
 *
 * A durable record is then flushed with fdatasync() before the request
 * may go on.  With nginx's thread pools the flush runs off the event
 * loop, and records written while a flush is in flight share the next
 * one (group commit).  The flush syncs its own dup() of the descriptor,
 * so "nginx -s reopen" cannot pull the file out from under it.
 */


#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_AUDIT_ZONE_SIZE  (64 * 1024)
#define NGX_HTTP_TG_AUDIT_TAIL_MAX   (1024 * 1024)

#define NGX_HTTP_TG_ZERO_HASH                                                 \
    "0000000000000000000000000000000000000000000000000000000000000000"


static ngx_int_t ngx_http_taurus_guard_audit_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_http_taurus_guard_audit_chain_start(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static ngx_int_t ngx_http_taurus_guard_audit_sync(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit);
static ngx_msec_t ngx_http_taurus_guard_usec(void);
static void ngx_http_taurus_guard_audit_error(ngx_log_t *log,
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err, const char *what);

#if (NGX_THREADS)
static ngx_int_t ngx_http_taurus_guard_audit_pending_fd(
    ngx_http_taurus_guard_audit_t *audit, ngx_log_t *log);
static void ngx_http_taurus_guard_audit_start_sync(
    ngx_http_taurus_guard_audit_t *audit);
static void ngx_http_taurus_guard_audit_sync_thread(void *data,
    ngx_log_t *log);
static void ngx_http_taurus_guard_audit_sync_done(ngx_event_t *ev);
static void ngx_http_taurus_guard_audit_wake(
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err);
#endif


char *
ngx_http_taurus_guard_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    ngx_str_t                          *value, name, pool;
    ngx_uint_t                          i;
    ngx_flag_t                          fsync;
    ngx_open_file_t                    *file;
    ngx_http_taurus_guard_audit_t      *audit, **a;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (lcf->audit != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters after \"off\"";
        }

        lcf->audit = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes a file path or \"off\"";
    }

    fsync = 1;
    ngx_str_set(&pool, "default");

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "fsync=on") == 0) {
            fsync = 1;

        } else if (ngx_strcmp(value[i].data, "fsync=off") == 0) {
            fsync = 0;

        } else if (ngx_strncmp(value[i].data, "thread_pool=", 12) == 0
                   && value[i].len > 12)
        {
            pool.data = value[i].data + 12;
            pool.len = value[i].len - 12;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    file = ngx_conf_open_file(cf->cycle, &value[1]);
    if (file == NULL) {
        return NGX_CONF_ERROR;
    }

    /* one state per file, however many locations write to it */

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    a = mcf->audits.elts;

    for (i = 0; i < mcf->audits.nelts; i++) {
        if (a[i]->file != file) {
            continue;
        }

        if (a[i]->fsync != fsync) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "audit log \"%V\" is used with different"
                               " \"fsync\" parameters", &file->name);
            return NGX_CONF_ERROR;
        }

        lcf->audit = a[i];
        return NGX_CONF_OK;
    }

    audit = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_audit_t));
    if (audit == NULL) {
        return NGX_CONF_ERROR;
    }

    audit->file = file;
    audit->fsync = fsync;

#if (NGX_THREADS)
    if (fsync && ngx_strcmp(pool.data, "off") != 0) {
        audit->thread_pool = ngx_thread_pool_add(cf, &pool);
        if (audit->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_queue_init(&audit->pending);
    ngx_queue_init(&audit->syncing);
#endif

    name.len = sizeof("taurus_guard_audit:") - 1 + file->name.len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(name.data, "taurus_guard_audit:%V", &file->name);

    audit->zone = ngx_shared_memory_add(cf, &name,
                                        NGX_HTTP_TG_AUDIT_ZONE_SIZE,
                                        &ngx_http_taurus_guard_module);
    if (audit->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    audit->zone->init = ngx_http_taurus_guard_audit_init_zone;
    audit->zone->data = audit;

    a = ngx_array_push(&mcf->audits);
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    *a = audit;
    lcf->audit = audit;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_taurus_guard_audit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_taurus_guard_audit_t  *oaudit = data;

    ngx_http_taurus_guard_audit_t  *audit;

    audit = shm_zone->data;

    if (oaudit != NULL) {
        /* a reload: the chain goes on where the old cycle left it */
        audit->sh = oaudit->sh;
        audit->shpool = oaudit->shpool;
        return NGX_OK;
    }

    audit->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        audit->sh = audit->shpool->data;
        return NGX_OK;
    }

    audit->sh = ngx_slab_alloc(audit->shpool,
                               sizeof(ngx_http_taurus_guard_audit_sh_t));
    if (audit->sh == NULL) {
        return NGX_ERROR;
    }

    audit->shpool->data = audit->sh;

    return ngx_http_taurus_guard_audit_chain_start(audit, shm_zone->shm.log);
}


/*
 * A start: the chain goes on from the last record of the file, which
 * records where the previous run ended.  A torn last line (a crash in
 * the middle of a write) is cut off, so the next record cannot run into
 * it; that is logged.
 */

static ngx_int_t
ngx_http_taurus_guard_audit_chain_start(ngx_http_taurus_guard_audit_t *audit,
    ngx_log_t *log)
{
    u_char           *buf, *p, *last;
    off_t             size, from;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_file_info_t   fi;

    ngx_memcpy(audit->sh->last, NGX_HTTP_TG_ZERO_HASH, TG_SHA256_HEX_LEN + 1);

    fd = ngx_open_file(audit->file->name.data, NGX_FILE_RDWR, NGX_FILE_OPEN,
                       0);

    if (fd == NGX_INVALID_FILE) {
        /* not there yet, or a device such as /dev/stderr: a new chain */
        return NGX_OK;
    }

    rc = NGX_OK;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)
        || ngx_file_size(&fi) == 0)
    {
        goto done;
    }

    size = ngx_file_size(&fi);
    from = size > NGX_HTTP_TG_AUDIT_TAIL_MAX
           ? size - NGX_HTTP_TG_AUDIT_TAIL_MAX : 0;

    buf = ngx_alloc((size_t) (size - from), log);
    if (buf == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    n = pread(fd, buf, (size_t) (size - from), from);

    if (n != (ssize_t) (size - from)) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "taurus_guard: cannot read the end of audit log"
                      " \"%V\"", &audit->file->name);
        rc = NGX_ERROR;
        goto done;
    }

    last = buf + n;

    if (last[-1] != '\n') {
        p = last;

        while (p > buf && p[-1] != '\n') {
            p--;
        }

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "taurus_guard: audit log \"%V\" ends with a torn"
                      " record of %uz bytes, cut off",
                      &audit->file->name, (size_t) (last - p));

        if (ftruncate(fd, from + (p - buf)) == -1) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "taurus_guard: ftruncate(\"%V\") failed",
                          &audit->file->name);
            rc = NGX_ERROR;
            goto done;
        }

        last = p;
    }

    if (last == buf) {
        goto done;
    }

    p = last - 1;

    while (p > buf && p[-1] != '\n') {
        p--;
    }

    if (tg_sha256_hex(p, last - p, (char *) audit->sh->last) != TG_OK) {
        rc = NGX_ERROR;
    }

done:

    if (buf != NULL) {
        ngx_free(buf);
    }

    (void) ngx_close_file(fd);

    return rc;
}


/*
 * Writes one record.  NGX_OK: written (and flushed, if durable and the
 * flush ran here); NGX_AGAIN: written, the request is blocked until the
 * group flush, then its write_event_handler runs with ctx->sync_failed
 * set or not; NGX_ERROR: not written, or the flush failed.
 */

ngx_int_t
ngx_http_taurus_guard_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit, tg_audit_record_t *rec,
    ngx_flag_t durable)
{
    u_char                             *buf;
    size_t                              len;
    off_t                               end;
    ssize_t                             n;
    ngx_fd_t                            fd;
    ngx_err_t                           err;
    ngx_file_info_t                     fi, pfi;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    /* the link is always 64 hex digits: size the record first */

    rec->prev = NGX_HTTP_TG_ZERO_HASH;
    len = tg_audit_encode(rec, NULL, 0);

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&audit->shpool->mutex);

    rec->prev = (const char *) audit->sh->last;

    if (tg_audit_encode(rec, buf, len) != len) {
        ngx_shmtx_unlock(&audit->shpool->mutex);
        return NGX_ERROR;
    }

    /*
     * A file removed under the gateway would swallow records nobody can
     * read: refuse, until "nginx -s reopen" creates it again.
     */

    if (ngx_fd_info(audit->file->fd, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_shmtx_unlock(&audit->shpool->mutex);
        ngx_http_taurus_guard_audit_error(r->connection->log, audit, err,
                                          ngx_fd_info_n);
        return NGX_ERROR;
    }

    /*
     * Another worker may have reopened the file already: follow the name
     * under the lock, so the switch to a new file is one point in the
     * chain for every worker.
     */

    if (ngx_is_file(&fi)
        && ngx_file_info(audit->file->name.data, &pfi) != NGX_FILE_ERROR
        && (pfi.st_ino != fi.st_ino || pfi.st_dev != fi.st_dev))
    {
        fd = ngx_open_file(audit->file->name.data, NGX_FILE_APPEND,
                           NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);

        if (fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(audit->file->fd);
            audit->file->fd = fd;
            fi = pfi;
        }
    }

    if (ngx_is_file(&fi) && fi.st_nlink == 0) {
        ngx_shmtx_unlock(&audit->shpool->mutex);
        ngx_http_taurus_guard_audit_error(r->connection->log, audit, 0,
                                          "the file was removed, write()");
        return NGX_ERROR;
    }

    end = ngx_is_file(&fi) ? ngx_file_size(&fi) : -1;

#if (NGX_THREADS)
    audit->written_ino = ngx_file_uniq(&fi);
    audit->written_dev = fi.st_dev;
#endif

    /* one write() on an O_APPEND descriptor: records never interleave */

    n = ngx_write_fd(audit->file->fd, buf, len);
    err = ngx_errno;

    if (n != (ssize_t) len) {
        if (n > 0 && end != -1) {
            /* no torn line for the next record to run into */
            (void) ftruncate(audit->file->fd, end);
        }

        ngx_shmtx_unlock(&audit->shpool->mutex);

        ngx_http_taurus_guard_audit_error(r->connection->log, audit,
                                          n == -1 ? err : 0,
                                          n == -1 ? "write()"
                                                  : "partial write()");
        return NGX_ERROR;
    }

    if (tg_sha256_hex(buf, len, (char *) audit->sh->last) != TG_OK) {
        ngx_shmtx_unlock(&audit->shpool->mutex);
        return NGX_ERROR;
    }

    audit->sh->records++;

    ngx_shmtx_unlock(&audit->shpool->mutex);

    ngx_http_taurus_guard_metrics_audit_written();

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: audit record %s %s, %uz bytes",
                   rec->id, tg_decision_name(rec->decision), len);

    /* the file first, the collector after: the file is the truth */

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    if (mcf->syslog != NULL) {
        ngx_http_taurus_guard_syslog_send(mcf->syslog, rec, buf, len - 1);
    }

    if (!durable || !audit->fsync) {
        return NGX_OK;
    }

    return ngx_http_taurus_guard_audit_sync(r, audit);
}


static ngx_int_t
ngx_http_taurus_guard_audit_sync(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit)
{
    ngx_msec_t  start;

#if (NGX_THREADS)
    ngx_http_taurus_guard_ctx_t  *ctx;

    if (audit->thread_pool != NULL) {

        if (ngx_http_taurus_guard_audit_pending_fd(audit, r->connection->log)
            != NGX_OK)
        {
            goto flush;
        }

        ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

        ctx->request = r;
        ctx->sync_failed = 0;
        ngx_queue_insert_tail(&audit->pending, &ctx->queue);

        /*
         * Nothing runs for this request until the flush is done: a write
         * event on a keep-alive connection would otherwise resume it
         * early.  ngx_http_taurus_guard_audit_wake() puts ctx->resume
         * back in place.
         */

        r->write_event_handler = ngx_http_request_empty_handler;
        r->main->blocked++;
        r->aio = 1;

        if (!audit->busy) {
            ngx_http_taurus_guard_audit_start_sync(audit);
        }

        return NGX_AGAIN;
    }

flush:
#endif

    start = ngx_http_taurus_guard_usec();

    if (fdatasync(audit->file->fd) == -1) {
        ngx_http_taurus_guard_audit_error(r->connection->log, audit,
                                          ngx_errno, "fdatasync()");
        return NGX_ERROR;
    }

    ngx_http_taurus_guard_metrics_flush(ngx_http_taurus_guard_usec() - start,
                                        1, 0);

    return NGX_OK;
}


#if (NGX_THREADS)

/*
 * The next flush covers every descriptor written to since the last one
 * started: usually one, two if the file was reopened in between.
 */

static ngx_int_t
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

    fd = dup(audit->file->fd);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "taurus_guard: dup() of the audit log failed");
        return NGX_ERROR;
    }

    audit->pending_ino[audit->npending] = audit->written_ino;
    audit->pending_dev[audit->npending] = audit->written_dev;
    audit->pending_fds[audit->npending] = fd;
    audit->npending++;

    return NGX_OK;
}


static void
ngx_http_taurus_guard_audit_start_sync(ngx_http_taurus_guard_audit_t *audit)
{
    ngx_uint_t                           i;
    ngx_thread_task_t                   *task;
    ngx_http_taurus_guard_audit_task_t  *t;

    /* what was written until now rides on this flush */

    ngx_queue_add(&audit->syncing, &audit->pending);
    ngx_queue_init(&audit->pending);

    task = audit->task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool,
                                  sizeof(ngx_http_taurus_guard_audit_task_t));
        if (task == NULL) {
            for (i = 0; i < audit->npending; i++) {
                (void) close(audit->pending_fds[i]);
            }

            audit->npending = 0;
            ngx_http_taurus_guard_audit_wake(audit, NGX_ENOMEM);
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
    }

    t->nfds = audit->npending;
    t->err = 0;
    audit->npending = 0;

    if (ngx_thread_task_post(audit->thread_pool, task) != NGX_OK) {
        for (i = 0; i < t->nfds; i++) {
            (void) close(t->fds[i]);
        }

        t->nfds = 0;

        /* fail closed: nobody waiting is forwarded */
        ngx_http_taurus_guard_audit_wake(audit, NGX_EAGAIN);
        return;
    }

    audit->busy = 1;
}


/* in a thread of the pool: no nginx state is touched here */

static void
ngx_http_taurus_guard_audit_sync_thread(void *data, ngx_log_t *log)
{
    ngx_http_taurus_guard_audit_task_t  *t = data;

    ngx_uint_t  i;

    t->usec = ngx_http_taurus_guard_usec();

    for (i = 0; i < t->nfds; i++) {
        if (fdatasync(t->fds[i]) == -1 && t->err == 0) {
            t->err = ngx_errno;
        }

        (void) close(t->fds[i]);
    }

    t->usec = ngx_http_taurus_guard_usec() - t->usec;
}


static void
ngx_http_taurus_guard_audit_sync_done(ngx_event_t *ev)
{
    ngx_http_taurus_guard_audit_t  *audit = ev->data;

    ngx_http_taurus_guard_audit_task_t  *t;

    t = audit->task->ctx;

    ngx_http_taurus_guard_audit_wake(audit, t->err);

    audit->busy = 0;

    if (!ngx_queue_empty(&audit->pending)) {
        ngx_http_taurus_guard_audit_start_sync(audit);
    }
}


/* the requests that waited for a flush go on, or are refused */

static void
ngx_http_taurus_guard_audit_wake(ngx_http_taurus_guard_audit_t *audit,
    ngx_err_t err)
{
    ngx_uint_t                    n;
    ngx_queue_t                  *q, done;
    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_http_taurus_guard_ctx_t  *ctx;

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
        ngx_http_taurus_guard_metrics_flush(
                       ((ngx_http_taurus_guard_audit_task_t *)
                        audit->task->ctx)->usec, n, err);
    }

    while (!ngx_queue_empty(&done)) {
        q = ngx_queue_head(&done);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_taurus_guard_ctx_t, queue);
        r = ctx->request;
        c = r->connection;

        ctx->sync_failed = err ? 1 : 0;

        r->main->blocked--;
        r->aio = 0;

        /* unless nginx meanwhile decided to end the request */

        if (r->write_event_handler == ngx_http_request_empty_handler) {
            r->write_event_handler = ctx->resume;
        }

        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
    }
}

#endif


static void
ngx_http_taurus_guard_audit_error(ngx_log_t *log,
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err, const char *what)
{
    time_t  now;

    ngx_http_taurus_guard_metrics_audit_failed(audit->file->fd);

    now = ngx_time();

    /* like ngx_http_log_module: one alert a minute, not one a request */

    if (now - audit->error_logged < NGX_HTTP_TG_LOG_INTERVAL) {
        return;
    }

    audit->error_logged = now;

    ngx_log_error(NGX_LOG_ALERT, log, err,
                  "taurus_guard: %s to audit log \"%V\" failed,"
                  " requests are refused until it works",
                  what, &audit->file->name);
}


/* microseconds of the monotonic clock, for the flush histogram */

static ngx_msec_t
ngx_http_taurus_guard_usec(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
        return 0;
    }

    return (ngx_msec_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
