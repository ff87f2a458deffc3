
/*
 * taurus-guard: what the nginx glue's files share, and only that: the
 * configuration, the request context, and each file's public
 * prototypes.  A struct one file uses lives in that file.
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
#define NGX_HTTP_TG_REQUEST_ID      "X-Request-Id"
#define NGX_HTTP_TG_DECISION_HEADER "X-Taurus-Guard-Decision"
#define NGX_HTTP_TG_LOG_INTERVAL    60        /* seconds between errors */
#define NGX_HTTP_TG_SECRETS         4         /* headers only upstream gets */
#define NGX_HTTP_TG_FETCH_VARS      3         /* what a fetch carries */
#define NGX_HTTP_TG_REENTRIES       8         /* named in the done record */
#define NGX_HTTP_TG_IDS             64        /* audit ids per RAND_bytes() */
#define NGX_HTTP_TG_SIGN_AGE        60        /* s: a signature signed again */
#define NGX_HTTP_TG_LOG_INTERVAL_MS (NGX_HTTP_TG_LOG_INTERVAL * 1000)


/*
 * A repeated error's line, at most once a minute (as ngx_http_log_module
 * does), not once a request.  Paced by the monotonic clock, which a wall
 * clock stepped back cannot hold silent.  Zeroed, the first is due.
 */
typedef struct {
    ngx_msec_t                   last;      /* monotonic */
    unsigned                     once:1;    /* last is set */
} ngx_http_taurus_guard_pace_t;


/* 1 when the line is due (and from now the next is a minute away) */
static ngx_inline ngx_uint_t
ngx_http_taurus_guard_pace(ngx_http_taurus_guard_pace_t *pace)
{
    if (pace->once
        && (ngx_msec_int_t) (ngx_current_msec - pace->last)
           < NGX_HTTP_TG_LOG_INTERVAL_MS)
    {
        return 0;
    }

    pace->once = 1;
    pace->last = ngx_current_msec;

    return 1;
}


typedef struct ngx_http_taurus_guard_secret_file_s
    ngx_http_taurus_guard_secret_file_t;

/*
 * Checks a new version of a secret file: NGX_OK keeps what it parsed
 * (pointing into text) where the file's user finds it; NGX_ERROR says
 * why not in problem (up to 128 bytes at problem->data, as
 * ngx_http_taurus_guard_secret_file_problem() writes it, or a string of
 * its own).
 */
typedef ngx_int_t (*ngx_http_taurus_guard_secret_parse_pt)(
    ngx_http_taurus_guard_secret_file_t *file, u_char *text, size_t size,
    ngx_str_t *problem);

/* a secret file, re-read by each worker when it changes */
struct ngx_http_taurus_guard_secret_file_s {
    ngx_str_t                    path;
    u_char                      *conf_file;     /* where it was named */
    ngx_uint_t                   conf_line;
    size_t                       max;
    ngx_http_taurus_guard_secret_parse_pt  parse;
    void                        *data;      /* for parse() */
    ngx_uint_t                   level;     /* of a bad version's line */
    ngx_uint_t                   source;    /* NGX_HTTP_TG_SOURCE_*, or
                                               NGX_HTTP_TG_SOURCES: none */
    const char                  *kept;      /* what that line says */

    u_char                      *text;      /* in use, wiped when replaced */
    size_t                       size;
    unsigned                     owned:1;   /* text is ngx_alloc()ed */

    /* per worker, after fork */
    unsigned                     looked:1;  /* checked is set */
    unsigned                     known:1;   /* the identity and digest are */
    ngx_msec_t                   checked;   /* monotonic */
    ngx_http_taurus_guard_pace_t  error_pace;
    dev_t                        dev;
    ino_t                        ino;
    off_t                        fsize;
    struct timespec              mtime;
    struct timespec              ctime;
    u_char                       digest[32];    /* SHA-256 of its bytes */
};


/* a source of secrets the gateway fetches (..._fetch.h) */
typedef struct ngx_http_taurus_guard_fetch_s  ngx_http_taurus_guard_fetch_t;

/* a request's asking for fetched secrets (..._fetch.c) */
typedef struct ngx_http_taurus_guard_fetch_ctx_s
    ngx_http_taurus_guard_fetch_ctx_t;


#define NGX_HTTP_TG_PROJECTS        256       /* with a token of their own */


/*
 * AK/SK from a profile file (file.path), the environment (no path), or
 * the ECS metadata service (fetch).  A file's or the environment's SK is
 * also kept as a ready HMAC key, made and wiped with the SK it stands
 * for; fetched credentials are signed with from their SK's bytes.
 */
typedef struct {
    ngx_http_taurus_guard_fetch_t  *fetch;
    ngx_http_taurus_guard_secret_file_t  file;
    tg_cred_t                    cred;      /* points into file.text */
    tg_hmac_key_t                key;       /* cred.sk's, when keyed */
    unsigned                     keyed:1;
} ngx_http_taurus_guard_cred_t;


/* a token from a file (one per project if path_cv), or fetched */
typedef struct {
    ngx_http_taurus_guard_secret_file_t  file;
    ngx_str_t                    value;     /* in file.text */
    ngx_http_taurus_guard_fetch_t  *fetch;  /* or fetched from IAM */
    ngx_http_complex_value_t    *path_cv;   /* or one file per project */
    ngx_array_t                  files;     /* of token_t, per worker */
    ngx_msec_t                   used;      /* one of files: last used */
} ngx_http_taurus_guard_token_t;


/* what all workers share about one audit file (..._audit.c) */
typedef struct ngx_http_taurus_guard_audit_sh_s
    ngx_http_taurus_guard_audit_sh_t;


#define NGX_HTTP_TG_AUDIT_FDS        4


/*
 * How a record is written (ngx_http_taurus_guard_audit()): at the end of
 * the event loop's turn, with the other records of the turn, nobody
 * waiting for it; before the call returns; or on disk before the request
 * goes on, which may block it (NGX_AGAIN) until it is.
 */
#define NGX_HTTP_TG_AUDIT_LATER      0
#define NGX_HTTP_TG_AUDIT_NOW        1
#define NGX_HTTP_TG_AUDIT_DURABLE    2


/* one record waiting for the end of the turn (..._audit.c) */
typedef struct ngx_http_taurus_guard_audit_entry_s
    ngx_http_taurus_guard_audit_entry_t;


typedef struct {
    ngx_open_file_t             *file;
    ngx_flag_t                   fsync;
    ngx_shm_zone_t              *zone;
    ngx_slab_pool_t             *shpool;
    ngx_http_taurus_guard_audit_sh_t  *sh;
    ngx_msec_t                   timeout;   /* of a flush, in a thread */
    ngx_uint_t                   flush_delay;   /* gathering, in usec */
    ngx_cycle_t                 *cycle;     /* for the worker user */
    u_char                      *conf_file; /* where it was named */
    ngx_uint_t                   conf_line;
    dev_t                        dev;       /* the file, if it existed */
    ngx_file_uniq_t              ino;
    size_t                       tail_max;  /* the longest last line read */

    /* per worker, after fork */
    ngx_http_taurus_guard_pace_t  error_pace;
    ngx_fd_t                     prev_fd;   /* the file before a reopen */
    ngx_event_t                  reopened;  /* checks a reopen */

    /*
     * The records of one turn of the event loop, written together by
     * one posted event (append): each entry and its record is carved
     * from the arena, which is reused once they are written.  The
     * requests they blocked wait in "written" for the event to resume
     * them, or to hand them to the flush.
     */
    ngx_queue_t                  unwritten; /* of entries */
    ngx_queue_t                  written;   /* of ctx, to resume */
    ngx_event_t                  append;
    u_char                      *arena;
    size_t                       arena_size;
    size_t                       arena_used;

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
    ngx_fd_t                     kept_fd;   /* the last flush's, see
                                               pending_fd() */
    ngx_file_uniq_t              kept_ino;
    dev_t                        kept_dev;
    ngx_file_uniq_t              written_ino;   /* the file last written */
    dev_t                        written_dev;
    ngx_atomic_uint_t            written_upto;  /* and the record's end */
    ngx_atomic_uint_t            pending_from;  /* pending's first, see
                                                   sync_failed */
    ngx_event_t                  failed;    /* a flush that could not start */
    ngx_err_t                    failed_err;
#endif
} ngx_http_taurus_guard_audit_t;


/* the central collector (..._syslog.c) */
typedef struct ngx_http_taurus_guard_syslog_s  ngx_http_taurus_guard_syslog_t;


/* the gateway's counters (ngx_http_taurus_guard_metrics.c) */
typedef struct ngx_http_taurus_guard_metrics_s
    ngx_http_taurus_guard_metrics_t;

/* the decisions counted: allow, deny, invalid, error, would_deny */
#define NGX_HTTP_TG_DECISIONS           5

/* where a secret comes from, for its failure counter and its gauges */
#define NGX_HTTP_TG_SOURCE_CREDENTIALS_FILE  0
#define NGX_HTTP_TG_SOURCE_TOKEN_FILE   1
#define NGX_HTTP_TG_SOURCE_METADATA     2
#define NGX_HTTP_TG_SOURCE_SESSION      3
#define NGX_HTTP_TG_SOURCE_IAM          4
#define NGX_HTTP_TG_SOURCE_IAM_USER     5
#define NGX_HTTP_TG_SOURCES             6


/* per-project policy (ngx_http_taurus_guard_policy.c) */
typedef struct ngx_http_taurus_guard_policy_s  ngx_http_taurus_guard_policy_t;


/* what a batch holds of the policy's shared state until it ends */
typedef struct {
    ngx_http_taurus_guard_policy_t  *policy;
    uint32_t                    *epochs;    /* of its instances, as
                                               taken: lost since if not */
    uint32_t                     serial;    /* its quota entry */
    unsigned                     quota:1;   /* it holds quota */
    unsigned                     cooldown:1;    /* its instances settle
                                                   when it ends */
} ngx_http_taurus_guard_policy_ticket_t;


/*
 * What the upstream made of a batch handed to the proxy, as
 * ngx_http_taurus_guard_outcome() tells: beside these two, the status
 * of the upstream's answer.
 */
#define NGX_HTTP_TG_UNSENT          0   /* no try sent it a byte */
#define NGX_HTTP_TG_UNANSWERED      1   /* a try sent bytes, got no answer */


/* one project's quota, for the metrics */
typedef struct {
    u_char                       project[TG_PROJECT_ID_LEN];
    ngx_uint_t                   used;      /* instances, in the period */
    ngx_uint_t                   limit;
    time_t                       period;    /* seconds */
} ngx_http_taurus_guard_quota_state_t;


/* why a policy would refuse a batch */
typedef struct {
    ngx_uint_t                   status;    /* 403, 409, 429 or 503 */
    ngx_str_t                    reason;
    time_t                       retry_after;   /* seconds; 0: none */
} ngx_http_taurus_guard_verdict_t;


typedef struct {
    tg_allow_t                  *allow;
    ngx_shm_zone_t              *metrics_zone;
    ngx_array_t                  policies;  /* of policy_t, sorted */
    ngx_http_taurus_guard_policy_t  *policy_default;
    ngx_shm_zone_t              *policy_zone;
    size_t                       policy_zone_size;
    ngx_http_taurus_guard_syslog_t  *syslog;
    char                         policy[TG_SHA256_HEX_LEN + 1];
    ngx_array_t                  files;     /* of secret_file_t * */
    u_char                      *env_file;  /* the first "credentials */
    ngx_uint_t                   env_line;  /* env", for its warning */
    ngx_array_t                  tokens;    /* of token_t * */
    ngx_array_t                  audits;    /* of audit_t * */
    ngx_int_t                    secret_vars[NGX_HTTP_TG_SECRETS];
                                            /* $http_* of the secrets */
    ngx_int_t                    length_var;  /* $content_length */
    ngx_int_t                    fetch_vars[NGX_HTTP_TG_FETCH_VARS];
                                            /* what a fetch carries */
    ngx_array_t                  fetches;   /* of fetch_t *, one a zone */
    u_char                       ids[NGX_HTTP_TG_IDS * TG_AUDIT_ID_LEN / 2];
                                            /* random bytes for audit ids,
                                               drawn by the worker */
    size_t                       ids_left;  /* of them not handed out */
    ngx_atomic_uint_t            process;   /* the worker's name, see
                                               ..._process.c */
} ngx_http_taurus_guard_main_conf_t;


#define NGX_HTTP_TG_MODE_ENFORCE    0
#define NGX_HTTP_TG_MODE_REPORT     1


typedef struct {
    ngx_flag_t                   enable;    /* as set and inherited */
    ngx_flag_t                   guard;     /* enable, not a status page */
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

    u_char                      *status_file;   /* where the page is set */
    ngx_uint_t                   status_line;

    unsigned                     status:1;  /* metrics or health here */
} ngx_http_taurus_guard_loc_conf_t;


typedef enum {
    NGX_HTTP_TG_UNDECIDED = -1
} ngx_http_taurus_guard_undecided_e;


/* where a guarded request is, in order (ngx_http_taurus_guard_run()) */
typedef enum {
    NGX_HTTP_TG_STEP_ROUTE = 0,     /* not started (only the ctx made) */
    NGX_HTTP_TG_STEP_BODY,          /* route, headers, reading the body */
    NGX_HTTP_TG_STEP_VALIDATE,      /* the body whole: validating */
    NGX_HTTP_TG_STEP_AUTHORIZE,     /* allow-list and policy */
    NGX_HTTP_TG_STEP_SECRETS,       /* fetched secrets, maybe waiting */
    NGX_HTTP_TG_STEP_SIGN,          /* signing, the allow record */
    NGX_HTTP_TG_STEP_AUDIT,         /* allow record written or in a flush */
    NGX_HTTP_TG_STEP_FORWARD,       /* handed to the content handler */
    NGX_HTTP_TG_STEP_DONE           /* refused or closed: ctx->status */
} ngx_http_taurus_guard_step_e;


typedef struct {
    ngx_uint_t                   step;      /* ngx_http_taurus_guard_step_e */
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
    ngx_http_taurus_guard_fetch_t  *token_src;  /* where it came from */
    ngx_str_t                    cred_text; /* fetched AK/SK, a profile */
    tg_cred_t                    cred;      /* points into cred_text */
    ngx_http_taurus_guard_fetch_ctx_t  *fetch;  /* fetches it asked for */
    ngx_str_t                    user;
    ngx_http_complex_value_t    *user_cv;   /* the user, not asked yet */
    ngx_http_request_t          *request;
    ngx_queue_t                  queue;     /* waiting for a flush */
    ngx_http_taurus_guard_audit_entry_t  *entry;  /* its unwritten record */
    ngx_http_event_handler_pt    resume;    /* after a fetch, a flush */
    ngx_event_t                  flush_wait;    /* its timeout */
    ngx_str_t                    sync_reason;   /* why it failed */
    u_char                       id[TG_AUDIT_ID_LEN + 1];
    char                         hash[TG_SHA256_HEX_LEN + 1];
    ngx_http_handler_pt          content_handler;   /* the proxy's */
    ngx_table_elt_t              secrets[NGX_HTTP_TG_SECRETS];
    ngx_uint_t                   nsecrets;  /* for the upstream only */
    time_t                       signed_at; /* their X-Sdk-Date */
    time_t                       usable_until;  /* when the first fetched
                                                   secret in hand comes
                                                   within its margin of
                                                   its end; 0: none */
    ngx_list_t                   headers;   /* the list without them */
    tg_str_t                     reentries[NGX_HTTP_TG_REENTRIES];
    ngx_uint_t                   nreentries;
    ngx_chain_t                 *page;      /* in place of nginx's 413 */

    unsigned                     fetch_pending:1;
    unsigned                     sync_failed:1;
    unsigned                     would_deny:1;  /* report mode */
    unsigned                     page_sent:1;
} ngx_http_taurus_guard_ctx_t;


extern ngx_module_t  ngx_http_taurus_guard_module;


/* ngx_http_taurus_guard_module.c */
ngx_int_t ngx_http_taurus_guard_param_once(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t first, ngx_uint_t i);

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
    ngx_uint_t how);
void ngx_http_taurus_guard_audit_exit(ngx_cycle_t *cycle);
ngx_uint_t ngx_http_taurus_guard_audit_failing(
    ngx_http_taurus_guard_audit_t *audit, ngx_file_info_t *fi);
void ngx_http_taurus_guard_audit_record_max(
    ngx_http_taurus_guard_main_conf_t *mcf, size_t body);

/* ngx_http_taurus_guard_syslog.c */
char *ngx_http_taurus_guard_syslog(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
size_t ngx_http_taurus_guard_syslog_room(ngx_http_taurus_guard_syslog_t *sl);
void ngx_http_taurus_guard_syslog_send(ngx_http_taurus_guard_syslog_t *sl,
    tg_audit_record_t *rec, u_char *line, size_t len, u_char *stand_in,
    size_t stand_in_len);
void ngx_http_taurus_guard_syslog_exit(ngx_http_taurus_guard_syslog_t *sl);

/* ngx_http_taurus_guard_process.c */
ngx_atomic_uint_t ngx_http_taurus_guard_process_name(ngx_pid_t pid);
ngx_atomic_uint_t ngx_http_taurus_guard_process_self(void);
ngx_uint_t ngx_http_taurus_guard_process_gone(ngx_atomic_uint_t who);

/* ngx_http_taurus_guard_worker.c */
#define NGX_HTTP_TG_WORKER_THEIRS  1
#define NGX_HTTP_TG_WORKER_THEM    2
#define NGX_HTTP_TG_WORKER_ALL     3

ngx_int_t ngx_http_taurus_guard_worker_can_enter(ngx_cycle_t *cycle,
    ngx_str_t *path, u_char **dir);
ngx_int_t ngx_http_taurus_guard_worker_can_replace(ngx_cycle_t *cycle,
    ngx_str_t *path, u_char **dir, ngx_uint_t *who);

/* ngx_http_taurus_guard_secret.c */
ngx_int_t ngx_http_taurus_guard_secret_copy(ngx_pool_t *pool,
    const u_char *data, size_t len, ngx_str_t *out);
u_char *ngx_http_taurus_guard_secret_alloc(ngx_pool_t *pool, size_t len);

/* ngx_http_taurus_guard_secret_file.c */
ngx_int_t ngx_http_taurus_guard_secret_file_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_secret_file_t *file, ngx_str_t *path, size_t max);
void ngx_http_taurus_guard_secret_file_forget(
    ngx_http_taurus_guard_secret_file_t *file);
void ngx_http_taurus_guard_secret_file_problem(ngx_str_t *problem,
    size_t line, tg_rc_t rc);
ngx_int_t ngx_http_taurus_guard_secret_file_update(ngx_log_t *log,
    ngx_http_taurus_guard_secret_file_t *file);

/* ngx_http_taurus_guard_cred.c */
char *ngx_http_taurus_guard_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_taurus_guard_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_taurus_guard_credentials_env_check(ngx_cycle_t *cycle,
    ngx_http_taurus_guard_main_conf_t *mcf);
tg_cred_t *ngx_http_taurus_guard_cred_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_cred_t *cred);
ngx_str_t *ngx_http_taurus_guard_token_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_token_t *token);
ngx_http_taurus_guard_token_t *ngx_http_taurus_guard_token_file(
    ngx_http_request_t *r, ngx_http_taurus_guard_token_t *token);

/* what the fetcher holds under one key, for the metrics and health */
typedef struct {
    u_char                       key[TG_PROJECT_ID_LEN];
    ngx_uint_t                   source;    /* NGX_HTTP_TG_SOURCE_* */
    time_t                       expires;   /* wall time; 0: no secret */
    time_t                       refreshed; /* last fetched; 0: never */
    unsigned                     project:1; /* key is a project's id */
    unsigned                     base:1;    /* the base it is asked with */
    unsigned                     usable:1;  /* valid past the margin */
    unsigned                     failed:1;  /* its last fetch failed */
} ngx_http_taurus_guard_fetch_state_t;


/* ngx_http_taurus_guard_fetch.c */
ngx_int_t ngx_http_taurus_guard_fetch_register(ngx_conf_t *cf,
    ngx_http_taurus_guard_fetch_t *src);
ngx_uint_t ngx_http_taurus_guard_fetch_states(
    ngx_http_taurus_guard_fetch_t *src, ngx_uint_t *source,
    ngx_http_taurus_guard_fetch_state_t *st, ngx_uint_t n);
ngx_int_t ngx_http_taurus_guard_fetch_get(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, ngx_http_taurus_guard_ctx_t *ctx,
    u_char *key, ngx_str_t *out);
ngx_int_t ngx_http_taurus_guard_fetch_now(ngx_http_request_t *r,
    ngx_http_taurus_guard_fetch_t *src, u_char *key, ngx_str_t *out);
void ngx_http_taurus_guard_fetch_refused(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
ngx_int_t ngx_http_taurus_guard_is_fetch(ngx_http_request_t *r);
ngx_int_t ngx_http_taurus_guard_fetch_refresh(ngx_conf_t *cf,
    const char *directive, ngx_str_t *value, time_t *refresh);
ngx_int_t ngx_http_taurus_guard_fetch_check(ngx_http_request_t *r);
ngx_int_t ngx_http_taurus_guard_fetch_filter_init(ngx_conf_t *cf);

/* ngx_http_taurus_guard_iam.c */
char *ngx_http_taurus_guard_iam_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_token_t *token, ngx_str_t *value, ngx_uint_t n);

/* ngx_http_taurus_guard_metadata.c */
char *ngx_http_taurus_guard_metadata_conf(ngx_conf_t *cf,
    ngx_http_taurus_guard_cred_t *cred, ngx_str_t *value, ngx_uint_t n);

/* ngx_http_taurus_guard_metrics.c */
ngx_int_t ngx_http_taurus_guard_metrics_zone(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf);
ngx_int_t ngx_http_taurus_guard_status_kept(ngx_conf_t *cf);
ngx_int_t ngx_http_taurus_guard_status_block(ngx_conf_t *cf);
char *ngx_http_taurus_guard_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_taurus_guard_metrics_request(ngx_http_request_t *r,
    tg_decision_t decision, ngx_uint_t status, ngx_uint_t upstream_status);
void ngx_http_taurus_guard_metrics_flush(ngx_msec_t usec,
    ngx_uint_t nrecords, ngx_err_t err);
void ngx_http_taurus_guard_metrics_flush_joined(ngx_uint_t nrecords);
void ngx_http_taurus_guard_metrics_audit_failed(void);
void ngx_http_taurus_guard_metrics_audit_written(ngx_uint_t records,
    ngx_uint_t writes);
void ngx_http_taurus_guard_metrics_fetch_failed(ngx_uint_t source);
void ngx_http_taurus_guard_metrics_syslog(ngx_int_t queued,
    ngx_int_t records, ngx_uint_t dropped, ngx_uint_t truncated);
void ngx_http_taurus_guard_metrics_process(ngx_cycle_t *cycle,
    ngx_atomic_uint_t self);

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
ngx_int_t ngx_http_taurus_guard_policy_quotas(ngx_http_request_t *r,
    ngx_array_t *out);
void ngx_http_taurus_guard_policy_end(ngx_http_request_t *r,
    ngx_http_taurus_guard_policy_ticket_t *ticket, ngx_str_t *project,
    tg_batch_t *batch, u_char *id, ngx_flag_t forwarded, ngx_uint_t outcome);

/* ngx_http_taurus_guard_sign.c */

ngx_int_t ngx_http_taurus_guard_sign_init(void);
char *ngx_http_taurus_guard_pass_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_taurus_guard_sign(ngx_http_request_t *r,
    ngx_http_taurus_guard_loc_conf_t *lcf, ngx_http_taurus_guard_ctx_t *ctx,
    ngx_str_t *reason);
ngx_int_t ngx_http_taurus_guard_sign_again(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason);
ngx_int_t ngx_http_taurus_guard_secrets_push(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
void ngx_http_taurus_guard_secrets_pop(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);

/* ngx_http_taurus_guard_handler.c */
ngx_int_t ngx_http_taurus_guard_rewrite_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_taurus_guard_handler(ngx_http_request_t *r);

/* ngx_http_taurus_guard_ctx.c */
ngx_http_taurus_guard_ctx_t *ngx_http_taurus_guard_get_ctx(
    ngx_http_request_t *r);
void ngx_http_taurus_guard_drop_ctx(ngx_http_request_t *r);
void ngx_http_taurus_guard_forget_vars(ngx_http_request_t *r,
    ngx_int_t *index, ngx_uint_t n);
ngx_int_t ngx_http_taurus_guard_ctx_user(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
ngx_http_taurus_guard_ctx_t *ngx_http_taurus_guard_create_ctx(
    ngx_http_request_t *r, ngx_http_taurus_guard_loc_conf_t *lcf);

/* ngx_http_taurus_guard_request.c */
ngx_int_t ngx_http_taurus_guard_route(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_str_t *reason);
ngx_int_t ngx_http_taurus_guard_content_type(ngx_http_request_t *r);
ngx_int_t ngx_http_taurus_guard_content_encoding(ngx_http_request_t *r);
ngx_int_t ngx_http_taurus_guard_read_body(ngx_http_request_t *r,
    ngx_str_t *raw);
void ngx_http_taurus_guard_release_body(ngx_http_request_t *r,
    ngx_str_t *raw);
ngx_int_t ngx_http_taurus_guard_replace_body(ngx_http_request_t *r,
    ngx_str_t *body);
ngx_int_t ngx_http_taurus_guard_client_gone(ngx_http_request_t *r);

/* ngx_http_taurus_guard_refuse.c */
void ngx_http_taurus_guard_record(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, tg_audit_record_t *rec);
ngx_int_t ngx_http_taurus_guard_refuse(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason,
    ngx_array_t *denied, time_t retry_after);
ngx_int_t ngx_http_taurus_guard_refuse_text(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, const char *text);
ngx_int_t ngx_http_taurus_guard_not_forwarded(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_uint_t status, ngx_str_t *reason);
ngx_uint_t ngx_http_taurus_guard_outcome(ngx_http_request_t *r);
void ngx_http_taurus_guard_close(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
ngx_int_t ngx_http_taurus_guard_response_headers(ngx_http_request_t *r);
ngx_chain_t *ngx_http_taurus_guard_page_body(ngx_http_request_t *r,
    ngx_chain_t *in);

/* ngx_http_taurus_guard_forward.c */
ngx_int_t ngx_http_taurus_guard_forward(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx, ngx_flag_t woken);
ngx_int_t ngx_http_taurus_guard_reentry(ngx_http_request_t *r,
    ngx_http_taurus_guard_ctx_t *ctx);
ngx_int_t ngx_http_taurus_guard_log_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TAURUS_GUARD_MODULE_H_INCLUDED_ */
