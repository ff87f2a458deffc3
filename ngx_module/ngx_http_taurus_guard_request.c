
/*
 * taurus-guard: the request as it was sent, before its body is read
 * and after: the route checked on the raw target, Content-Type and
 * Content-Encoding, the body read whole (from memory or its temp file)
 * and replaced by the canonical one, and whether its client is still
 * there after a wait.
 */


#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_ROUTE_PREFIX  "/v3/"
#define NGX_HTTP_TG_ROUTE_SUFFIX  "/instances/database-version/upgrade"


/*
 * The route is checked on the request target exactly as sent: nginx
 * normalizes r->uri for matching but the proxy may forward the raw form,
 * so percent-encoding, dot segments, doubled or trailing slashes,
 * ";params", a query or an absolute-form target are all refused.
 */

ngx_int_t
ngx_http_taurus_guard_route(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason)
{
    u_char     *p;
    ngx_str_t  *u;

    u = &r->unparsed_uri;

    /*
     * The route checked must be the one forwarded, and the two forms
     * nginx keeps must agree.  After a rewrite, "set $args" or an
     * internal redirect the proxy sends r->uri, not what the caller sent
     * (and every rewrite marks the request internal).  Otherwise r->uri
     * differs from the target only where nginx decoded or normalized it:
     * a query, percent-encoding, dot segments, doubled slashes.
     */

    if (!r->valid_unparsed_uri
        || r->uri.len != u->len
        || ngx_strncmp(r->uri.data, u->data, u->len) != 0)
    {
        if (!r->valid_unparsed_uri || r->internal) {
            ngx_str_set(reason, "no such route: rewritten inside nginx");

        } else {
            ngx_str_set(reason, "no such route: the target is not plain"
                                " (a query, percent-encoding, dot segments"
                                " or doubled slashes)");
        }

        return NGX_HTTP_NOT_FOUND;
    }

    /*
     * An HTTP/1 request line in absolute form ("POST http://host/v3/...")
     * leaves its scheme and host there.  HTTP/2 has no such form (its
     * :path is parsed as a path), and since nginx 1.29.1 its :authority
     * is kept in r->host_start: every HTTP/2 request would look like one.
     */

    if (r->http_version < NGX_HTTP_VERSION_20
        && (r->schema_start != NULL || r->host_start != NULL))
    {
        ngx_str_set(reason, "absolute-form request target");
        return NGX_HTTP_NOT_FOUND;
    }

    if (u->len != sizeof(NGX_HTTP_TG_ROUTE_PREFIX) - 1 + TG_PROJECT_ID_LEN
                  + sizeof(NGX_HTTP_TG_ROUTE_SUFFIX) - 1)
    {
        ngx_str_set(reason, "no such route");
        return NGX_HTTP_NOT_FOUND;
    }

    p = u->data;

    if (ngx_strncmp(p, NGX_HTTP_TG_ROUTE_PREFIX,
                    sizeof(NGX_HTTP_TG_ROUTE_PREFIX) - 1) != 0)
    {
        ngx_str_set(reason, "no such route");
        return NGX_HTTP_NOT_FOUND;
    }

    p += sizeof(NGX_HTTP_TG_ROUTE_PREFIX) - 1;

    if (tg_project_id_check(p, TG_PROJECT_ID_LEN) != TG_OK) {
        ngx_str_set(reason, "no such route: malformed project ID");
        return NGX_HTTP_NOT_FOUND;
    }

    if (ngx_memcmp(p + TG_PROJECT_ID_LEN, NGX_HTTP_TG_ROUTE_SUFFIX,
                   sizeof(NGX_HTTP_TG_ROUTE_SUFFIX) - 1)
        != 0)
    {
        ngx_str_set(reason, "no such route");
        return NGX_HTTP_NOT_FOUND;
    }

    if (r->method != NGX_HTTP_POST) {
        /* a refused route: the record says what was asked instead */
        ngx_str_set(reason, "method not allowed");
        return NGX_HTTP_NOT_ALLOWED;
    }

    ctx->project_id.data = p;
    ctx->project_id.len = TG_PROJECT_ID_LEN;

    return NGX_OK;
}


/* "application/json", optionally "; charset=utf-8", sent exactly once */

ngx_int_t
ngx_http_taurus_guard_content_type(ngx_http_request_t *r)
{
    u_char           *p, *last;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("content-type") - 1
            && tg_caseless_eq(h[i].key.data, "content-type",
                              sizeof("content-type") - 1))
        {
            n++;
        }
    }

    if (n != 1 || r->headers_in.content_type == NULL) {
        return NGX_DECLINED;
    }

    p = r->headers_in.content_type->value.data;
    last = p + r->headers_in.content_type->value.len;

    if (last - p < (ssize_t) sizeof("application/json") - 1
        || !tg_caseless_eq(p, "application/json",
                           sizeof("application/json") - 1))
    {
        return NGX_DECLINED;
    }

    p += sizeof("application/json") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == last) {
        return NGX_OK;
    }

    if (*p++ != ';') {
        return NGX_DECLINED;
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if ((size_t) (last - p) == sizeof("charset=utf-8") - 1
        && tg_caseless_eq(p, "charset=utf-8", sizeof("charset=utf-8") - 1))
    {
        return NGX_OK;
    }

    if ((size_t) (last - p) == sizeof("charset=\"utf-8\"") - 1
        && tg_caseless_eq(p, "charset=\"utf-8\"",
                          sizeof("charset=\"utf-8\"") - 1))
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * The gateway reads the body as bytes: a body its sender declared
 * encoded (gzip, deflate, ...) would be read differently from how it
 * was sent, so only "identity", or no Content-Encoding, is accepted.
 */

ngx_int_t
ngx_http_taurus_guard_content_encoding(ngx_http_request_t *r)
{
    u_char           *p, *last;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("content-encoding") - 1
            || !tg_caseless_eq(h[i].key.data, "content-encoding",
                               sizeof("content-encoding") - 1))
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        if ((size_t) (last - p) != sizeof("identity") - 1
            || !tg_caseless_eq(p, "identity", sizeof("identity") - 1))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * The whole body in one buffer, from memory or from the temp file: a
 * body in a file is a body, never "no body".
 */

ngx_int_t
ngx_http_taurus_guard_read_body(ngx_http_request_t *r, ngx_str_t *raw)
{
    u_char                            *p;
    off_t                              total, size;
    ssize_t                            n;
    ngx_buf_t                         *b;
    ngx_chain_t                       *cl;
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    raw->data = NULL;
    raw->len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    total = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        total += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    /*
     * Over the gateway's own limit, nothing is copied: a chunked or
     * HTTP/2 body has no Content-Length for the early check, and
     * client_max_body_size may be large or off.
     */

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (total > (off_t) lcf->max_body_size
        || total > (off_t) NGX_MAX_SIZE_T_VALUE / 2)
    {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    raw->len = (size_t) total;

    if (raw->len == 0) {
        return NGX_OK;
    }

    /*
     * A body in one buffer in memory (the usual case) is read where it
     * lies: the validator only reads it, and nothing changes it before
     * the canonical body replaces it.  A copy of it would be one more
     * allocation of the body's size per batch, from malloc (it is over
     * a pool's small size), which is what makes a worker's heap grow
     * and shrink under load.
     */

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        raw->data = cl->buf->pos;
        return NGX_OK;
    }

    raw->data = ngx_pnalloc(r->pool, raw->len);
    if (raw->data == NULL) {
        return NGX_ERROR;
    }

    p = raw->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            size = b->file_last - b->file_pos;

            n = ngx_read_file(b->file, p, (size_t) size, b->file_pos);

            if (n != (ssize_t) size) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "taurus_guard: short read of the body from"
                              " \"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            p += size;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    return NGX_OK;
}


/*
 * The copy ngx_http_taurus_guard_read_body() made, if it made one, goes
 * back to malloc once the batch is parsed: it is dead from then on, and
 * a batch waiting for its flush or its upstream should not hold it.  A
 * body read in place is nginx's own buffer, never freed here.
 */

void
ngx_http_taurus_guard_release_body(ngx_http_request_t *r, ngx_str_t *raw)
{
    ngx_chain_t  *cl;

    if (raw->len == 0) {
        return;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        return;
    }

    (void) ngx_pfree(r->pool, raw->data);

    ngx_str_null(raw);
}


/*
 * The proxy sends r->request_body->bufs with r->headers_in.content_length_n
 * as Content-Length: both now describe the canonical body.  So does
 * $content_length (a "proxy_set_header Content-Length $content_length"),
 * which reads the caller's header first, and keeps a value read before:
 * the length of the bytes received, longer than the canonical body by
 * its white space and escapes, would frame a request the upstream waits
 * on for bytes that never come.
 */

ngx_int_t
ngx_http_taurus_guard_replace_body(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_buf_t                          *b;
    ngx_chain_t                        *cl;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->start = body->data;
    b->pos = body->data;
    b->last = body->data + body->len;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->headers_in.content_length_n = body->len;
    r->headers_in.content_length = NULL;
    r->headers_in.chunked = 0;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    ngx_http_taurus_guard_forget_vars(r, &mcf->length_var, 1);

    return NGX_OK;
}


/*
 * Whether the client went away while its request waited: HTTP/2 marks
 * the stream's connection on RST_STREAM, an HTTP/1 socket reads as
 * closed (the body is read whole, so what is left is a next request).
 */

ngx_int_t
ngx_http_taurus_guard_client_gone(ngx_http_request_t *r)
{
    u_char             buf;
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = r->connection;

    if (c->error) {
        return 1;
    }

#if (NGX_HTTP_V2)
    if (r->stream != NULL) {
        return 0;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)

    /*
     * With EPOLLRDHUP, nginx's recv() clears "ready" once it has read
     * the socket dry, and epoll sets it again (with "pending_eof" for a
     * close) when anything comes: a socket nothing came to since is open,
     * no need to ask the kernel.
     */

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup
        && c->read->active && !c->read->ready && !c->read->pending_eof)
    {
        return 0;
    }

#endif

    n = recv(c->fd, &buf, 1, MSG_PEEK);

    if (n > 0) {
        return 0;
    }

    if (n == 0) {
        return 1;
    }

    err = ngx_socket_errno;

    return (err == NGX_EAGAIN || err == NGX_EINTR) ? 0 : 1;
}
