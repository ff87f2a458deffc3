
/*
 * taurus-guard: the counters' shared memory, as the two files that use it
 * see it: ngx_http_taurus_guard_metrics.c adds to it, and
 * ngx_http_taurus_guard_status.c reads it for its two locations.  No
 * other file includes this one.
 */


#ifndef _NGX_HTTP_TAURUS_GUARD_METRICS_H_INCLUDED_
#define _NGX_HTTP_TAURUS_GUARD_METRICS_H_INCLUDED_


#include "ngx_http_taurus_guard_module.h"


/* bucket bounds of the flush histogram, in microseconds */
#define NGX_HTTP_TG_FLUSH_BUCKETS     14

/* the statuses the gateway refuses with, each its own series */
#define NGX_HTTP_TG_REFUSAL_STATUSES  10


/*
 * What the process in one slot of nginx's process table (ngx_process_slot)
 * has queued for the syslog collector, under its name (..._process.c).
 * A process killed, or crashed, never takes its queue out: what it held
 * is not counted once it is gone, and counted as not sent when the next
 * process takes the slot (the master only gives a slot again once it
 * has reaped its process).
 */
typedef struct {
    ngx_atomic_t                 owner;
    ngx_atomic_t                 bytes;
    ngx_atomic_t                 records;
} ngx_http_taurus_guard_syslog_slot_t;


extern ngx_uint_t  ngx_http_taurus_guard_flush_le[NGX_HTTP_TG_FLUSH_BUCKETS];
extern ngx_uint_t  ngx_http_taurus_guard_refusal_status[
                       NGX_HTTP_TG_REFUSAL_STATUSES];


struct ngx_http_taurus_guard_metrics_s {
    ngx_atomic_t                 requests[NGX_HTTP_TG_DECISIONS];
    ngx_atomic_t                 refusals[NGX_HTTP_TG_REFUSAL_STATUSES + 1];
    ngx_atomic_t                 upstream[6];   /* 1xx..5xx, none */

    ngx_atomic_t                 flushes;
    ngx_atomic_t                 flush_records;
    ngx_atomic_t                 flush_usec;
    ngx_atomic_t                 flush_bucket[NGX_HTTP_TG_FLUSH_BUCKETS];
    ngx_atomic_t                 flush_last;    /* Unix time of the last
                                                   that worked */
    ngx_atomic_t                 audit_records; /* written to the file */
    ngx_atomic_t                 audit_writes;  /* in so many writes */
    ngx_atomic_t                 audit_failures;

    ngx_atomic_t                 fetch_failures[NGX_HTTP_TG_SOURCES];
    ngx_atomic_t                 syslog_dropped;
    ngx_atomic_t                 syslog_truncated;  /* stand-ins sent */
    ngx_http_taurus_guard_syslog_slot_t  syslog[NGX_MAX_PROCESSES];

    ngx_atomic_t                 started;       /* the zone's Unix time */
};


ngx_http_taurus_guard_metrics_t *ngx_http_taurus_guard_metrics_get(void);
ngx_atomic_uint_t ngx_http_taurus_guard_metrics_syslog_queued(
    ngx_http_taurus_guard_metrics_t *m);


#endif /* _NGX_HTTP_TAURUS_GUARD_METRICS_H_INCLUDED_ */
