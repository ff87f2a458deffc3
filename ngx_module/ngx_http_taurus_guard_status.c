
/*
 * taurus-guard: the two locations that read the gateway's state.
 *
 * "taurus_guard_metrics" answers the Prometheus text exposition format
 * 0.0.4 from the counters (ngx_http_taurus_guard_metrics.c) and the
 * secrets' state; "taurus_guard_health" answers whether a batch could be
 * forwarded now.  Label values come only from fixed sets and the
 * configuration (a secret file's path; a project only from the fetcher's
 * slots, which only allow-listed projects get), never from a request, so
 * a caller cannot grow the number of series.
 *
 * The state of the secrets is read when it is asked for: the fetched
 * ones from the fetcher's zones (each zone's lock taken briefly, no
 * secret copied), the files as the request path sees them in this
 * worker (re-read if they changed, the last good version kept).
 */


#include "ngx_http_taurus_guard_metrics.h"


/* a secret file's state, in this worker */
typedef struct {
    ngx_uint_t                   source;
    ngx_str_t                    path;
    ngx_uint_t                   usable;
} ngx_http_taurus_guard_file_state_t;


/* one fetched source's keys in secrets_t.fetched, its base's last */
typedef struct {
    ngx_uint_t                   source;
    ngx_uint_t                   start;
    ngx_uint_t                   n;
} ngx_http_taurus_guard_fetch_group_t;


/* the state of every configured secret, for one answer */
typedef struct {
    ngx_http_taurus_guard_fetch_state_t  *fetched;
    ngx_uint_t                   nfetched;
    ngx_array_t                  groups;    /* of fetch_group_t */
    ngx_array_t                  files;     /* of file_state_t */
} ngx_http_taurus_guard_secrets_t;


static ngx_int_t ngx_http_taurus_guard_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_health_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_taurus_guard_audits_failing(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_health_audit(
    ngx_http_taurus_guard_audit_t *audit);
static ngx_int_t ngx_http_taurus_guard_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_buf_t *b);
static ngx_int_t ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_main_conf_t *mcf,
    ngx_http_taurus_guard_secrets_t *sec);
static ngx_int_t ngx_http_taurus_guard_secrets_token(ngx_http_request_t *r,
    ngx_http_taurus_guard_secrets_t *sec,
    ngx_http_taurus_guard_token_t *token);
static ngx_int_t ngx_http_taurus_guard_secrets_file(ngx_http_request_t *r,
    ngx_http_taurus_guard_secrets_t *sec,
    ngx_http_taurus_guard_secret_file_t *file);
static size_t ngx_http_taurus_guard_secrets_size(
    ngx_http_taurus_guard_secrets_t *sec);
static ngx_uint_t ngx_http_taurus_guard_secrets_seen(
    ngx_http_taurus_guard_secrets_t *sec, ngx_uint_t k);
static u_char *ngx_http_taurus_guard_secrets_metrics(u_char *p, u_char *end,
    ngx_http_taurus_guard_secrets_t *sec);
static u_char *ngx_http_taurus_guard_secrets_labels(u_char *p, u_char *end,
    ngx_http_taurus_guard_fetch_state_t *st);
static u_char *ngx_http_taurus_guard_secrets_health(u_char *p, u_char *end,
    u_char *checks, ngx_http_taurus_guard_secrets_t *sec,
    ngx_uint_t *failed);
static u_char *ngx_http_taurus_guard_escape(u_char *p, u_char *end,
    ngx_str_t *s);
static u_char *ngx_http_taurus_guard_quota_metrics(u_char *p, u_char *end,
    ngx_array_t *quotas);
static u_char *ngx_http_taurus_guard_family(u_char *p, u_char *end,
    const char *name, const char *type, const char *help);


static const char  *ngx_http_taurus_guard_decision_names[] = {
    "allow", "deny", "invalid", "error", "would_deny"
};


static const char  *ngx_http_taurus_guard_source_names[] = {
    "credentials_file", "token_file", "metadata", "metadata_session",
    "iam", "iam_user"
};


/* "taurus_guard_metrics" and "taurus_guard_health" (cmd->post set) */

char *
ngx_http_taurus_guard_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "is duplicate, or the location has another handler";
    }

    /* never guarded: the merge keeps an inherited "taurus_guard on" off */

    lcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_taurus_guard_module);
    lcf->status = 1;
    lcf->status_file = cf->conf_file->file.name.data;
    lcf->status_line = cf->conf_file->line;

    clcf->handler = (cmd->post == NULL)
                    ? ngx_http_taurus_guard_metrics_handler
                    : ngx_http_taurus_guard_health_handler;

    return NGX_CONF_OK;
}


/*
 * The merge's test (module.c) of a location with a status page: its
 * content handler is still the page's.  A "proxy_pass" or another
 * "*_pass" after the directive replaces the handler without a word (the
 * other order fails above), and the location, kept unguarded for its
 * page, would forward batches unchecked and unsigned.
 */

ngx_int_t
ngx_http_taurus_guard_status_kept(ngx_conf_t *cf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    return clcf->handler == ngx_http_taurus_guard_metrics_handler
           || clcf->handler == ngx_http_taurus_guard_health_handler
           || ngx_http_taurus_guard_status_block(cf) == NGX_OK;
}


/*
 * An "if" block (a nameless location) of a status page's location: NGX_OK
 * with no content handler of its own, since nginx keeps its location's
 * and the block's requests are answered as its location's are; NGX_ERROR
 * with one, a "proxy_pass" or the like.  That block cannot be guarded as
 * a location is: the guard's rewrite handler runs before the rewrite
 * module takes the "if", in the page's unguarded configuration, so a
 * limit_req, an access check or a later "return" refusing the request
 * in the block leaves no trace of it, and "error_page 503 = @fallback"
 * to an unguarded location forwards its body unchecked.  NGX_DECLINED
 * for anything else, "limit_except" included: nginx takes that block
 * before the rewrite phase, and drops the content handler there, which
 * only a proxy_pass's merge puts back.
 */

ngx_int_t
ngx_http_taurus_guard_status_block(ngx_conf_t *cf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (!clcf->noname || clcf->lmt_excpt) {
        return NGX_DECLINED;
    }

    return (clcf->handler == NULL) ? NGX_OK : NGX_ERROR;
}


/* one line of the exposition: "name{label="value"} number" */

#define ngx_http_tg_metric(p, end, name, labels, v)                           \
    p = ngx_slprintf(p, end, "%s%s %uA\n", name, labels,                      \
                     (ngx_atomic_uint_t) (v))


static ngx_int_t
ngx_http_taurus_guard_metrics_handler(ngx_http_request_t *r)
{
    u_char                             *p, *end;
    ngx_buf_t                          *b;
    ngx_int_t                           rc;
    ngx_str_t                           type;
    ngx_uint_t                          i, sum;
    ngx_array_t                         quotas;
    ngx_atomic_uint_t                   v;
    ngx_http_taurus_guard_metrics_t    *m;
    ngx_http_taurus_guard_secrets_t     sec;
    u_char                              label[64];

    static const char  *classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx",
                                      "none" };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    m = ngx_http_taurus_guard_metrics_get();
    if (m == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_taurus_guard_secrets(r,
            ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module),
            &sec)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_taurus_guard_policy_quotas(r, &quotas) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool,
                            16384 + ngx_http_taurus_guard_secrets_size(&sec)
                            + quotas.nelts * 256);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    end = b->end;

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_requests_total", "counter",
            "Guarded requests by the gateway's decision.");

    for (i = 0; i < NGX_HTTP_TG_DECISIONS; i++) {
        ngx_sprintf(label, "{decision=\"%s\"}%Z",
                    ngx_http_taurus_guard_decision_names[i]);
        ngx_http_tg_metric(p, end, "taurus_guard_requests_total", label,
                           m->requests[i]);
    }

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_refusals_total", "counter",
            "Requests the gateway refused, by HTTP status (TG.0NNN error"
            " codes).");

    for (i = 0; i <= NGX_HTTP_TG_REFUSAL_STATUSES; i++) {
        if (i < NGX_HTTP_TG_REFUSAL_STATUSES) {
            ngx_sprintf(label, "{status=\"%ui\"}%Z",
                        ngx_http_taurus_guard_refusal_status[i]);
        } else {
            ngx_sprintf(label, "{status=\"other\"}%Z");
        }

        ngx_http_tg_metric(p, end, "taurus_guard_refusals_total", label,
                           m->refusals[i]);
    }

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_upstream_responses_total", "counter",
            "Forwarded batches by the class of the upstream's status (none:"
            " no answer).");

    for (i = 0; i < 6; i++) {
        ngx_sprintf(label, "{code=\"%s\"}%Z", classes[i]);
        ngx_http_tg_metric(p, end, "taurus_guard_upstream_responses_total",
                           label, m->upstream[i]);
    }

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_flush_seconds", "histogram",
            "Time to put audit records on stable storage, per flush.");

    sum = 0;

    for (i = 0; i < NGX_HTTP_TG_FLUSH_BUCKETS; i++) {
        sum += m->flush_bucket[i];
        p = ngx_slprintf(p, end,
                         "taurus_guard_audit_flush_seconds_bucket"
                         "{le=\"%ui.%06ui\"} %ui\n",
                         ngx_http_taurus_guard_flush_le[i] / 1000000,
                         ngx_http_taurus_guard_flush_le[i] % 1000000, sum);
    }

    v = m->flushes;

    p = ngx_slprintf(p, end,
                     "taurus_guard_audit_flush_seconds_bucket{le=\"+Inf\"}"
                     " %uA\n"
                     "taurus_guard_audit_flush_seconds_sum %uA.%06uA\n"
                     "taurus_guard_audit_flush_seconds_count %uA\n",
                     v, m->flush_usec / 1000000, m->flush_usec % 1000000, v);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_flushed_records_total", "counter",
            "Audit records made durable; divided by the flushes, the group"
            " commit.");
    ngx_http_tg_metric(p, end, "taurus_guard_audit_flushed_records_total",
                       "", m->flush_records);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_records_total", "counter",
            "Audit records written to the file.");
    ngx_http_tg_metric(p, end, "taurus_guard_audit_records_total", "",
                       m->audit_records);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_writes_total", "counter",
            "Writes of audit records to the file; the records divided by"
            " them, how many a turn of the event loop gathers.");
    ngx_http_tg_metric(p, end, "taurus_guard_audit_writes_total", "",
                       m->audit_writes);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_failures_total", "counter",
            "Failed writes or flushes of the audit file (each refused a"
            " request).");
    ngx_http_tg_metric(p, end, "taurus_guard_audit_failures_total", "",
                       m->audit_failures);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_last_flush_timestamp_seconds", "gauge",
            "When the last flush that worked ended (0: none yet).");
    ngx_http_tg_metric(p, end,
                       "taurus_guard_audit_last_flush_timestamp_seconds", "",
                       m->flush_last);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_audit_failing", "gauge",
            "1 while the last write or the last flush of an audit file"
            " failed.");
    ngx_http_tg_metric(p, end, "taurus_guard_audit_failing", "",
                       ngx_http_taurus_guard_audits_failing(r));

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_fetch_failures_total", "counter",
            "Failed fetches of a secret, or failed re-reads of a secret file,"
            " by source.");

    for (i = 0; i < NGX_HTTP_TG_SOURCES; i++) {
        ngx_sprintf(label, "{source=\"%s\"}%Z",
                    ngx_http_taurus_guard_source_names[i]);
        ngx_http_tg_metric(p, end, "taurus_guard_fetch_failures_total",
                           label, m->fetch_failures[i]);
    }

    p = ngx_http_taurus_guard_secrets_metrics(p, end, &sec);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_syslog_queued_bytes", "gauge",
            "Audit records waiting for the syslog collector, all workers.");
    ngx_http_tg_metric(p, end, "taurus_guard_syslog_queued_bytes", "",
                       ngx_http_taurus_guard_metrics_syslog_queued(m));

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_syslog_dropped_total", "counter",
            "Audit records not sent to the collector (they are in the file).");
    ngx_http_tg_metric(p, end, "taurus_guard_syslog_dropped_total", "",
                       m->syslog_dropped);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_syslog_truncated_total", "counter",
            "Audit records too long for max_message=, sent to the collector"
            " as a short stand-in (the whole record is in the file).");
    ngx_http_tg_metric(p, end, "taurus_guard_syslog_truncated_total", "",
                       m->syslog_truncated);

    p = ngx_http_taurus_guard_quota_metrics(p, end, &quotas);

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_start_time_seconds", "gauge",
            "When these counters started (a restart resets them, a reload"
            " does not).");
    ngx_http_tg_metric(p, end, "taurus_guard_start_time_seconds", "",
                       m->started);

    if (p == end) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "taurus_guard: metrics buffer too small");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = p;

    ngx_str_set(&type, "text/plain; version=0.0.4; charset=utf-8");

    return ngx_http_taurus_guard_send(r, NGX_HTTP_OK, &type, b);
}


/*
 * 200 {"status":"ok"} when a batch could be forwarded now: every audit
 * file writable, and a usable secret for every configured source; else
 * 503 {"status":"fail","checks":{...}} naming every check, "ok" or
 * "fail".  It writes no audit record and sends nothing upstream.
 */

static ngx_int_t
ngx_http_taurus_guard_health_handler(ngx_http_request_t *r)
{
    u_char                             *p, *end, *checks;
    size_t                              size;
    ngx_buf_t                          *b;
    ngx_int_t                           rc;
    ngx_str_t                           type;
    ngx_uint_t                          i, failed;
    ngx_http_taurus_guard_audit_t     **audit;
    ngx_http_taurus_guard_secrets_t     sec;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    if (ngx_http_taurus_guard_secrets(r, mcf, &sec) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    audit = mcf->audits.elts;

    /*
     * each audit file's check names its path: room for every one, each
     * byte of it escaped
     */

    size = 8192 + ngx_http_taurus_guard_secrets_size(&sec);

    for (i = 0; i < mcf->audits.nelts; i++) {
        size += sizeof(",\"audit \":\"fail\"") - 1
                + 2 * audit[i]->file->name.len;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    end = b->end;
    failed = 0;

    p = ngx_cpymem(b->last, "{\"status\":\"fail\",\"checks\":{",
                   sizeof("{\"status\":\"fail\",\"checks\":{") - 1);
    checks = p;

    for (i = 0; i < mcf->audits.nelts; i++) {
        rc = ngx_http_taurus_guard_health_audit(audit[i]);

        if (rc != NGX_OK) {
            failed++;
        }

        /* a path is the operator's, escaped as the secrets' paths are */

        p = ngx_slprintf(p, end, "%s\"audit ", (p == checks) ? "" : ",");
        p = ngx_http_taurus_guard_escape(p, end, &audit[i]->file->name);
        p = ngx_slprintf(p, end, "\":\"%s\"", rc == NGX_OK ? "ok" : "fail");
    }

    p = ngx_http_taurus_guard_secrets_health(p, end, checks, &sec, &failed);

    if (p + sizeof("}}") - 1 >= end) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (failed == 0) {
        p = ngx_cpymem(b->last, "{\"status\":\"ok\"}",
                       sizeof("{\"status\":\"ok\"}") - 1);

    } else {
        *p++ = '}';
        *p++ = '}';
    }

    b->last = p;

    ngx_str_set(&type, "application/json");

    return ngx_http_taurus_guard_send(r, failed ? NGX_HTTP_SERVICE_UNAVAILABLE
                                                : NGX_HTTP_OK,
                                      &type, b);
}


/* 1 while the last write or flush of any audit file failed */

static ngx_uint_t
ngx_http_taurus_guard_audits_failing(ngx_http_request_t *r)
{
    ngx_uint_t                          i;
    ngx_http_taurus_guard_audit_t     **audit;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);
    audit = mcf->audits.elts;

    for (i = 0; i < mcf->audits.nelts; i++) {
        if (ngx_http_taurus_guard_audit_failing(audit[i], NULL)) {
            return 1;
        }
    }

    return 0;
}


/*
 * An audit file is usable when its descriptor still names a file in
 * place (not removed), the name still leads to it (a rotation the
 * workers could not follow leaves them writing the old file) and the
 * last write or flush did not fail.
 */

static ngx_int_t
ngx_http_taurus_guard_health_audit(ngx_http_taurus_guard_audit_t *audit)
{
    ngx_file_info_t  fi, pfi;

    if (ngx_fd_info(audit->file->fd, &fi) == NGX_FILE_ERROR) {
        return NGX_ERROR;
    }

    /*
     * The last write or flush of this file, or of one nobody knows,
     * failed: until one works, every batch is refused (a failed flush
     * stays failed whatever was written since).  Another audit file's
     * writes and flushes say nothing of this one.
     */

    if (ngx_http_taurus_guard_audit_failing(audit, &fi)) {
        return NGX_ERROR;
    }

    if (!ngx_is_file(&fi)) {
        /* a device such as /dev/stderr: nothing more to know */
        return NGX_OK;
    }

    if (fi.st_nlink == 0) {
        return NGX_ERROR;
    }

    if (ngx_file_info(audit->file->name.data, &pfi) == NGX_FILE_ERROR) {
        return NGX_ERROR;
    }

    if (pfi.st_ino != fi.st_ino || pfi.st_dev != fi.st_dev) {
        /*
         * not yet reopened; the next record reopens it, if it can: a
         * regular file only (a FIFO or a directory is passed over)
         */
        if (!ngx_is_file(&pfi)
            || access((char *) audit->file->name.data, W_OK) != 0)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    /* a scrape is never cached by a proxy in between */

    r->headers_out.last_modified_time = -1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The state of every configured secret: the fetched ones as the zones
 * hold them, the credentials and token files as this worker's requests
 * would find them now.  Of the token files with $taurus_guard_project in
 * their path, those of the projects this worker had requests for: which
 * files there are is known only request by request.
 */

static ngx_int_t
ngx_http_taurus_guard_secrets(ngx_http_request_t *r,
    ngx_http_taurus_guard_main_conf_t *mcf,
    ngx_http_taurus_guard_secrets_t *sec)
{
    ngx_uint_t                             i, j, k, max;
    ngx_http_taurus_guard_fetch_t        **fetches;
    ngx_http_taurus_guard_token_t        **tokens, *t;
    ngx_http_taurus_guard_fetch_group_t   *g;
    ngx_http_taurus_guard_secret_file_t  **files;

    ngx_memzero(sec, sizeof(ngx_http_taurus_guard_secrets_t));

    /* every slot of a zone, and its base */
    max = mcf->fetches.nelts * (NGX_HTTP_TG_PROJECTS + 1);

    sec->fetched = ngx_palloc(r->pool, (max + 1)
                              * sizeof(ngx_http_taurus_guard_fetch_state_t));
    if (sec->fetched == NULL) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&sec->groups, r->pool, mcf->fetches.nelts + 1,
                       sizeof(ngx_http_taurus_guard_fetch_group_t))
        != NGX_OK
        || ngx_array_init(&sec->files, r->pool, 4,
                          sizeof(ngx_http_taurus_guard_file_state_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    fetches = mcf->fetches.elts;
    k = 0;

    for (i = 0; i < mcf->fetches.nelts; i++) {
        g = ngx_array_push(&sec->groups);
        if (g == NULL) {
            return NGX_ERROR;
        }

        g->start = k;
        g->n = ngx_http_taurus_guard_fetch_states(fetches[i], &g->source,
                                                  &sec->fetched[k], max - k);
        k += g->n;
    }

    sec->nfetched = k;

    files = mcf->files.elts;

    for (i = 0; i < mcf->files.nelts; i++) {
        if (files[i]->source == NGX_HTTP_TG_SOURCE_CREDENTIALS_FILE
            && ngx_http_taurus_guard_secrets_file(r, sec, files[i])
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    tokens = mcf->tokens.elts;

    for (i = 0; i < mcf->tokens.nelts; i++) {
        if (tokens[i]->fetch != NULL) {
            continue;
        }

        if (tokens[i]->path_cv == NULL) {
            if (ngx_http_taurus_guard_secrets_token(r, sec, tokens[i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        /* the files of the projects this worker has had requests for */

        t = tokens[i]->files.elts;

        for (j = 0; j < tokens[i]->files.nelts; j++) {
            if (ngx_http_taurus_guard_secrets_token(r, sec, &t[j])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_secrets_token(ngx_http_request_t *r,
    ngx_http_taurus_guard_secrets_t *sec, ngx_http_taurus_guard_token_t *token)
{
    /* where its parse() keeps the token, as the request path sets it */
    token->file.data = token;

    return ngx_http_taurus_guard_secrets_file(r, sec, &token->file);
}


/*
 * A secret file is usable when a good version is loaded: it is re-read
 * first if it changed, as a request would; a version that went bad or
 * a file that went away keeps the last good one, as for requests.
 */

static ngx_int_t
ngx_http_taurus_guard_secrets_file(ngx_http_request_t *r,
    ngx_http_taurus_guard_secrets_t *sec,
    ngx_http_taurus_guard_secret_file_t *file)
{
    ngx_http_taurus_guard_file_state_t  *fs;

    (void) ngx_http_taurus_guard_secret_file_update(r->connection->log,
                                                    file);

    fs = ngx_array_push(&sec->files);
    if (fs == NULL) {
        return NGX_ERROR;
    }

    fs->source = file->source;
    fs->path = file->path;
    fs->usable = (file->text != NULL);

    return NGX_OK;
}


/* room for the secrets' lines, in the metrics and in the health JSON */

static size_t
ngx_http_taurus_guard_secrets_size(ngx_http_taurus_guard_secrets_t *sec)
{
    size_t                               size;
    ngx_uint_t                           i;
    ngx_http_taurus_guard_file_state_t  *fs;

    size = 1024 + sec->nfetched * 3 * 256;

    fs = sec->files.elts;

    for (i = 0; i < sec->files.nelts; i++) {
        /* each byte of a path may be escaped, twice: two lines */
        size += 256 + 4 * fs[i].path.len;
    }

    return size;
}


static ngx_uint_t
ngx_http_taurus_guard_secrets_seen(ngx_http_taurus_guard_secrets_t *sec,
    ngx_uint_t k)
{
    ngx_uint_t                            i;
    ngx_http_taurus_guard_fetch_state_t  *st;

    /*
     * Two zones may hold one series: a plain and an agency directive on
     * one password file share the user's token.  The first is shown.
     */

    st = sec->fetched;

    for (i = 0; i < k; i++) {
        if (st[i].source == st[k].source
            && ngx_memcmp(st[i].key, st[k].key, TG_PROJECT_ID_LEN) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static u_char *
ngx_http_taurus_guard_secrets_metrics(u_char *p, u_char *end,
    ngx_http_taurus_guard_secrets_t *sec)
{
    time_t                                now;
    ngx_uint_t                            i;
    ngx_http_taurus_guard_file_state_t   *fs;
    ngx_http_taurus_guard_fetch_state_t  *st;

    now = ngx_time();
    st = sec->fetched;
    fs = sec->files.elts;

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_credential_expiry_seconds", "gauge",
            "Seconds until a fetched secret expires (negative: expired), by"
            " source and, for IAM tokens, project.");

    for (i = 0; i < sec->nfetched; i++) {
        if (st[i].expires == 0 || ngx_http_taurus_guard_secrets_seen(sec, i))
        {
            continue;
        }

        p = ngx_slprintf(p, end, "taurus_guard_credential_expiry_seconds");
        p = ngx_http_taurus_guard_secrets_labels(p, end, &st[i]);
        p = ngx_slprintf(p, end, " %T\n", st[i].expires - now);
    }

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_credential_last_refresh_timestamp_seconds", "gauge",
            "When a fetched secret was last fetched, Unix time.");

    for (i = 0; i < sec->nfetched; i++) {
        if (st[i].refreshed == 0
            || ngx_http_taurus_guard_secrets_seen(sec, i))
        {
            continue;
        }

        p = ngx_slprintf(p, end,
                         "taurus_guard_credential_last_refresh_timestamp"
                         "_seconds");
        p = ngx_http_taurus_guard_secrets_labels(p, end, &st[i]);
        p = ngx_slprintf(p, end, " %T\n", st[i].refreshed);
    }

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_credential_usable", "gauge",
            "1 while a usable secret is in hand (a file: its last good"
            " version; fetched: valid past the margin), by source.");

    for (i = 0; i < sec->files.nelts; i++) {
        p = ngx_slprintf(p, end,
                         "taurus_guard_credential_usable{source=\"%s\","
                         "path=\"",
                         ngx_http_taurus_guard_source_names[fs[i].source]);
        p = ngx_http_taurus_guard_escape(p, end, &fs[i].path);
        p = ngx_slprintf(p, end, "\"} %ui\n", fs[i].usable);
    }

    for (i = 0; i < sec->nfetched; i++) {

        /* a key being fetched for the first time has no state yet */

        if ((st[i].refreshed == 0 && !st[i].failed)
            || ngx_http_taurus_guard_secrets_seen(sec, i))
        {
            continue;
        }

        p = ngx_slprintf(p, end, "taurus_guard_credential_usable");
        p = ngx_http_taurus_guard_secrets_labels(p, end, &st[i]);
        p = ngx_slprintf(p, end, " %d\n", st[i].usable ? 1 : 0);
    }

    return p;
}


static u_char *
ngx_http_taurus_guard_secrets_labels(u_char *p, u_char *end,
    ngx_http_taurus_guard_fetch_state_t *st)
{
    if (st->project) {
        /* the key of a slot is an allow-listed project's id */
        return ngx_slprintf(p, end, "{source=\"%s\",project=\"%*s\"}",
                            ngx_http_taurus_guard_source_names[st->source],
                            (size_t) TG_PROJECT_ID_LEN, st->key);
    }

    return ngx_slprintf(p, end, "{source=\"%s\"}",
                        ngx_http_taurus_guard_source_names[st->source]);
}


/*
 * The health checks of the secrets.  A file: ok with a good version
 * loaded.  A fetched source, key by key: ok with a valid secret in
 * hand, or with none and its last fetch not failed (the next request
 * fetches it; a source nothing was asked of yet is one check, by its
 * kind); with a base (a session token, a user's token), the base counts
 * when the key has nothing valid: it is fetched first.
 */

static u_char *
ngx_http_taurus_guard_secrets_health(u_char *p, u_char *end, u_char *checks,
    ngx_http_taurus_guard_secrets_t *sec, ngx_uint_t *failed)
{
    ngx_uint_t                            i, j, ok, base_failed, own;
    ngx_http_taurus_guard_file_state_t   *fs;
    ngx_http_taurus_guard_fetch_state_t  *st, *b;
    ngx_http_taurus_guard_fetch_group_t  *g;

    fs = sec->files.elts;

    for (i = 0; i < sec->files.nelts; i++) {
        p = ngx_slprintf(p, end, "%s\"%s ", (p == checks) ? "" : ",",
                         ngx_http_taurus_guard_source_names[fs[i].source]);
        p = ngx_http_taurus_guard_escape(p, end, &fs[i].path);
        p = ngx_slprintf(p, end, "\":\"%s\"", fs[i].usable ? "ok" : "fail");

        if (!fs[i].usable) {
            (*failed)++;
        }
    }

    g = sec->groups.elts;

    for (i = 0; i < sec->groups.nelts; i++) {
        st = &sec->fetched[g[i].start];

        b = (g[i].n && st[g[i].n - 1].base) ? &st[g[i].n - 1] : NULL;
        base_failed = (b != NULL && !b->usable && b->failed);
        own = g[i].n - (b ? 1 : 0);

        if (own == 0) {
            p = ngx_slprintf(p, end, "%s\"%s\":\"%s\"",
                             (p == checks) ? "" : ",",
                             ngx_http_taurus_guard_source_names[g[i].source],
                             base_failed ? "fail" : "ok");

            if (base_failed) {
                (*failed)++;
            }

            continue;
        }

        for (j = 0; j < own; j++) {
            ok = st[j].usable || (!st[j].failed && !base_failed);

            p = ngx_slprintf(p, end, "%s\"%s", (p == checks) ? "" : ",",
                             ngx_http_taurus_guard_source_names[st[j].source]);

            if (st[j].project) {
                p = ngx_slprintf(p, end, " %*s", (size_t) TG_PROJECT_ID_LEN,
                                 st[j].key);
            }

            p = ngx_slprintf(p, end, "\":\"%s\"", ok ? "ok" : "fail");

            if (!ok) {
                (*failed)++;
            }
        }
    }

    return p;
}


/*
 * A path, the operator's, in a label value or a JSON string: '\', '"'
 * and a line feed escaped alike in both, other control characters
 * replaced.
 */

static u_char *
ngx_http_taurus_guard_escape(u_char *p, u_char *end, ngx_str_t *s)
{
    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < s->len && end - p > 2; i++) {
        c = s->data[i];

        if (c == '\\' || c == '"') {
            *p++ = '\\';
            *p++ = c;

        } else if (c == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = (c < 0x20 || c == 0x7f) ? '?' : c;
        }
    }

    return p;
}


/*
 * Each project's quota: in use over its rolling period, and the limit,
 * for the projects a quota has counted batches for.
 */

static u_char *
ngx_http_taurus_guard_quota_metrics(u_char *p, u_char *end,
    ngx_array_t *quotas)
{
    ngx_uint_t                            i;
    ngx_http_taurus_guard_quota_state_t  *st;

    if (quotas->nelts == 0) {
        return p;
    }

    st = quotas->elts;

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_quota_used", "gauge",
            "Instances forwarded in the rolling period of the project's"
            " quota.");

    for (i = 0; i < quotas->nelts; i++) {
        p = ngx_slprintf(p, end, "taurus_guard_quota_used{project=\"%*s\"}"
                         " %ui\n", (size_t) TG_PROJECT_ID_LEN, st[i].project,
                         st[i].used);
    }

    p = ngx_http_taurus_guard_family(p, end,
            "taurus_guard_quota_limit", "gauge",
            "The project's quota, instances per period.");

    for (i = 0; i < quotas->nelts; i++) {
        p = ngx_slprintf(p, end, "taurus_guard_quota_limit{project=\"%*s\","
                         "period=\"%T\"} %ui\n",
                         (size_t) TG_PROJECT_ID_LEN, st[i].project,
                         st[i].period, st[i].limit);
    }

    return p;
}


/* "# HELP name help" and "# TYPE name type": a metric family's head */

static u_char *
ngx_http_taurus_guard_family(u_char *p, u_char *end, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, end, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}
