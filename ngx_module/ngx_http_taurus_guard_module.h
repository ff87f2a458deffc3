
/*
 * taurus-guard: the nginx glue's shared types.
 *
 * Everything here is nginx plumbing around the plain C core in src/:
 * configuration, the precontent phase handler, body reading, headers,
 * the audit file and variables.
 */


#ifndef _NGX_HTTP_TAURUS_GUARD_MODULE_H_INCLUDED_
#define _NGX_HTTP_TAURUS_GUARD_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "tg_core.h"
#include "tg_allow.h"
#include "tg_audit.h"
#include "tg_batch.h"
#include "tg_cred.h"
#include "tg_iam.h"
#include "tg_sign.h"


#define NGX_HTTP_TG_ID_HEADER       "X-Taurus-Guard-Id"
#define NGX_HTTP_TG_TOKEN_MAX       65536
#define NGX_HTTP_TG_RECHECK         1         /* seconds between stat()s */
#define NGX_HTTP_TG_LOG_INTERVAL    60        /* seconds between alerts */


/* a secret file, re-read by each worker when it changes */
typedef struct {
    ngx_str_t                    path;
    u_char                      *conf_file;     /* where it was named */
    ngx_uint_t                   conf_line;

    /* per worker, after fork */
    time_t                       checked;
    time_t                       mtime;
    off_t                        fsize;
    ino_t                        ino;
    time_t                       error_logged;
} ngx_http_taurus_guard_watch_t;


typedef struct ngx_http_taurus_guard_iam_s  ngx_http_taurus_guard_iam_t;


/*
 * AK/SK from a profile file (watch.path), the environment (no path), or
 * the ECS metadata service (fetch)
 */
typedef struct {
    ngx_http_taurus_guard_iam_t *fetch;
    ngx_http_taurus_guard_watch_t  watch;
    u_char                      *data;      /* profile text, wiped */
    size_t                       size;
    tg_cred_t                    cred;      /* points into data */
    unsigned                     owned:1;   /* data is ngx_alloc()ed */
} ngx_http_taurus_guard_cred_t;


#define NGX_HTTP_TG_IAM_SLOTS       256       /* projects with a token */
#define NGX_HTTP_TG_IAM_POLL        100       /* ms between looks */
#define NGX_HTTP_TG_IAM_STALE       30        /* s: a fetch nobody ended */


/* one project's IAM token, shared by all workers */
typedef struct {
    u_char                       project[TG_PROJECT_ID_LEN];
    u_char                      *token;     /* in the slab pool */
    size_t                       len;
    time_t                       expires;
    time_t                       fetching;  /* since when; 0: nobody */
} ngx_http_taurus_guard_iam_slot_t;


typedef struct {
    ngx_uint_t                   nslots;
    ngx_http_taurus_guard_iam_slot_t  slots[NGX_HTTP_TG_IAM_SLOTS];
} ngx_http_taurus_guard_iam_sh_t;


#define NGX_HTTP_TG_FETCH_IAM       0         /* X-Subject-Token */
#define NGX_HTTP_TG_FETCH_METADATA  1         /* temporary AK/SK */
#define NGX_HTTP_TG_FETCH_SESSION   2         /* a metadata session token */

/* what one request has fetched already (ctx->fetch_tried) */
#define NGX_HTTP_TG_TRIED_SECRET    0x01
#define NGX_HTTP_TG_TRIED_BASE      0x02

/* how often a request asks for a secret that has a base token */
#define NGX_HTTP_TG_FETCH_ASKS      3


/*
 * A secret the gateway fetches itself through a subrequest: an IAM token
 * ("taurus_guard_token iam=URI password_file=PATH [agency=NAME
 * agency_domain=NAME] [refresh=TIME]") or the ECS metadata service's
 * temporary credentials ("taurus_guard_credentials metadata=URI
 * [session=URI [session_ttl=TIME]] [refresh=TIME]").
 *
 * Some are asked with another token, their base: an agency token with
 * the delegated user's own (domain-scoped) token in X-Auth-Token, the
 * metadata credentials with a session token in X-Metadata-Token.  The
 * base is a fetched secret of its own, kept under one key.
 */
struct ngx_http_taurus_guard_iam_s {
    ngx_uint_t                   kind;
    ngx_str_t                    uri;       /* the internal location */
    time_t                       refresh;
    time_t                       margin;    /* too close to the end */
    time_t                       ttl;       /* a session token's, asked */
    ngx_str_t                    agency;    /* assume_role: its name */
    ngx_str_t                    agency_domain;  /* and its account */
    ngx_http_taurus_guard_iam_t *base;      /* asked with its token */
    ngx_str_t                    base_header;    /* which carries it */
    ngx_http_taurus_guard_watch_t  watch;   /* the password file */
    u_char                      *data;      /* its text, wiped */
    size_t                       size;
    tg_iam_cred_t                cred;      /* points into data */
    unsigned                     owned:1;   /* data is ngx_alloc()ed */
    unsigned                     user:1;    /* scoped to the user's domain */
    ngx_shm_zone_t              *zone;      /* shared by every user */
};


typedef struct {
    ngx_http_taurus_guard_watch_t  watch;
    ngx_str_t                    value;     /* ngx_alloc()ed, wiped */
    ngx_http_taurus_guard_iam_t *iam;       /* or fetched from IAM */
    ngx_http_complex_value_t    *path_cv;   /* or one file per project */
    ngx_array_t                  files;     /* of token_t, per worker */
} ngx_http_taurus_guard_token_t;


/* what all workers share about one audit file */
typedef struct {
    u_char                       last[TG_SHA256_HEX_LEN + 1]; /* chain */
    ngx_uint_t                   records;
} ngx_http_taurus_guard_audit_sh_t;


#define NGX_HTTP_TG_AUDIT_FDS        4


/* a group flush in a thread: the descriptors it syncs, and the result */
typedef struct {
    ngx_fd_t                     fds[NGX_HTTP_TG_AUDIT_FDS];
    ngx_uint_t                   nfds;
    ngx_err_t                    err;
} ngx_http_taurus_guard_audit_task_t;


typedef struct {
    ngx_open_file_t             *file;
    ngx_flag_t                   fsync;
    ngx_shm_zone_t              *zone;
    ngx_slab_pool_t             *shpool;
    ngx_http_taurus_guard_audit_sh_t  *sh;

    /* per worker, after fork */
    time_t                       error_logged;

#if (NGX_THREADS)
    ngx_thread_pool_t           *thread_pool;
    ngx_thread_task_t           *task;
    ngx_uint_t                   busy;      /* a flush is in flight */
    ngx_queue_t                  pending;   /* written, for the next flush */
    ngx_queue_t                  syncing;   /* waiting for this flush */
    ngx_fd_t                     pending_fds[NGX_HTTP_TG_AUDIT_FDS];
    ngx_file_uniq_t              pending_ino[NGX_HTTP_TG_AUDIT_FDS];
    dev_t                        pending_dev[NGX_HTTP_TG_AUDIT_FDS];
    ngx_uint_t                   npending;
    ngx_file_uniq_t              written_ino;   /* the file last written */
    dev_t                        written_dev;
#endif
} ngx_http_taurus_guard_audit_t;


/* the central collector, one TCP connection per worker */
typedef struct {
    ngx_addr_t                   addr;
    ngx_uint_t                   facility;
    ngx_str_t                    tag;
    size_t                       queue_max;
#if (NGX_SSL)
    ngx_ssl_t                   *ssl;       /* TLS, verified, or NULL */
    ngx_str_t                    ssl_name;  /* the name to verify */
    u_char                      *ssl_name_z;    /* the same, for SNI */
#endif

    /* per worker, after fork */
    ngx_peer_connection_t        pc;
    ngx_event_t                  retry;
    u_char                      *queue;     /* whole "LEN MSG" frames */
    size_t                       qlen;
    size_t                       sent;      /* of them, on this connection */
    ngx_uint_t                   dropped;
    time_t                       drop_logged;
    time_t                       error_logged;
    unsigned                     connecting:1;
    unsigned                     connected:1;
} ngx_http_taurus_guard_syslog_t;


/* per-project policy (ngx_http_taurus_guard_policy.c) */
typedef struct ngx_http_taurus_guard_policy_s  ngx_http_taurus_guard_policy_t;


/* what a batch holds of the policy's shared state until it ends */
typedef struct {
    ngx_http_taurus_guard_policy_t  *policy;
    uint32_t                     serial;    /* its quota entry */
    unsigned                     quota:1;   /* it holds quota */
    unsigned                     inflight:1;    /* it marked instances */
} ngx_http_taurus_guard_policy_ticket_t;


/* why a policy would refuse a batch */
typedef struct {
    ngx_uint_t                   status;    /* 403, 409, 429 or 503 */
    ngx_str_t                    reason;
    time_t                       retry_after;   /* seconds; 0: none */
} ngx_http_taurus_guard_verdict_t;


typedef struct {
    tg_allow_t                  *allow;
    ngx_array_t                  policies;  /* of policy_t, sorted */
    ngx_http_taurus_guard_policy_t  *policy_default;
    ngx_shm_zone_t              *policy_zone;
    size_t                       policy_zone_size;
    ngx_http_taurus_guard_syslog_t  *syslog;
    char                         policy[TG_SHA256_HEX_LEN + 1];
    ngx_array_t                  creds;     /* of cred_t * */
    ngx_array_t                  tokens;    /* of token_t * */
    ngx_array_t                  audits;    /* of audit_t * */
} ngx_http_taurus_guard_main_conf_t;


#define NGX_HTTP_TG_MODE_ENFORCE    0
#define NGX_HTTP_TG_MODE_REPORT     1


typedef struct {
    ngx_flag_t                   enable;
    ngx_uint_t                   mode;      /* enforce or report */
    ngx_array_t                 *pass_headers;  /* of ngx_str_t, lower */
    ngx_http_taurus_guard_cred_t  *cred;
    ngx_http_taurus_guard_token_t *token;
    ngx_http_taurus_guard_audit_t *audit;
    ngx_http_complex_value_t    *audit_user;
    ngx_uint_t                   max_batch;
    size_t                       max_body_size;

    u_char                      *enable_file;   /* where "on" was set */
    ngx_uint_t                   enable_line;
} ngx_http_taurus_guard_loc_conf_t;


typedef enum {
    NGX_HTTP_TG_UNDECIDED = -1
} ngx_http_taurus_guard_undecided_e;


typedef struct {
    ngx_int_t                    phase_rc;  /* what a re-entry returns */
    ngx_int_t                    decision;  /* tg_decision_t or UNDECIDED */
    ngx_http_taurus_guard_audit_t  *audit;
    ngx_str_t                    reason;
    ngx_str_t                    project_id;
    ngx_uint_t                   status;    /* the gateway's answer */
    ngx_msec_t                   start;
    ngx_str_t                    body;      /* canonical, to forward */
    tg_batch_t                  *batch;     /* what was validated */
    ngx_array_t                 *denied;    /* would_deny: of tg_str_t */
    ngx_http_taurus_guard_policy_ticket_t  ticket;
    ngx_str_t                    token;     /* an IAM token to inject */
    ngx_http_taurus_guard_iam_t *iam;       /* where it came from */
    ngx_str_t                    cred_text; /* fetched AK/SK, a profile */
    tg_cred_t                    cred;      /* points into cred_text */
    ngx_http_taurus_guard_iam_t *fetch_src; /* what is being fetched */
    u_char                      *fetch_key;
    ngx_str_t                   *fetch_out;
    ngx_str_t                    fetch_base; /* the base token in hand */
    ngx_http_taurus_guard_iam_t *fetch_stage; /* what these are of: */
    ngx_uint_t                   fetch_tried;
    ngx_uint_t                   fetch_asks;
    ngx_event_t                  iam_wait;  /* for another's fetch */
    time_t                       iam_deadline;
    ngx_str_t                    user;
    ngx_http_request_t          *request;
    ngx_queue_t                  queue;     /* waiting for a flush */
    ngx_http_event_handler_pt    resume;    /* after the flush */
    u_char                       id[TG_AUDIT_ID_LEN + 1];
    char                         hash[TG_SHA256_HEX_LEN + 1];

    unsigned                     started:1;
    unsigned                     iam_pending:1;
    unsigned                     iam_fetch:1;   /* ctx of a fetch */
    unsigned                     forwarded:1;
    unsigned                     sync_failed:1;
    unsigned                     would_deny:1;  /* report mode */
} ngx_http_taurus_guard_ctx_t;


extern ngx_module_t  ngx_http_taurus_guard_module;


/* ngx_http_taurus_guard_allow.c */
char *ngx_http_taurus_guard_allow_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_taurus_guard_allow_init(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf);

/* ngx_http_taurus_guard_audit.c */
char *ngx_http_taurus_guard_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_taurus_guard_audit(ngx_http_request_t *r,
    ngx_http_taurus_guard_audit_t *audit, tg_audit_record_t *rec,
    ngx_flag_t durable);

/* ngx_http_taurus_guard_syslog.c */
char *ngx_http_taurus_guard_syslog(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_taurus_guard_syslog_send(ngx_http_taurus_guard_syslog_t *sl,
    tg_audit_record_t *rec, u_char *line, size_t len);

/* ngx_http_taurus_guard_cred.c */
char *ngx_http_taurus_guard_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_taurus_guard_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_taurus_guard_check_owners(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_main_conf_t *mcf);
u_char *ngx_http_taurus_guard_read_private(ngx_conf_t *cf,
    ngx_http_taurus_guard_watch_t *watch, size_t max, size_t *size);
ngx_int_t ngx_http_taurus_guard_watch(ngx_log_t *log,
    ngx_http_taurus_guard_watch_t *watch, size_t max, u_char **data,
    size_t *size, ngx_str_t *problem);
void ngx_http_taurus_guard_watch_error(ngx_log_t *log,
    ngx_http_taurus_guard_watch_t *watch, ngx_uint_t level, ngx_err_t err,
    ngx_str_t *problem, const char *outcome);
ngx_int_t ngx_http_taurus_guard_secret_copy(ngx_pool_t *pool,
    const u_char *data, size_t len, ngx_str_t *out);
u_char *ngx_http_taurus_guard_secret_alloc(ngx_pool_t *pool, size_t len);
tg_cred_t *ngx_http_taurus_guard_cred_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_cred_t *cred);
ngx_str_t *ngx_http_taurus_guard_token_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token);
ngx_http_taurus_guard_token_t *ngx_http_taurus_guard_token_file(
    ngx_http_request_t *r, ngx_http_taurus_guard_token_t *token);

/* ngx_http_taurus_guard_iam.c */
char *ngx_http_taurus_guard_iam_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_str_t *value, ngx_uint_t n);
char *ngx_http_taurus_guard_metadata_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred, ngx_str_t *value, ngx_uint_t n);
ngx_int_t ngx_http_taurus_guard_fetch_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_iam_t *iam, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out);
void ngx_http_taurus_guard_iam_refused(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);

/* ngx_http_taurus_guard_policy.c */
char *ngx_http_taurus_guard_policy(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_taurus_guard_policy_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_taurus_guard_policy_init(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf);
ngx_http_taurus_guard_policy_t *ngx_http_taurus_guard_policy_find(
    ngx_http_taurus_guard_main_conf_t *mcf, u_char *project);
ngx_int_t ngx_http_taurus_guard_policy_check(ngx_http_request_t *r,
    ngx_http_taurus_guard_policy_t *p, ngx_str_t *project, tg_batch_t *batch,
    u_char *id, ngx_flag_t take_anyway,
    ngx_http_taurus_guard_policy_ticket_t *ticket,
    ngx_http_taurus_guard_verdict_t *v);
void ngx_http_taurus_guard_policy_end(ngx_http_request_t *r,
    ngx_http_taurus_guard_policy_ticket_t *ticket, ngx_str_t *project,
    tg_batch_t *batch, u_char *id, ngx_flag_t forwarded, ngx_uint_t status);

/* ngx_http_taurus_guard_sign.c */
char *ngx_http_taurus_guard_pass_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_taurus_guard_sign(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_str_t *reason);

/* ngx_http_taurus_guard_handler.c */
ngx_int_t ngx_http_taurus_guard_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_taurus_guard_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_taurus_guard_log_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TAURUS_GUARD_MODULE_H_INCLUDED_ */
