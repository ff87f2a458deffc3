
/*
 * taurus-guard: the "taurus_guard_allow { ... }" block, parsed like
 * "map": every line is "project_id instance_id ...;" or "include glob;",
 * and a malformed or repeated entry fails "nginx -t" at its file:line.
 *
 * Included files are read here, not by nginx's configuration parser,
 * which keeps a copy of every word in the cycle's pool for as long as
 * the configuration lives (and, built with debugging, a copy of the
 * file too): for a million IDs that is 40 MB or more in every worker,
 * and most of "nginx -t"'s time.  The core parses the text straight into
 * the table (tg_allow_parse()); the text is freed at once.
 */


#include "ngx_http_taurus_guard_module.h"


/* includes within includes, as deep as any sane layout goes */
#define NGX_HTTP_TG_ALLOW_DEPTH  8


static char *ngx_http_taurus_guard_allow_entry(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_taurus_guard_allow_include(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf, ngx_str_t *name,
    ngx_uint_t depth);
static char *ngx_http_taurus_guard_allow_file(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf, ngx_str_t *file,
    ngx_uint_t depth);
static ngx_int_t ngx_http_taurus_guard_allow_read(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *text);
static void ngx_http_taurus_guard_allow_dump(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *text);
static void ngx_http_taurus_guard_allow_error(ngx_conf_t *cf, tg_rc_t rc,
    ngx_str_t *project, ngx_str_t *token, const char *what);
static void ngx_http_taurus_guard_allow_cleanup(void *data);


char *
ngx_http_taurus_guard_allow_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    char                *rv;
    ngx_conf_t           save;
    ngx_pool_cleanup_t  *cln;

    if (mcf->allow == NULL) {
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        mcf->allow = tg_allow_create(0);
        if (mcf->allow == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_taurus_guard_allow_cleanup;
        cln->data = mcf->allow;
    }

    save = *cf;
    cf->handler = ngx_http_taurus_guard_allow_entry;
    cf->handler_conf = conf;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    return rv;
}


static char *
ngx_http_taurus_guard_allow_entry(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    tg_rc_t      rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[0].data, "include") == 0)
    {
        return ngx_http_taurus_guard_allow_include(cf, mcf, &value[1], 0);
    }

    if (tg_project_id_check(value[0].data, value[0].len) != TG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: malformed project ID \"%V\""
                           " (32 letters or digits expected)", &value[0]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: project \"%V\" lists no"
                           " instance", &value[0]);
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        rc = tg_allow_add(mcf->allow, value[0].data, value[0].len,
                          value[i].data, value[i].len);

        if (rc == TG_OK) {
            /* nginx's parser keeps no word's own line: the statement's */
            rc = tg_allow_note(mcf->allow, value[0].data, value[i].data,
                               value[i].len, cf->conf_file->file.name.data,
                               cf->conf_file->line);
        }

        if (rc != TG_OK) {
            ngx_http_taurus_guard_allow_error(cf, rc, &value[0], &value[i],
                                              NULL);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* "include glob;" as ngx_conf_include() takes it, read by us */

static char *
ngx_http_taurus_guard_allow_include(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf, ngx_str_t *name,
    ngx_uint_t depth)
{
    char        *rv;
    ngx_int_t    n;
    ngx_str_t    file, found;
    ngx_glob_t   gl;

    if (depth >= NGX_HTTP_TG_ALLOW_DEPTH) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: includes nested deeper"
                           " than %d", NGX_HTTP_TG_ALLOW_DEPTH);
        return NGX_CONF_ERROR;
    }

    file = *name;

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (strpbrk((char *) file.data, "*?[") == NULL) {
        return ngx_http_taurus_guard_allow_file(cf, mcf, &file, depth);
    }

    ngx_memzero(&gl, sizeof(ngx_glob_t));

    gl.pattern = file.data;
    gl.log = cf->log;
    gl.test = 1;

    if (ngx_open_glob(&gl) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_glob_n " \"%s\" failed", file.data);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_OK;

    for ( ;; ) {
        n = ngx_read_glob(&gl, &found);

        if (n != NGX_OK) {
            break;
        }

        /* the name outlives the parse: an instance noted points at it */

        file.len = found.len++;
        file.data = ngx_pstrdup(cf->pool, &found);
        if (file.data == NULL) {
            rv = NGX_CONF_ERROR;
            break;
        }

        rv = ngx_http_taurus_guard_allow_file(cf, mcf, &file, depth);

        if (rv != NGX_CONF_OK) {
            break;
        }
    }

    ngx_close_glob(&gl);

    return rv;
}


/*
 * One included file: read whole, parsed into the table, freed.  Errors
 * name the file and line as ngx_conf_log_error() does for nginx's own.
 */

static char *
ngx_http_taurus_guard_allow_file(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf, ngx_str_t *file,
    ngx_uint_t depth)
{
    char              *rv;
    tg_rc_t            rc;
    ngx_str_t          text, inc, project, token;
    ngx_conf_file_t    here, *saved;
    tg_allow_parse_t   ps;

    if (ngx_http_taurus_guard_allow_read(cf, file, &text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_http_taurus_guard_allow_dump(cf, file, &text);

    /*
     * Room for the IDs at once, rather than doubling as they come: a
     * TaurusDB instance ID and its separator take 37 bytes.
     */
    if (tg_allow_reserve(mcf->allow, text.len / 37, text.len + text.len / 6)
        != TG_OK)
    {
        ngx_free(text.data);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ps, sizeof(tg_allow_parse_t));
    ps.text = text.data;
    ps.len = text.len;
    ps.where = file->data;

    rv = NGX_CONF_OK;

    saved = cf->conf_file;
    ngx_memzero(&here, sizeof(ngx_conf_file_t));
    here.file.name = *file;

    for ( ;; ) {
        rc = tg_allow_parse(mcf->allow, &ps);

        if (rc != TG_OK) {
            here.line = ps.line;
            cf->conf_file = &here;

            project.data = (u_char *) ps.project.data;
            project.len = ps.project.len;
            token.data = (u_char *) ps.token.data;
            token.len = ps.token.len;

            ngx_http_taurus_guard_allow_error(cf, rc, &project, &token,
                                              ps.what);

            cf->conf_file = saved;
            rv = NGX_CONF_ERROR;
            break;
        }

        if (ps.include.data != NULL) {
            /* in cf->pool: the file named may be noted (see above) */

            inc.len = ps.include.len;
            inc.data = ngx_pnalloc(cf->pool, inc.len + 1);
            if (inc.data == NULL) {
                rv = NGX_CONF_ERROR;
                break;
            }

            ngx_memcpy(inc.data, ps.include.data, inc.len);
            inc.data[inc.len] = '\0';

            here.line = ps.line;
            cf->conf_file = &here;
            rv = ngx_http_taurus_guard_allow_include(cf, mcf, &inc,
                                                     depth + 1);
            cf->conf_file = saved;

            if (rv != NGX_CONF_OK) {
                break;
            }

            continue;
        }

        if (ps.pos >= ps.len) {
            break;
        }
    }

    ngx_free(text.data);

    return rv;
}


static ngx_int_t
ngx_http_taurus_guard_allow_read(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *text)
{
    size_t           size, got;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    /* O_NONBLOCK: a FIFO put at the path must not stall nginx -t */

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", file->data);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", file->data);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    /* a FIFO or a device would read as an empty list, or never end */

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is not a regular file", file->data);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    size = (size_t) ngx_file_size(&fi);

    text->data = ngx_alloc(size ? size : 1, cf->log);
    if (text->data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    /* read() faults the pages in: 2 MB ones where the system has them */
    tg_allow_huge_hint(text->data, size);

    for (got = 0; got < size; got += n) {
        n = ngx_read_fd(fd, text->data + got, size - got);

        if (n == -1 || n == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, (n == -1) ? ngx_errno : 0,
                               ngx_read_fd_n " \"%s\" failed%s", file->data,
                               (n == 0) ? ": the file shrank" : "");
            ngx_free(text->data);
            (void) ngx_close_file(fd);
            return NGX_ERROR;
        }
    }

    (void) ngx_close_file(fd);

    text->len = size;

    return NGX_OK;
}


/* "nginx -T" shows an included allow-list as it shows any included file */

static void
ngx_http_taurus_guard_allow_dump(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *text)
{
    ngx_buf_t        *b;
    ngx_conf_dump_t  *cd;

    if (!ngx_dump_config) {
        return;
    }

    cd = ngx_array_push(&cf->cycle->config_dump);
    if (cd == NULL) {
        return;
    }

    b = ngx_create_temp_buf(cf->cycle->pool, text->len ? text->len : 1);
    if (b == NULL) {
        cd->name.len = 0;
        cd->name.data = NULL;
        cd->buffer = NULL;
        cf->cycle->config_dump.nelts--;
        return;
    }

    b->last = ngx_cpymem(b->pos, text->data, text->len);

    cd->name.len = file->len;
    cd->name.data = ngx_pstrdup(cf->cycle->pool, file);
    cd->buffer = b;

    if (cd->name.data == NULL) {
        cf->cycle->config_dump.nelts--;
    }
}


static void
ngx_http_taurus_guard_allow_error(ngx_conf_t *cf, tg_rc_t rc,
    ngx_str_t *project, ngx_str_t *token, const char *what)
{
    switch (rc) {

    case TG_ERR_BAD_PROJECT_ID:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: malformed project ID \"%V\""
                           " (32 letters or digits expected)", token);
        return;

    case TG_ERR_BAD_INSTANCE_ID:
        if (token->len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "taurus_guard_allow: project \"%V\" lists no"
                               " instance", project);
            return;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: malformed instance ID"
                           " \"%V\" (32 to 64 letters or digits"
                           " expected)", token);
        return;

    case TG_ERR_DUP_ENTRY:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: instance \"%V\" is"
                           " listed twice for project \"%V\"",
                           token, project);
        return;

    case TG_ERR_SYNTAX:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "taurus_guard_allow: %s",
                           what ? what : "syntax error");
        return;

    default:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard_allow: %s", tg_strerror(rc));
        return;
    }
}


ngx_int_t
ngx_http_taurus_guard_allow_init(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf)
{
    ngx_uint_t                       i;
    tg_allow_stray_t                 stray;
    ngx_http_taurus_guard_token_t  **tokens;

    if (mcf->allow == NULL) {
        /* no block at all: nothing is allowed, the digest is of nothing */

        if (tg_sha256_hex((u_char *) "", 0, mcf->policy) != TG_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    /*
     * Once every block and included file is read: the project an
     * instance names may be listed anywhere, before it or after.
     */

    if (tg_allow_stray(mcf->allow, &stray) != TG_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "taurus_guard_allow: instance \"%*s\" of project"
                      " \"%*s\" is a project ID of the allow-list: a"
                      " missing \";\"? in %s:%uz",
                      stray.instance.len, stray.instance.data,
                      stray.project.len, stray.project.data,
                      stray.where ? (char *) stray.where : "?", stray.line);
        return NGX_ERROR;
    }

    if (tg_allow_digest(mcf->allow, mcf->policy) != TG_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "taurus_guard_allow: could not compute the digest");
        return NGX_ERROR;
    }

    if (tg_allow_project_count(mcf->allow) < 2) {
        return NGX_OK;
    }

    /* an IAM token is scoped to one project: it cannot serve several */

    tokens = mcf->tokens.elts;

    for (i = 0; i < mcf->tokens.nelts; i++) {
        if (tokens[i]->fetch != NULL || tokens[i]->path_cv != NULL) {
            /* fetched per project, or a file per project */
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "taurus_guard_token \"%V\" serves every project, but"
                      " the allow-list names %uz projects and an IAM token"
                      " is scoped to one, in %s:%ui",
                      &tokens[i]->file.path,
                      tg_allow_project_count(mcf->allow),
                      tokens[i]->file.conf_file,
                      tokens[i]->file.conf_line);
    }

    return NGX_OK;
}


static void
ngx_http_taurus_guard_allow_cleanup(void *data)
{
    tg_allow_destroy(data);
}
