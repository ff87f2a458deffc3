
/*
 * taurus-guard: the audit file.  Opened with ngx_conf_open_file() so that
 * "nginx -s reopen" rotates it; each record is sized first, written with
 * one write() to an O_APPEND descriptor and, when durable, flushed with
 * fdatasync() before the caller may forward anything.
 */


#include "ngx_http_taurus_guard_module.h"


static void ngx_http_taurus_guard_audit_error(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err, const char *what);


char *
ngx_http_taurus_guard_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    ngx_str_t                      *value;
    ngx_http_taurus_guard_audit_t  *audit;

    if (lcf->audit != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        lcf->audit = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes a file path or \"off\"";
    }

    audit = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_audit_t));
    if (audit == NULL) {
        return NGX_CONF_ERROR;
    }

    audit->file = ngx_conf_open_file(cf->cycle, &value[1]);
    if (audit->file == NULL) {
        return NGX_CONF_ERROR;
    }

    lcf->audit = audit;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_taurus_guard_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit, tg_audit_record_t *rec,
    ngx_flag_t durable)
{
    u_char   *buf;
    size_t    len;
    ssize_t   n;

    len = tg_audit_encode(rec, NULL, 0);

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (tg_audit_encode(rec, buf, len) != len) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "taurus_guard: audit record size changed");
        return NGX_ERROR;
    }

    /* one write() on an O_APPEND descriptor: records never interleave */

    n = ngx_write_fd(audit->file->fd, buf, len);

    if (n == -1) {
        ngx_http_taurus_guard_audit_error(r, audit, ngx_errno, "write()");
        return NGX_ERROR;
    }

    if ((size_t) n != len) {
        ngx_http_taurus_guard_audit_error(r, audit, 0, "partial write()");
        return NGX_ERROR;
    }

    if (durable && fdatasync(audit->file->fd) == -1) {
        ngx_http_taurus_guard_audit_error(r, audit, ngx_errno, "fdatasync()");
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "taurus_guard: audit record %s %s, %uz bytes",
                   rec->id, tg_decision_name(rec->decision), len);

    return NGX_OK;
}


static void
ngx_http_taurus_guard_audit_error(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit, ngx_err_t err, const char *what)
{
    time_t  now;

    now = ngx_time();

    /* like ngx_http_log_module: one alert a minute, not one a request */

    if (now - audit->error_logged < NGX_HTTP_TG_LOG_INTERVAL) {
        return;
    }

    audit->error_logged = now;

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, err,
                  "taurus_guard: %s to audit log \"%V\" failed,"
                  " requests are refused until it works",
                  what, &audit->file->name);
}
