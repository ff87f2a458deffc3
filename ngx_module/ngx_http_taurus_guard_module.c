
/*
 * taurus-guard: directives, configuration, variables and phase
 * registration.
 */


#include "ngx_http_taurus_guard_module.h"


static ngx_int_t ngx_http_taurus_guard_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_taurus_guard_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_taurus_guard_rewrite_phase(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_precontent_phase(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_log_phase(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_taurus_guard_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_taurus_guard_recursive_413(ngx_conf_t *cf);
static ngx_int_t ngx_http_taurus_guard_var_indexes(ngx_conf_t *cf,
    ngx_str_t *names, ngx_uint_t n, ngx_int_t *index);
static void ngx_http_taurus_guard_no_forward(ngx_conf_t *cf,
    ngx_http_taurus_guard_loc_conf_t *conf,
    ngx_http_taurus_guard_loc_conf_t *prev);
static ngx_int_t ngx_http_taurus_guard_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_taurus_guard_init_process(ngx_cycle_t *cycle);
static void ngx_http_taurus_guard_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_taurus_guard_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_taurus_guard_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_taurus_guard_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_taurus_guard_enable(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_taurus_guard_mode(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_taurus_guard_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, ngx_str_t *reason);
static ngx_int_t ngx_http_taurus_guard_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_str_t ngx_http_taurus_guard_param_name(ngx_str_t *value);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_conf_num_bounds_t  ngx_http_taurus_guard_max_batch_bounds = {
    ngx_conf_check_num_bounds, 1, TG_BATCH_MAX_ITEMS
};


static ngx_conf_enum_t  ngx_http_taurus_guard_modes[] = {
    { ngx_string("enforce"), NGX_HTTP_TG_MODE_ENFORCE },
    { ngx_string("report"), NGX_HTTP_TG_MODE_REPORT },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_taurus_guard_commands[] = {

    { ngx_string("taurus_guard"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_taurus_guard_enable,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_taurus_guard_loc_conf_t, enable),
      NULL },

    { ngx_string("taurus_guard_max_batch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_taurus_guard_loc_conf_t, max_batch),
      &ngx_http_taurus_guard_max_batch_bounds },

    { ngx_string("taurus_guard_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_taurus_guard_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("taurus_guard_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_taurus_guard_credentials,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_taurus_guard_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_audit_log"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_taurus_guard_audit_log,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_audit_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_taurus_guard_loc_conf_t, audit_user),
      NULL },

    { ngx_string("taurus_guard_audit_syslog"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_taurus_guard_syslog,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_allow"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_NOARGS,
      ngx_http_taurus_guard_allow_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_taurus_guard_status,
      0,
      0,
      NULL },

    { ngx_string("taurus_guard_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_taurus_guard_status,
      0,
      0,
      (void *) 1 },

    { ngx_string("taurus_guard_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_taurus_guard_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_taurus_guard_loc_conf_t, mode),
      &ngx_http_taurus_guard_modes },

    { ngx_string("taurus_guard_pass_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_taurus_guard_pass_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_policy"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_taurus_guard_policy,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("taurus_guard_policy_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_taurus_guard_policy_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_taurus_guard_module_ctx = {
    ngx_http_taurus_guard_add_variables,   /* preconfiguration */
    ngx_http_taurus_guard_init,            /* postconfiguration */

    ngx_http_taurus_guard_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_taurus_guard_create_loc_conf, /* create location configuration */
    ngx_http_taurus_guard_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_taurus_guard_module = {
    NGX_MODULE_V1,
    &ngx_http_taurus_guard_module_ctx,     /* module context */
    ngx_http_taurus_guard_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_taurus_guard_init_module,     /* init module */
    ngx_http_taurus_guard_init_process,    /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_taurus_guard_exit_process,    /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


enum {
    NGX_HTTP_TG_VAR_DECISION = 0,
    NGX_HTTP_TG_VAR_REASON,
    NGX_HTTP_TG_VAR_ID,
    NGX_HTTP_TG_VAR_PROJECT
};


static ngx_http_variable_t  ngx_http_taurus_guard_vars[] = {

    { ngx_string("taurus_guard_decision"), NULL,
      ngx_http_taurus_guard_variable, NGX_HTTP_TG_VAR_DECISION,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("taurus_guard_reason"), NULL,
      ngx_http_taurus_guard_variable, NGX_HTTP_TG_VAR_REASON,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("taurus_guard_id"), NULL,
      ngx_http_taurus_guard_variable, NGX_HTTP_TG_VAR_ID,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("taurus_guard_project"), NULL,
      ngx_http_taurus_guard_variable, NGX_HTTP_TG_VAR_PROJECT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_taurus_guard_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_taurus_guard_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * A reason may quote the caller (an unknown key, an instance denied):
 * the JSON answer and the record escape it, but the variable may go to
 * a header (add_header) or a log format with "escape=none".  Control
 * bytes, bytes from 0x7f up, '"' and '\\' are written as nginx's log
 * escaping writes them, \xNN: a key may decode to C1 controls, U+2028
 * or U+2029, which readers take for line breaks.  A reason without them
 * is used as it is.
 */

static ngx_int_t
ngx_http_taurus_guard_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, ngx_str_t *reason)
{
    u_char      c, *p, *src, *last;
    ngx_uint_t  n;

    static u_char  hex[] = "0123456789ABCDEF";

    src = reason->data;
    last = src + reason->len;
    n = 0;

    for (p = src; p < last; p++) {
        c = *p;
        n += (c < 0x20 || c >= 0x7f || c == '"' || c == '\\');
    }

    if (n == 0) {
        v->data = src;
        v->len = reason->len;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, reason->len + 3 * n);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    p = v->data;

    while (src < last) {
        c = *src++;

        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    v->len = p - v->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char                   *name;
    ngx_http_taurus_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    switch (data) {

    case NGX_HTTP_TG_VAR_DECISION:
        if (ctx->decision == NGX_HTTP_TG_UNDECIDED) {
            v->not_found = 1;
            return NGX_OK;
        }

        name = tg_decision_name((tg_decision_t) ctx->decision);
        v->data = (u_char *) name;
        v->len = ngx_strlen(name);
        break;

    case NGX_HTTP_TG_VAR_REASON:
        return ngx_http_taurus_guard_reason_variable(r, v, &ctx->reason);

    case NGX_HTTP_TG_VAR_PROJECT:
        /* 32 letters or digits from the checked route, or nothing */
        if (ctx->project_id.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->project_id.data;
        v->len = ctx->project_id.len;
        break;

    default: /* NGX_HTTP_TG_VAR_ID */
        v->data = ctx->id;
        v->len = TG_AUDIT_ID_LEN;
        break;
    }

    return NGX_OK;
}


static void *
ngx_http_taurus_guard_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_taurus_guard_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->allow = NULL;
     *     mcf->policy = { 0 };
     */

    if (ngx_array_init(&mcf->files, cf->pool, 2,
                       sizeof(ngx_http_taurus_guard_secret_file_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&mcf->tokens, cf->pool, 2,
                       sizeof(ngx_http_taurus_guard_token_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&mcf->audits, cf->pool, 2,
                       sizeof(ngx_http_taurus_guard_audit_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&mcf->fetches, cf->pool, 2,
                       sizeof(ngx_http_taurus_guard_fetch_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return mcf;
}


static void *
ngx_http_taurus_guard_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_taurus_guard_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->guard = 0;
     *     conf->enable_file = NULL;
     *     conf->enable_line = 0;
     *     conf->status_file = NULL;
     *     conf->status_line = 0;
     *     conf->status = 0;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->mode = NGX_CONF_UNSET_UINT;
    conf->pass_headers = NGX_CONF_UNSET_PTR;
    conf->cred = NGX_CONF_UNSET_PTR;
    conf->token = NGX_CONF_UNSET_PTR;
    conf->audit = NGX_CONF_UNSET_PTR;
    conf->audit_user = NGX_CONF_UNSET_PTR;
    conf->max_batch = NGX_CONF_UNSET_UINT;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_http_taurus_guard_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_taurus_guard_loc_conf_t *prev = parent;
    ngx_http_taurus_guard_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->mode, prev->mode,
                              NGX_HTTP_TG_MODE_ENFORCE);
    ngx_conf_merge_ptr_value(conf->pass_headers, prev->pass_headers, NULL);
    ngx_conf_merge_ptr_value(conf->cred, prev->cred, NULL);
    ngx_conf_merge_ptr_value(conf->token, prev->token, NULL);
    ngx_conf_merge_ptr_value(conf->audit, prev->audit, NULL);
    ngx_conf_merge_ptr_value(conf->audit_user, prev->audit_user, NULL);
    ngx_conf_merge_uint_value(conf->max_batch, prev->max_batch, 100);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              1024 * 1024);

    if (conf->enable_file == NULL) {
        conf->enable_file = prev->enable_file;
        conf->enable_line = prev->enable_line;
    }

    /*
     * An "if" block of a status page's location that sets no content
     * handler of its own still answers with the page: it is that
     * location's, and unguarded the same.  One with a proxy_pass cannot
     * be guarded from the rewrite phase on, as a location is (status.c).
     */

    if (!conf->status && prev->status) {

        switch (ngx_http_taurus_guard_status_block(cf)) {

        case NGX_OK:
            conf->status = 1;
            conf->status_file = prev->status_file;
            conf->status_line = prev->status_line;
            break;

        case NGX_ERROR:
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "an \"if\" block with another content handler"
                          " (\"proxy_pass\" or the like) in the location"
                          " of \"taurus_guard_metrics\" or"
                          " \"taurus_guard_health\" in %s:%ui; proxy in"
                          " a location of its own",
                          prev->status_file, prev->status_line);
            return NGX_CONF_ERROR;

        default: /* NGX_DECLINED */
            break;
        }
    }

    /*
     * A status page's location is kept unguarded below: it must answer
     * with the page, not with a proxy_pass set after the page's
     * directive, which would forward batches there unchecked.
     */

    if (conf->status && !ngx_http_taurus_guard_status_kept(cf)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"taurus_guard_metrics\" or \"taurus_guard_health\""
                      " in %s:%ui, and another content handler"
                      " (\"proxy_pass\" or the like) in its location",
                      conf->status_file, conf->status_line);
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    /*
     * A status page (taurus_guard_metrics, taurus_guard_health) is the
     * gateway's own, never a guarded request: "taurus_guard on" from the
     * server or http level stops at it, and still reaches the locations
     * nested in it.  Set in the location itself, it is a mistake.
     */

    if (conf->status) {
        if (conf->enable_file != prev->enable_file
            || conf->enable_line != prev->enable_line)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"taurus_guard on\" in a location of"
                          " \"taurus_guard_metrics\" or"
                          " \"taurus_guard_health\", in %s:%ui",
                          conf->enable_file, conf->enable_line);
            return NGX_CONF_ERROR;
        }

    } else {
        conf->guard = 1;
        ngx_http_taurus_guard_no_forward(cf, conf, prev);
    }

    /*
     * Cross-directive rules: the line reported is the one that turned
     * the guard on, since the mistake is there or in what it inherits.
     */

    if (conf->cred == NULL && conf->token == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"taurus_guard on\" needs \"taurus_guard_credentials\""
                      " or \"taurus_guard_token\", or both, in %s:%ui",
                      conf->enable_file, conf->enable_line);
        return NGX_CONF_ERROR;
    }

    if (conf->audit == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"taurus_guard on\" needs \"taurus_guard_audit_log\""
                      " (\"off\" is not allowed where the guard is on)"
                      " in %s:%ui",
                      conf->enable_file, conf->enable_line);
        return NGX_CONF_ERROR;
    }

    if (conf->max_body_size == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"taurus_guard_max_body_size\" must not be 0"
                      " where \"taurus_guard\" is on, in %s:%ui",
                      conf->enable_file, conf->enable_line);
        return NGX_CONF_ERROR;
    }

    /*
     * nginx refuses a subrequest (a mirror's) whose Content-Length is over
     * this location's client_max_body_size while it picks the location,
     * before any module runs, and an "error_page 413" here sends it on
     * with its body.  The handler refuses it where it lands by the mark
     * nginx puts on a request its error page took, which
     * "recursive_error_pages on" leaves off.
     */

    if (conf->guard
        && ngx_http_taurus_guard_recursive_413(cf) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"recursive_error_pages on\" with an \"error_page"
                      " 413\" where \"taurus_guard\" is on: a subrequest"
                      " nginx refuses as too large would be sent on with"
                      " its body, unmarked; set it off there, in %s:%ui",
                      conf->enable_file, conf->enable_line);
        return NGX_CONF_ERROR;
    }

    /* the audit reads back any record a body this long makes */

    ngx_http_taurus_guard_audit_record_max(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module),
        conf->max_body_size);

    return NGX_CONF_OK;
}


/*
 * "taurus_guard on" in a location of its own with no content handler (no
 * proxy_pass): its batches would be checked, audited as allowed and
 * signed, then answered by nginx's static file handler.  Fail-safe, but
 * surely a mistake: a warning.  Not for a location that inherits the
 * guard from its server (only the API's path reaches the gateway's checks
 * there, and the operator sends it elsewhere), nor for one with locations
 * nested in it (one of them may proxy).
 */

static void
ngx_http_taurus_guard_no_forward(ngx_conf_t *cf,
    ngx_http_taurus_guard_loc_conf_t *conf,
    ngx_http_taurus_guard_loc_conf_t *prev)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL || clcf->noname || clcf->name.len == 0
        || clcf->locations != NULL
        || (conf->enable_file == prev->enable_file
            && conf->enable_line == prev->enable_line))
    {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                  "\"taurus_guard on\" in a location without \"proxy_pass\":"
                  " its allowed batches would be audited and signed, then"
                  " answered by nginx's static file handler, in %s:%ui",
                  conf->enable_file, conf->enable_line);
}


/*
 * NGX_DECLINED when the location being merged sends a 413 on with an
 * error_page and "recursive_error_pages on" (see the merge).
 */

static ngx_int_t
ngx_http_taurus_guard_recursive_413(ngx_conf_t *cf)
{
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (!clcf->recursive_error_pages || clcf->error_pages == NULL) {
        return NGX_OK;
    }

    err_page = clcf->error_pages->elts;

    for (i = 0; i < clcf->error_pages->nelts; i++) {
        if (err_page[i].status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * "report" turns the allow-list and the policies off where it applies,
 * and inherits into every location below: nginx -t says where it is set.
 */

static char *
ngx_http_taurus_guard_mode(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    char  *rv;

    rv = ngx_conf_set_enum_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK && lcf->mode == NGX_HTTP_TG_MODE_REPORT) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "taurus_guard_mode report: batches the"
                           " allow-list or a policy refuses are forwarded"
                           " here and below, recorded as \"would_deny\"");
    }

    return rv;
}


static char *
ngx_http_taurus_guard_enable(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_taurus_guard_loc_conf_t *lcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    lcf->enable_file = cf->conf_file->file.name.data;
    lcf->enable_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/*
 * Every directive's "name=value" parameters (and bare words, "ssl"):
 * value[i] must not repeat the name of one in value[first..i-1].  A
 * parameter given twice used to take its last value silently, and
 * "fsync=on fsync=off" ended without fsync.
 */

ngx_int_t
ngx_http_taurus_guard_param_once(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t first, ngx_uint_t i)
{
    ngx_str_t   name, prev;
    ngx_uint_t  k;

    name = ngx_http_taurus_guard_param_name(&value[i]);

    for (k = first; k < i; k++) {
        prev = ngx_http_taurus_guard_param_name(&value[k]);

        if (prev.len == name.len
            && ngx_strncmp(prev.data, name.data, name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%V\"", &name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* "fsync=off": "fsync=", the '=' kept; a word without one, whole */

static ngx_str_t
ngx_http_taurus_guard_param_name(ngx_str_t *value)
{
    u_char     *eq;
    ngx_str_t   name;

    name = *value;

    eq = ngx_strlchr(value->data, value->data + value->len, '=');

    if (eq != NULL) {
        name.len = eq + 1 - value->data;
    }

    return name;
}


static ngx_int_t
ngx_http_taurus_guard_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                *h;
    ngx_http_core_main_conf_t          *cmcf;
    ngx_http_taurus_guard_main_conf_t  *mcf;

    /*
     * A $http_* variable evaluated while the secrets are in headers_in
     * (proxy_set_header X-Copy $http_x_auth_token) keeps its value in
     * r->variables: the content handler wrapper forgets it again.
     */

    static ngx_str_t  secret_vars[NGX_HTTP_TG_SECRETS] = {
        ngx_string("http_authorization"),
        ngx_string("http_x_auth_token"),
        ngx_string("http_x_sdk_date"),
        ngx_string("http_x_security_token")
    };

    /* the body's length once the canonical body replaced it (request.c) */

    static ngx_str_t  length_var = ngx_string("content_length");

    /*
     * A fetch's subrequest shares r->variables with its parent: what it
     * carries (the IAM password request, a user or session token) is
     * forgotten there once it is over (ngx_http_taurus_guard_fetch.c).
     */

    static ngx_str_t  fetch_vars[NGX_HTTP_TG_FETCH_VARS] = {
        ngx_string("request_body"),
        ngx_string("http_x_auth_token"),
        ngx_string("http_x_metadata_token")
    };

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_taurus_guard_module);

    if (ngx_http_taurus_guard_allow_init(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_taurus_guard_metrics_zone(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_taurus_guard_var_indexes(cf, secret_vars, NGX_HTTP_TG_SECRETS,
                                          mcf->secret_vars) != NGX_OK
        || ngx_http_taurus_guard_var_indexes(cf, &length_var, 1,
                                             &mcf->length_var) != NGX_OK
        || ngx_http_taurus_guard_var_indexes(cf, fetch_vars,
                                             NGX_HTTP_TG_FETCH_VARS,
                                             mcf->fetch_vars) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_taurus_guard_policy_init(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_taurus_guard_sign_init() != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "taurus_guard: a header name too long");
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * The rewrite phase gives a guarded request its ctx before the access
     * checks can refuse it: a refusal sent on by error_page is then known.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_taurus_guard_rewrite_phase;

    /*
     * The precontent phase runs after access checks, so "satisfy any"
     * cannot skip it, and before the proxy's content handler.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_taurus_guard_precontent_phase;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_taurus_guard_log_phase;

    /*
     * Always, even in a configuration that fetches nothing: the filter
     * chain is the master's globals, and a reload that fails after this
     * leaves the failed configuration's chain to the workers the master
     * starts again for the running one.
     */

    if (ngx_http_taurus_guard_fetch_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_taurus_guard_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_taurus_guard_body_filter;

    return NGX_OK;
}


/*
 * What every request pays, guarded or not: nginx calls these hooks for
 * each request of every location.  A request that is in no guarded
 * location and that no guarded location handed on (an internal redirect,
 * a subrequest) is let go here after a flag and a pointer or two.  The
 * rest is the handlers' in their own files, called out of line, so that
 * this path sets up no stack frame; each handler still makes the same
 * checks first, these only skip the call.
 */

static ngx_int_t
ngx_http_taurus_guard_rewrite_phase(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (!lcf->guard
        && ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module) == NULL)
    {
        return NGX_DECLINED;
    }

    return ngx_http_taurus_guard_rewrite_handler(r);
}


static ngx_int_t
ngx_http_taurus_guard_precontent_phase(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if (!lcf->guard && !r->internal) {
        return NGX_DECLINED;
    }

    return ngx_http_taurus_guard_handler(r);
}


/* an internal redirect zeroes the ctx: the handlers look for it then */

static ngx_int_t
ngx_http_taurus_guard_log_phase(ngx_http_request_t *r)
{
    if (!r->internal
        && ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module) == NULL)
    {
        return NGX_OK;
    }

    return ngx_http_taurus_guard_log_handler(r);
}


static ngx_int_t
ngx_http_taurus_guard_header_filter(ngx_http_request_t *r)
{
    ngx_http_taurus_guard_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_taurus_guard_module);

    if ((lcf->guard || r->internal
         || ngx_http_get_module_ctx(r, ngx_http_taurus_guard_module) != NULL)
        && ngx_http_taurus_guard_response_headers(r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * nginx's own 413 page on a guarded location goes out as the gateway's
 * JSON refusal (ngx_http_taurus_guard_page_body(), refuse.c).  Any
 * other response goes on after one test of err_status.
 */

static ngx_int_t
ngx_http_taurus_guard_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    if (r->err_status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE && in != NULL) {
        in = ngx_http_taurus_guard_page_body(r, in);

        if (in == NULL) {
            return NGX_OK;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/* indexes of variables whose cached values the gateway forgets */

static ngx_int_t
ngx_http_taurus_guard_var_indexes(ngx_conf_t *cf, ngx_str_t *names,
    ngx_uint_t n, ngx_int_t *index)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        index[i] = ngx_http_get_variable_index(cf, &names[i]);

        if (index[i] == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_taurus_guard_init_module(ngx_cycle_t *cycle)
{
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_taurus_guard_module);
    if (mcf == NULL) {
        return NGX_OK;
    }

    /* all "env" directives are known only once the whole file is read */

    ngx_http_taurus_guard_credentials_env_check(cycle, mcf);

    return NGX_OK;
}


/*
 * The worker's name, for what it leaves in shared memory (the flush
 * lock, its slot of the syslog queue, the mark of a fetch), read once;
 * the slot is its own from now on.
 */

static ngx_int_t
ngx_http_taurus_guard_init_process(ngx_cycle_t *cycle)
{
    ngx_http_taurus_guard_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_taurus_guard_module);
    if (mcf == NULL) {
        return NGX_OK;
    }

    mcf->process = ngx_http_taurus_guard_process_name(ngx_pid);

    ngx_http_taurus_guard_metrics_process(cycle, mcf->process);

    return NGX_OK;
}


/*
 * The audit records a worker's last turn queued are not left behind, and
 * those it could not send to the collector are counted.
 */

static void
ngx_http_taurus_guard_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_taurus_guard_main_conf_t  *mcf;

    ngx_http_taurus_guard_audit_exit(cycle);

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_taurus_guard_module);

    if (mcf != NULL && mcf->syslog != NULL) {
        ngx_http_taurus_guard_syslog_exit(mcf->syslog);
    }
}
