
/*
 * taurus-guard: the audit records, also sent to a central collector as
 * RFC 5424 syslog messages over TCP, framed by octet counting (RFC 6587).
 * nginx's own syslog client is UDP only.
 *
 * The durable local file stays the record of truth: a record is sent
 * after it is in the file, never instead of it.  When the collector is
 * down, each worker keeps up to "queue=" bytes of records and sends them
 * once it reconnects (it retries every second); past that, records are
 * not sent and a warning a minute says how many, so a gap at the
 * collector is always visible in the error log and recoverable from the
 * file.
 */


#include "ngx_http_taurus_guard_module.h"
#include <poll.h>


#define NGX_HTTP_TG_SYSLOG_RETRY    1000      /* ms between reconnects */
#define NGX_HTTP_TG_SYSLOG_TIMEOUT  5000      /* ms to connect */
#define NGX_HTTP_TG_SYSLOG_BURST    (256 * 1024)    /* bytes a flush call */
#define NGX_HTTP_TG_SYSLOG_MESSAGE  8096      /* max_message= default:
                                                 rsyslog's maxMessageSize */
#define NGX_HTTP_TG_SYSLOG_MSG_MIN  1024
#define NGX_HTTP_TG_SYSLOG_MSG_MAX  (1024 * 1024)
#define NGX_HTTP_TG_SYSLOG_LINGER   10        /* 100 ms waits at exit */


/* the central collector, one TCP connection per worker */
struct ngx_http_taurus_guard_syslog_s {
    ngx_addr_t                   addr;
    ngx_uint_t                   facility;
    ngx_str_t                    tag;
    size_t                       queue_max;
    size_t                       max_message;   /* header and record */
#if (NGX_SSL)
    ngx_ssl_t                   *ssl;       /* TLS, verified, or NULL */
    ngx_str_t                    ssl_name;  /* the name to verify */
    u_char                      *ssl_name_z;    /* the same, for SNI */
#endif

    /* per worker, after fork */
    size_t                       room;      /* see ..._room(), or 0 */
    ngx_peer_connection_t        pc;
    ngx_event_t                  retry;
    u_char                      *queue;     /* whole "LEN MSG" frames */
    size_t                       qlen;
    size_t                       head;      /* the first frame not sent */
    size_t                       sent;      /* bytes sent, from 0 */
    size_t                       ssl_size;  /* the TLS write to retry */
    ngx_uint_t                   dropped;
    ngx_http_taurus_guard_pace_t  drop_pace;
    ngx_http_taurus_guard_pace_t  error_pace;
    unsigned                     connecting:1;
    unsigned                     connected:1;
    unsigned                     ssl_retry:1;   /* see ..._compact() */
};


static u_char *ngx_http_taurus_guard_syslog_head(
    ngx_http_taurus_guard_syslog_t *sl, u_char *buf, size_t size,
    const char *ts);
static void ngx_http_taurus_guard_syslog_connect(
    ngx_http_taurus_guard_syslog_t *sl);
static void ngx_http_taurus_guard_syslog_retry(ngx_event_t *ev);
static void ngx_http_taurus_guard_syslog_write(ngx_event_t *ev);
static void ngx_http_taurus_guard_syslog_read(ngx_event_t *ev);
static void ngx_http_taurus_guard_syslog_connected(
    ngx_http_taurus_guard_syslog_t *sl);
#if (NGX_SSL)
static char *ngx_http_taurus_guard_syslog_ssl(ngx_conf_t *cf,
    ngx_http_taurus_guard_syslog_t *sl, ngx_url_t *u, ngx_str_t *cert);
static void ngx_http_taurus_guard_syslog_tls(
    ngx_http_taurus_guard_syslog_t *sl, ngx_connection_t *c);
static void ngx_http_taurus_guard_syslog_handshake(ngx_connection_t *c);
static size_t ngx_http_taurus_guard_syslog_record(
    ngx_http_taurus_guard_syslog_t *sl);
#endif
static void ngx_http_taurus_guard_syslog_close(ngx_connection_t *c);
static void ngx_http_taurus_guard_syslog_linger(ngx_connection_t *c);
static size_t ngx_http_taurus_guard_syslog_frame(u_char *q, size_t len);
static void ngx_http_taurus_guard_syslog_flush(
    ngx_http_taurus_guard_syslog_t *sl);
static void ngx_http_taurus_guard_syslog_compact(
    ngx_http_taurus_guard_syslog_t *sl, size_t room);
static void ngx_http_taurus_guard_syslog_disconnect(
    ngx_http_taurus_guard_syslog_t *sl);
static void ngx_http_taurus_guard_syslog_fail(
    ngx_http_taurus_guard_syslog_t *sl, const char *what);


static ngx_str_t  ngx_http_taurus_guard_facilities[] = {
    ngx_string("kern"), ngx_string("user"), ngx_string("mail"),
    ngx_string("daemon"), ngx_string("auth"), ngx_string("intern"),
    ngx_string("lpr"), ngx_string("news"), ngx_string("uucp"),
    ngx_string("clock"), ngx_string("authpriv"), ngx_string("ftp"),
    ngx_string("ntp"), ngx_string("audit"), ngx_string("alert"),
    ngx_string("cron"), ngx_string("local0"), ngx_string("local1"),
    ngx_string("local2"), ngx_string("local3"), ngx_string("local4"),
    ngx_string("local5"), ngx_string("local6"), ngx_string("local7"),
    ngx_null_string
};


/*
 * taurus_guard_audit_syslog server=ADDR:PORT [facility=] [tag=] [queue=]
 *     [max_message=] [ssl trusted_certificate= [ssl_name=]]
 */

char *
ngx_http_taurus_guard_syslog(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    ssize_t                          size;
    ngx_str_t                       *value, s;
    ngx_url_t                        u;
    ngx_uint_t                       i, n;
    ngx_http_taurus_guard_syslog_t  *sl;
#if (NGX_SSL)
    ngx_str_t                        cert;
    ngx_flag_t                       ssl;

    ssl = 0;
    ngx_str_null(&cert);
#endif

    if (mcf->syslog != NULL) {
        return "is duplicate";
    }

    sl = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_syslog_t));
    if (sl == NULL) {
        return NGX_CONF_ERROR;
    }

    sl->facility = 16;                      /* local0 */
    ngx_str_set(&sl->tag, "taurus-guard");
    sl->queue_max = 1024 * 1024;
    sl->max_message = NGX_HTTP_TG_SYSLOG_MESSAGE;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_http_taurus_guard_param_once(cf, value, 1, i) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (ngx_strncmp(value[i].data, "server=", 7) == 0) {
            ngx_memzero(&u, sizeof(ngx_url_t));

            u.url.data = value[i].data + 7;
            u.url.len = value[i].len - 7;
            u.default_port = 514;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_audit_syslog: %s in"
                                   " \"%V\"", u.err ? u.err : "bad address",
                                   &u.url);
                return NGX_CONF_ERROR;
            }

            if (u.no_port || u.naddrs == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_audit_syslog: \"%V\""
                                   " needs an address and a port", &u.url);
                return NGX_CONF_ERROR;
            }

            sl->addr = u.addrs[0];
            continue;
        }

        if (ngx_strncmp(value[i].data, "facility=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            for (n = 0; ngx_http_taurus_guard_facilities[n].len; n++) {
                if (s.len == ngx_http_taurus_guard_facilities[n].len
                    && ngx_strncmp(s.data,
                                   ngx_http_taurus_guard_facilities[n].data,
                                   s.len) == 0)
                {
                    break;
                }
            }

            if (ngx_http_taurus_guard_facilities[n].len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_audit_syslog: unknown"
                                   " facility \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            sl->facility = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tag=", 4) == 0) {
            sl->tag.data = value[i].data + 4;
            sl->tag.len = value[i].len - 4;

            for (n = 0; n < sl->tag.len; n++) {
                if (sl->tag.data[n] < 0x21 || sl->tag.data[n] > 0x7e) {
                    break;
                }
            }

            if (sl->tag.len == 0 || sl->tag.len > 48 || n < sl->tag.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_audit_syslog: \"tag=\""
                                   " takes 1 to 48 printable characters");
                return NGX_CONF_ERROR;
            }

            continue;
        }

#if (NGX_SSL)
        if (ngx_strcmp(value[i].data, "ssl") == 0) {
            ssl = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "trusted_certificate=", 20) == 0) {
            cert.data = value[i].data + 20;
            cert.len = value[i].len - 20;
            continue;
        }

        if (ngx_strncmp(value[i].data, "ssl_name=", 9) == 0) {
            sl->ssl_name.data = value[i].data + 9;
            sl->ssl_name.len = value[i].len - 9;
            continue;
        }
#endif

        if (ngx_strncmp(value[i].data, "queue=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            size = ngx_parse_size(&s);
            if (size == NGX_ERROR || size < 4096) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_audit_syslog: invalid"
                                   " \"queue=\" size (4k at least)");
                return NGX_CONF_ERROR;
            }

            sl->queue_max = (size_t) size;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_message=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            size = ngx_parse_size(&s);
            if (size == NGX_ERROR || size < NGX_HTTP_TG_SYSLOG_MSG_MIN
                || size > NGX_HTTP_TG_SYSLOG_MSG_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "taurus_guard_audit_syslog: invalid"
                                   " \"max_message=\" size (1k to 1m)");
                return NGX_CONF_ERROR;
            }

            sl->max_message = (size_t) size;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_audit_syslog: invalid parameter"
                           " \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (sl->addr.sockaddr == NULL) {
        return "needs \"server=ADDRESS:PORT\"";
    }

    if (sl->queue_max < sl->max_message + NGX_SIZE_T_LEN + 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_audit_syslog: \"queue=\" must be"
                           " larger than \"max_message=\"");
        return NGX_CONF_ERROR;
    }

#if (NGX_SSL)
    if (!ssl && (cert.len || sl->ssl_name.len)) {
        /* a collector meant to be verified must never get plain TCP */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_audit_syslog: \"%s\" without"
                           " \"ssl\" would send the records in clear",
                           cert.len ? "trusted_certificate=" : "ssl_name=");
        return NGX_CONF_ERROR;
    }

    if (ssl && ngx_http_taurus_guard_syslog_ssl(cf, sl, &u, &cert)
               != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }
#endif

    mcf->syslog = sl;

    return NGX_CONF_OK;
}


#if (NGX_SSL)

/*
 * "ssl trusted_certificate=CA [ssl_name=NAME]": TLS to the collector,
 * its certificate verified against CA and NAME (the server's host by
 * default).  Without a trusted certificate there is no TLS: a TLS that
 * accepts any certificate would only look safe.
 */

static char *
ngx_http_taurus_guard_syslog_ssl(ngx_conf_t *cf,
    ngx_http_taurus_guard_syslog_t *sl, ngx_url_t *u, ngx_str_t *cert)
{
    ngx_pool_cleanup_t  *cln;

    if (cert->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_audit_syslog: \"ssl\" needs"
                           " \"trusted_certificate=FILE\" to verify the"
                           " collector");
        return NGX_CONF_ERROR;
    }

    if (sl->ssl_name.len == 0) {
        sl->ssl_name = u->host;
    }

    sl->ssl_name_z = ngx_pnalloc(cf->pool, sl->ssl_name.len + 1);
    if (sl->ssl_name_z == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_cpymem(sl->ssl_name_z, sl->ssl_name.data, sl->ssl_name.len) = '\0';

    sl->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (sl->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    sl->ssl->log = cf->log;

    if (ngx_ssl_create(sl->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(sl->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = sl->ssl;

    if (ngx_ssl_trusted_certificate(cf, sl->ssl, cert, 10) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_taurus_guard_syslog_handshake(ngx_connection_t *c)
{
    ngx_http_taurus_guard_syslog_t  *sl = c->data;

    long  rc;

    sl->connecting = 0;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!c->ssl->handshaked) {
        ngx_http_taurus_guard_syslog_fail(sl, "TLS handshake with");
        return;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "taurus_guard: syslog collector certificate verify"
                      " error: (%l:%s)", rc,
                      X509_verify_cert_error_string(rc));
        ngx_http_taurus_guard_syslog_fail(sl, "verifying");
        return;
    }

    if (ngx_ssl_check_host(c, &sl->ssl_name) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "taurus_guard: syslog collector certificate does not"
                      " match \"%V\"", &sl->ssl_name);
        ngx_http_taurus_guard_syslog_fail(sl, "verifying");
        return;
    }

    c->read->handler = ngx_http_taurus_guard_syslog_read;
    c->write->handler = ngx_http_taurus_guard_syslog_write;

    ngx_http_taurus_guard_syslog_connected(sl);
}

#endif


/*
 * The longest record a message carries whole: max_message= less the
 * header, which has the same length for every message of a worker.  A
 * longer record would be cut by the collector (rsyslog takes what is
 * past its maxMessageSize for a message of its own, with the header and
 * text the caller wrote there), so its stand-in is sent instead.
 */

size_t
ngx_http_taurus_guard_syslog_room(ngx_http_taurus_guard_syslog_t *sl)
{
    u_char  *p;
    u_char   head[NGX_INT_T_LEN * 2 + NGX_MAXHOSTNAMELEN + 128];

    /* worked out once per worker: it asks for every record it queues */

    if (sl->room == 0) {
        p = ngx_http_taurus_guard_syslog_head(sl, head, sizeof(head),
                                              "0000-00-00T00:00:00.000Z");
        sl->room = sl->max_message - (p - head);
    }

    return sl->room;
}


/* "<PRI>1 TIMESTAMP HOST TAG PID audit - " */

static u_char *
ngx_http_taurus_guard_syslog_head(ngx_http_taurus_guard_syslog_t *sl,
    u_char *buf, size_t size, const char *ts)
{
    return ngx_snprintf(buf, size, "<%ui>1 %s %V %V %P audit - ",
                        sl->facility * 8 + 6, ts, &ngx_cycle->hostname,
                        &sl->tag, ngx_pid);
}


/*
 * Queues one record (without its newline) as
 * "LEN <PRI>1 TIMESTAMP HOST TAG PID audit - RECORD", or its stand-in
 * (tg_audit_write_stand_in()) when the message would be longer than
 * max_message=.
 */

void
ngx_http_taurus_guard_syslog_send(ngx_http_taurus_guard_syslog_t *sl,
    tg_audit_record_t *rec, u_char *line, size_t len, u_char *stand_in,
    size_t stand_in_len)
{
    u_char      *p;
    size_t       msg;
    ngx_uint_t   truncated;
    char         ts[TG_RFC3339_MS_LEN + 1];
    u_char       head[NGX_INT_T_LEN * 2 + NGX_MAXHOSTNAMELEN + 128];

    if (tg_rfc3339_ms(rec->time_sec, rec->time_msec, ts) != TG_OK) {
        return;
    }

    p = ngx_http_taurus_guard_syslog_head(sl, head, sizeof(head), ts);
    msg = (p - head) + len;
    truncated = 0;

    if (msg > sl->max_message) {
        msg = (p - head) + stand_in_len;

        if (stand_in == NULL || msg > sl->max_message) {
            /* cannot be: a stand-in is far shorter than max_message= */
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "taurus_guard: audit record of %uz bytes not sent"
                          " to syslog collector \"%V\", no stand-in (it is"
                          " in the audit file)", len, &sl->addr.name);
            ngx_http_taurus_guard_metrics_syslog(0, 0, 1, 0);
            return;
        }

        line = stand_in;
        len = stand_in_len;
        truncated = 1;
    }

    if (sl->queue == NULL) {
        sl->queue = ngx_alloc(sl->queue_max, ngx_cycle->log);
        if (sl->queue == NULL) {
            return;
        }
    }

    if (sl->qlen + NGX_SIZE_T_LEN + 1 + msg > sl->queue_max) {
        ngx_http_taurus_guard_syslog_compact(sl, NGX_SIZE_T_LEN + 1 + msg);
    }

    if (sl->qlen + NGX_SIZE_T_LEN + 1 + msg > sl->queue_max) {
        sl->dropped++;
        ngx_http_taurus_guard_metrics_syslog(0, 0, 1, 0);

        if (ngx_http_taurus_guard_pace(&sl->drop_pace)) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "taurus_guard: syslog collector \"%V\" is behind,"
                          " %ui audit records not sent (they are in the"
                          " audit file)", &sl->addr.name, sl->dropped);
        }

        return;
    }

    p = ngx_sprintf(sl->queue + sl->qlen, "%uz ", msg);
    p = ngx_cpymem(p, head, msg - len);
    p = ngx_cpymem(p, line, len);
    ngx_http_taurus_guard_metrics_syslog((p - sl->queue) - sl->qlen, 1, 0,
                                         truncated);
    sl->qlen = p - sl->queue;

    if (sl->connected) {
        ngx_http_taurus_guard_syslog_flush(sl);

    } else if (!sl->connecting && !sl->retry.timer_set) {
        ngx_http_taurus_guard_syslog_connect(sl);
    }
}


static void
ngx_http_taurus_guard_syslog_connect(ngx_http_taurus_guard_syslog_t *sl)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_memzero(&sl->pc, sizeof(ngx_peer_connection_t));

    sl->pc.sockaddr = sl->addr.sockaddr;
    sl->pc.socklen = sl->addr.socklen;
    sl->pc.name = &sl->addr.name;
    sl->pc.get = ngx_event_get_peer;
    sl->pc.log = ngx_cycle->log;
    sl->pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&sl->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (sl->pc.connection != NULL) {
            ngx_http_taurus_guard_syslog_close(sl->pc.connection);
            sl->pc.connection = NULL;
        }

        ngx_http_taurus_guard_syslog_fail(sl, "connect()");
        return;
    }

    c = sl->pc.connection;
    c->data = sl;

    /* a peer connection has no pool; TLS needs one */

    c->pool = ngx_create_pool(512, ngx_cycle->log);
    if (c->pool == NULL) {
        ngx_http_taurus_guard_syslog_fail(sl, "no memory for");
        return;
    }

    /* a worker that exits closes it (ngx_close_idle_connections()) */
    c->idle = 1;

    c->read->handler = ngx_http_taurus_guard_syslog_read;
    c->write->handler = ngx_http_taurus_guard_syslog_write;

    sl->connecting = 1;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, NGX_HTTP_TG_SYSLOG_TIMEOUT);
        return;
    }

    ngx_http_taurus_guard_syslog_write(c->write);
}


static void
ngx_http_taurus_guard_syslog_write(ngx_event_t *ev)
{
    int                              err;
    socklen_t                        len;
    ngx_connection_t                *c;
    ngx_http_taurus_guard_syslog_t  *sl;

    c = ev->data;
    sl = c->data;

    if (ev->timedout) {
        ngx_http_taurus_guard_syslog_fail(sl, "connect() timed out");
        return;
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (sl->connecting) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_http_taurus_guard_syslog_fail(sl, "connect()");
            return;
        }

        sl->connecting = 0;

#if (NGX_SSL)
        if (sl->ssl != NULL) {
            ngx_http_taurus_guard_syslog_tls(sl, c);
            return;
        }
#endif

        ngx_http_taurus_guard_syslog_connected(sl);
        return;
    }

    ngx_http_taurus_guard_syslog_flush(sl);
}


static void
ngx_http_taurus_guard_syslog_connected(ngx_http_taurus_guard_syslog_t *sl)
{
    sl->connected = 1;

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "taurus_guard: connected to syslog collector \"%V\"%s",
                  &sl->addr.name,
#if (NGX_SSL)
                  sl->ssl ? " over TLS" :
#endif
                  "");

    ngx_http_taurus_guard_syslog_flush(sl);
}


#if (NGX_SSL)

static void
ngx_http_taurus_guard_syslog_tls(ngx_http_taurus_guard_syslog_t *sl,
    ngx_connection_t *c)
{
    ngx_int_t  rc;

    if (ngx_ssl_create_connection(sl->ssl, c, NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_taurus_guard_syslog_fail(sl, "TLS to");
        return;
    }

    if (SSL_set_tlsext_host_name(c->ssl->connection,
                                 (char *) sl->ssl_name_z) == 0)
    {
        ngx_http_taurus_guard_syslog_fail(sl, "TLS SNI for");
        return;
    }

    sl->connecting = 1;

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, NGX_HTTP_TG_SYSLOG_TIMEOUT);
        c->ssl->handler = ngx_http_taurus_guard_syslog_handshake;
        return;
    }

    sl->connecting = 0;
    ngx_http_taurus_guard_syslog_handshake(c);
}

#endif


/*
 * Sends from sl->sent on; only whole frames leave the queue.  A frame cut
 * by a broken connection is sent again whole on the next one, so the
 * collector's octet counting never loses its place.  One call sends
 * about NGX_HTTP_TG_SYSLOG_BURST bytes and leaves the rest to the next
 * turn of the event loop: a queue filled while the collector was away
 * drains without holding up the requests of the worker.
 */

static void
ngx_http_taurus_guard_syslog_flush(ngx_http_taurus_guard_syslog_t *sl)
{
    size_t             frame, burst, size;
    ssize_t            n;
    ngx_connection_t  *c;

    c = sl->pc.connection;

    for (burst = 0; sl->sent < sl->qlen; burst += n) {

        if (burst >= NGX_HTTP_TG_SYSLOG_BURST) {
            ngx_post_event(c->write, &ngx_posted_next_events);
            break;
        }

        size = sl->qlen - sl->sent;

#if (NGX_SSL)
        if (c->ssl != NULL) {
            size = sl->ssl_retry ? sl->ssl_size
                                 : ngx_http_taurus_guard_syslog_record(sl);
        }
#endif

        n = c->send(c, sl->queue + sl->sent, size);

        if (n == NGX_AGAIN) {
#if (NGX_SSL)
            sl->ssl_retry = (c->ssl != NULL);
            sl->ssl_size = size;
#endif

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_taurus_guard_syslog_fail(sl, "send()");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_taurus_guard_syslog_fail(sl, "send()");
            return;
        }

        sl->ssl_retry = 0;
        sl->sent += n;

        for ( ;; ) {
            frame = ngx_http_taurus_guard_syslog_frame(sl->queue + sl->head,
                                                       sl->qlen - sl->head);

            if (frame == 0 || frame > sl->sent - sl->head) {
                break;
            }

            sl->head += frame;
            ngx_http_taurus_guard_metrics_syslog(-(ngx_int_t) frame, -1, 0,
                                                 0);
        }

        ngx_http_taurus_guard_syslog_compact(sl, 0);
    }
}


#if (NGX_SSL)

/*
 * What one SSL_write() is given: the whole frames from sl->sent on that
 * one TLS record holds, or the first frame alone.  SSL_write() given
 * more encrypts and writes record after record until the socket is full,
 * then fails with all of them unsent as far as its caller knows: a
 * connection closed then (a reload, the collector gone) would send their
 * frames again on the next one, after the collector got them on this.
 * Given one record, it writes all of it or nothing the collector can
 * read, and a frame longer than a record is sent again whole after a
 * cut, as over TCP.  A write retried is given the same bytes, not the
 * frames come since: OpenSSL would finish the record it was writing,
 * start the next and wait again, with the first written but not counted.
 */

static size_t
ngx_http_taurus_guard_syslog_record(ngx_http_taurus_guard_syslog_t *sl)
{
    size_t  p, frame;

    p = sl->sent;

    for ( ;; ) {
        frame = ngx_http_taurus_guard_syslog_frame(sl->queue + p,
                                                   sl->qlen - p);

        if (frame == 0 || frame > sl->qlen - p
            || (p > sl->sent && p + frame - sl->sent > 16384))
        {
            break;
        }

        p += frame;
    }

    return p - sl->sent;
}

#endif


/*
 * The frames sent leave the front of the queue.  They are moved only once
 * at least as many bytes were sent as are left, so that a byte is moved
 * about once however the queue drains, or when a new frame needs room at
 * the end.  Never while a TLS write waits to be retried: OpenSSL wants
 * the same bytes at the same address then.
 */

static void
ngx_http_taurus_guard_syslog_compact(ngx_http_taurus_guard_syslog_t *sl,
    size_t room)
{
    size_t  left;

    if (sl->head == 0 || sl->ssl_retry) {
        return;
    }

    left = sl->qlen - sl->head;

    if (left > sl->head
        && (room == 0 || sl->qlen + room <= sl->queue_max
            || left + room > sl->queue_max))
    {
        return;
    }

    ngx_memmove(sl->queue, sl->queue + sl->head, left);
    sl->qlen = left;
    sl->sent -= sl->head;
    sl->head = 0;
}


/*
 * The worker exits (a reload, a binary upgrade, a shutdown) with records
 * still queued for the collector: what one last send does not take is
 * not sent.  Those records leave the queue's gauge and are counted as not
 * sent, with a warning: they are in the audit file.
 */

void
ngx_http_taurus_guard_syslog_exit(ngx_http_taurus_guard_syslog_t *sl)
{
    u_char      *q;
    size_t       len, frame;
    ngx_uint_t   n;

    if (sl->qlen > sl->head && sl->connected) {
        ngx_http_taurus_guard_syslog_flush(sl);
    }

    if (sl->connected) {
        ngx_http_taurus_guard_syslog_linger(sl->pc.connection);
    }

    /* one made during a graceful shutdown is not left open */
    ngx_http_taurus_guard_syslog_disconnect(sl);

    if (sl->qlen == sl->head) {
        return;
    }

    n = 0;
    q = sl->queue + sl->head;
    len = sl->qlen - sl->head;

    while (len) {
        frame = ngx_http_taurus_guard_syslog_frame(q, len);

        if (frame == 0 || frame > len) {
            break;
        }

        n++;
        q += frame;
        len -= frame;
    }

    ngx_http_taurus_guard_metrics_syslog(-(ngx_int_t) (sl->qlen - sl->head),
                                         -(ngx_int_t) n, n, 0);

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "taurus_guard: worker exiting, %ui audit records queued"
                  " for syslog collector \"%V\" not sent (they are in the"
                  " audit file)", n, &sl->addr.name);

    sl->qlen = 0;
    sl->head = 0;
    sl->sent = 0;
}


/*
 * The worker exits: its connection ends with a FIN after what was sent
 * (a TLS close_notify first), and what the collector says is read until
 * it closes its end too, a second at most.  Closed at once, a connection
 * made moments ago would be reset by the collector's session tickets
 * (see ..._close()), arriving after the worker was gone, and the
 * records the kernel had yet to send lost, though counted as sent.  A
 * collector that does not read keeps silent: the kernel goes on sending
 * after the close.
 */

static void
ngx_http_taurus_guard_syslog_linger(ngx_connection_t *c)
{
    u_char          buf[4096];
    ssize_t         n;
    ngx_uint_t      i;
    struct pollfd   pfd;

#if (NGX_SSL)
    if (c->ssl != NULL) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    if (shutdown(c->fd, SHUT_WR) == -1) {
        return;
    }

    pfd.fd = c->fd;
    pfd.events = POLLIN;

    for (i = 0; i < NGX_HTTP_TG_SYSLOG_LINGER; i++) {
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }

        n = recv(c->fd, buf, sizeof(buf), 0);

        if (n == 0 || (n == -1 && ngx_socket_errno != NGX_EAGAIN)) {
            return;
        }
    }
}


/* the length of the "LEN " prefixed frame at the start of the queue */

static size_t
ngx_http_taurus_guard_syslog_frame(u_char *q, size_t len)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len && q[i] >= '0' && q[i] <= '9'; i++) {
        n = n * 10 + (q[i] - '0');
    }

    if (i == 0 || i == len || q[i] != ' ') {
        return 0;
    }

    return i + 1 + n;
}


/*
 * The collector says nothing in this protocol (RFC 6587 is one way).  A
 * byte from it, the end of its stream or an error mean the same: close
 * and reconnect a second later.  Reading on would let a collector that
 * talks keep the worker busy for as long as it talks.
 */

static void
ngx_http_taurus_guard_syslog_read(ngx_event_t *ev)
{
    u_char                           buf[1];
    ssize_t                          n;
    ngx_connection_t                *c;
    ngx_http_taurus_guard_syslog_t  *sl;

    c = ev->data;
    sl = c->data;

    if (c->close) {
        /* nginx shuts down: idle connections are closed */
        ngx_http_taurus_guard_syslog_disconnect(sl);
        return;
    }

    n = c->recv(c, buf, sizeof(buf));

    if (n == NGX_AGAIN) {
        if (ngx_handle_read_event(ev, 0) != NGX_OK) {
            ngx_http_taurus_guard_syslog_fail(sl, "recv()");
        }

        return;
    }

    ngx_http_taurus_guard_syslog_fail(sl, (n > 0)
                                      ? "the collector sent data, which it"
                                        " must not:"
                                      : "the collector closed the"
                                        " connection:");
}


/*
 * The connection is closed, whoever closed it: a frame it cut goes again
 * whole on the next one, from the first byte the collector did not get
 * all of.
 */

static void
ngx_http_taurus_guard_syslog_disconnect(ngx_http_taurus_guard_syslog_t *sl)
{
    if (sl->pc.connection != NULL) {
        ngx_http_taurus_guard_syslog_close(sl->pc.connection);
        sl->pc.connection = NULL;
    }

    sl->connecting = 0;
    sl->connected = 0;
    sl->ssl_retry = 0;
    sl->sent = sl->head;
}


static void
ngx_http_taurus_guard_syslog_fail(ngx_http_taurus_guard_syslog_t *sl,
    const char *what)
{
    ngx_http_taurus_guard_syslog_disconnect(sl);

    if (ngx_http_taurus_guard_pace(&sl->error_pace)) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "taurus_guard: %s syslog collector \"%V\" failed,"
                      " retrying; records stay in the audit file",
                      what, &sl->addr.name);
    }

    sl->retry.handler = ngx_http_taurus_guard_syslog_retry;
    sl->retry.data = sl;
    sl->retry.log = ngx_cycle->log;
    sl->retry.cancelable = 1;

    if (!sl->retry.timer_set) {
        ngx_add_timer(&sl->retry, NGX_HTTP_TG_SYSLOG_RETRY);
    }
}


static void
ngx_http_taurus_guard_syslog_retry(ngx_event_t *ev)
{
    ngx_http_taurus_guard_syslog_t  *sl = ev->data;

    if (sl->qlen > sl->head && !sl->connecting && !sl->connected
        && !ngx_exiting && !ngx_terminate)
    {
        ngx_http_taurus_guard_syslog_connect(sl);
    }
}


/*
 * A socket closed with bytes it has not read is reset (RFC 2525), and
 * the kernel throws away what it had yet to send: records counted as
 * sent would never reach the collector.  A TLS 1.3 collector sends its
 * session tickets after the handshake, and a worker that connects, sends
 * its queue and exits in one turn of the event loop never reads them.
 * What came is read and dropped first, a few reads at most.
 */

static void
ngx_http_taurus_guard_syslog_close(ngx_connection_t *c)
{
    u_char       buf[4096];
    ngx_uint_t   i;
    ngx_pool_t  *pool;

#if (NGX_SSL)
    if (c->ssl != NULL) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    for (i = 0; i < 16; i++) {
        if (recv(c->fd, buf, sizeof(buf), 0) <= 0) {
            break;
        }
    }

    pool = c->pool;

    ngx_close_connection(c);

    if (pool != NULL) {
        ngx_destroy_pool(pool);
    }
}
