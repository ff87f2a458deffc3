
/*
 * taurus-guard: the gateway's counters.
 *
 * They live in one shared memory zone that every worker adds to with
 * atomic operations, so no lock is ever taken on the request path.  The
 * zone keeps its name and size across "nginx -s reload", so nginx hands
 * it to the new cycle with its counts; a restart or a binary upgrade
 * starts from zero (Prometheus counters allow a reset).  The request
 * path, the audit file, the fetcher, the secret files and the syslog
 * sender call in here; the locations that read the counters are in
 * ngx_http_taurus_guard_status.c.
 */


#include "ngx_http_taurus_guard_metrics.h"


#define NGX_HTTP_TG_METRICS_ZONE     "taurus_guard_metrics"


ngx_uint_t  ngx_http_taurus_guard_flush_le[NGX_HTTP_TG_FLUSH_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};


ngx_uint_t  ngx_http_taurus_guard_refusal_status[
                NGX_HTTP_TG_REFUSAL_STATUSES] = {
    400, 403, 404, 405, 409, 413, 415, 429, 499, 503
};


static ngx_int_t ngx_http_taurus_guard_metrics_init_zone(
    ngx_shm_zone_t *zone, void *data);


ngx_int_t
ngx_http_taurus_guard_metrics_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, NGX_HTTP_TG_METRICS_ZONE);

    zone = ngx_shared_memory_add(cf, &name, 16 * ngx_pagesize,
                                 &ngx_http_taurus_guard_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_taurus_guard_metrics_init_zone;

    mcf->metrics_zone = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t                  *shpool;
    ngx_http_taurus_guard_metrics_t  *m;

    if (data != NULL) {
        /* a reload: the counters go on */
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }

    m = ngx_slab_calloc(shpool, sizeof(ngx_http_taurus_guard_metrics_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    m->started = ngx_time();

    shpool->data = m;
    zone->data = m;

    return NGX_OK;
}


ngx_http_taurus_guard_metrics_t *
ngx_http_taurus_guard_metrics_get(void)
{
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_core_module)
        == NULL)
    {
        return NULL;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_taurus_guard_module);

    if (mcf == NULL || mcf->metrics_zone == NULL) {
        return NULL;
    }

    return mcf->metrics_zone->data;
}


/* one guarded request is over: its decision, and what the upstream said */

void
ngx_http_taurus_guard_metrics_request(ngx_http_request_t *r,
    tg_decision_t decision, ngx_uint_t status, ngx_uint_t upstream_status)
{
    ngx_uint_t                        i, d;
    ngx_http_taurus_guard_metrics_t  *m;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL) {
        return;
    }

    /* in the order of ngx_http_taurus_guard_decision_names[] */

    switch (decision) {
    case TG_DECISION_ALLOW:
        d = 0;
        break;
    case TG_DECISION_DENY:
        d = 1;
        break;
    case TG_DECISION_INVALID:
        d = 2;
        break;
    case TG_DECISION_ERROR:
        d = 3;
        break;
    case TG_DECISION_WOULD_DENY:
        d = 4;
        break;
    default: /* TG_DECISION_DONE closes a decision, it is not one */
        return;
    }

    (void) ngx_atomic_fetch_add(&m->requests[d], 1);

    if (decision == TG_DECISION_ALLOW || decision == TG_DECISION_WOULD_DENY)
    {
        i = (upstream_status >= 100 && upstream_status < 600)
            ? upstream_status / 100 - 1 : 5;

        (void) ngx_atomic_fetch_add(&m->upstream[i], 1);
        return;
    }

    for (i = 0; i < NGX_HTTP_TG_REFUSAL_STATUSES; i++) {
        if (ngx_http_taurus_guard_refusal_status[i] == status) {
            break;
        }
    }

    /* i == NGX_HTTP_TG_REFUSAL_STATUSES: "other" */

    (void) ngx_atomic_fetch_add(&m->refusals[i], 1);
}


/* a flush of the audit file ended, for nrecords records */

void
ngx_http_taurus_guard_metrics_flush(ngx_msec_t usec, ngx_uint_t nrecords,
    ngx_err_t err)
{
    ngx_uint_t                        i;
    ngx_http_taurus_guard_metrics_t  *m;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL) {
        return;
    }

    if (err) {
        /* counted, and the file marked, where the error was logged */
        return;
    }

    (void) ngx_atomic_fetch_add(&m->flushes, 1);
    (void) ngx_atomic_fetch_add(&m->flush_records, nrecords);
    (void) ngx_atomic_fetch_add(&m->flush_usec, usec);

    for (i = 0; i < NGX_HTTP_TG_FLUSH_BUCKETS; i++) {
        if (usec <= ngx_http_taurus_guard_flush_le[i]) {
            (void) ngx_atomic_fetch_add(&m->flush_bucket[i], 1);
            break;
        }
    }

    m->flush_last = ngx_time();
}


/*
 * Records another worker's flush covered (group commit across workers):
 * they count as flushed, without a flush of their own.
 */

void
ngx_http_taurus_guard_metrics_flush_joined(ngx_uint_t nrecords)
{
    ngx_http_taurus_guard_metrics_t  *m;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&m->flush_records, nrecords);

    m->flush_last = ngx_time();
}


/* a write() or a flush of an audit file failed (its zone keeps which) */

void
ngx_http_taurus_guard_metrics_audit_failed(void)
{
    ngx_http_taurus_guard_metrics_t  *m;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&m->audit_failures, 1);
}


/*
 * Records were written, in so many writes.
 */

void
ngx_http_taurus_guard_metrics_audit_written(ngx_uint_t records,
    ngx_uint_t writes)
{
    ngx_http_taurus_guard_metrics_t  *m;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&m->audit_records, records);
    (void) ngx_atomic_fetch_add(&m->audit_writes, writes);
}


void
ngx_http_taurus_guard_metrics_fetch_failed(ngx_uint_t source)
{
    ngx_http_taurus_guard_metrics_t  *m;

    m = ngx_http_taurus_guard_metrics_get();

    if (m != NULL && source < NGX_HTTP_TG_SOURCES) {
        (void) ngx_atomic_fetch_add(&m->fetch_failures[source], 1);
    }
}


/*
 * Bytes and records queued for the syslog collector (negative: they left
 * the queue), in this process's slot; records not sent; stand-ins sent.
 */

void
ngx_http_taurus_guard_metrics_syslog(ngx_int_t queued, ngx_int_t records,
    ngx_uint_t dropped, ngx_uint_t truncated)
{
    ngx_http_taurus_guard_metrics_t      *m;
    ngx_http_taurus_guard_syslog_slot_t  *s;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL) {
        return;
    }

    if ((queued || records)
        && ngx_process_slot >= 0 && ngx_process_slot < NGX_MAX_PROCESSES)
    {
        s = &m->syslog[ngx_process_slot];
        (void) ngx_atomic_fetch_add(&s->bytes, queued);
        (void) ngx_atomic_fetch_add(&s->records, records);
    }

    if (dropped) {
        (void) ngx_atomic_fetch_add(&m->syslog_dropped, dropped);
    }

    if (truncated) {
        (void) ngx_atomic_fetch_add(&m->syslog_truncated, truncated);
    }
}


/*
 * A process starts in its slot (init_process): the process there before
 * it is gone, and what it still held for the syslog collector, unless
 * it took that out as it exited, was never sent.
 */

void
ngx_http_taurus_guard_metrics_process(ngx_cycle_t *cycle,
    ngx_atomic_uint_t self)
{
    ngx_atomic_uint_t                     records;
    ngx_http_taurus_guard_metrics_t      *m;
    ngx_http_taurus_guard_syslog_slot_t  *s;

    m = ngx_http_taurus_guard_metrics_get();

    if (m == NULL
        || ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    s = &m->syslog[ngx_process_slot];

    records = s->records;

    if (records) {
        (void) ngx_atomic_fetch_add(&m->syslog_dropped, records);

        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "taurus_guard: a process that ended without exiting"
                      " (pid %P) had %uA audit records queued for the"
                      " syslog collector, not sent (they are in the audit"
                      " file)", (ngx_pid_t) (s->owner & 0xffffffff),
                      records);
    }

    s->owner = self;
    s->bytes = 0;
    s->records = 0;
}


/*
 * Bytes queued for the syslog collector by processes still alive: a
 * slot whose process is gone holds what was lost with it.
 */

ngx_atomic_uint_t
ngx_http_taurus_guard_metrics_syslog_queued(
    ngx_http_taurus_guard_metrics_t *m)
{
    ngx_uint_t                            i;
    ngx_atomic_uint_t                     bytes, total;
    ngx_http_taurus_guard_syslog_slot_t  *s;

    total = 0;

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        s = &m->syslog[i];
        bytes = s->bytes;

        if (bytes && !ngx_http_taurus_guard_process_gone(s->owner)) {
            total += bytes;
        }
    }

    return total;
}
