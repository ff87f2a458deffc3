
/*
 * taurus-guard: per-project policy beside the allow-list.
 *
 *     taurus_guard_policy PROJECT_ID|default [delay=required]
 *         [max_batch=N] [quota=N/PERIOD] [cooldown=PERIOD];
 *
 * delay=required and max_batch look at the batch alone.  quota and
 * cooldown span requests, so their state lives in one shared memory zone
 * ("taurus_guard_policy_zone", 1m by default), kept across reloads:
 *
 * - quota: per project, a ring of the batches forwarded in the rolling
 *   period, oldest first, each with its number of instances;
 * - cooldown: per instance, how many batches have it in flight (the
 *   newest's audit id and start) and when the last batch the upstream
 *   may have acted on ended.
 *
 * Checking and taking are one step under the zone's lock, so concurrent
 * batches in several workers can never overspend a quota or send one
 * instance twice.  What a batch took is given back when it ends: its
 * quota if no upstream try sent it a byte, its count in flight always.
 * Its instances start cooling down unless nothing reached the upstream
 * or the upstream refused it outright.  Times are nginx's monotonic
 * milliseconds, which every process of the machine shares and a clock
 * step does not move.
 */


#include "ngx_http_taurus_guard_module.h"


#define NGX_HTTP_TG_POLICY_ZONE      "taurus_guard_policy"

/*
 * A batch in flight longer than this is taken for lost (its worker was
 * killed): a signature is accepted for 15 minutes, so by then the
 * upstream cannot receive it any more.  It may have been carried out:
 * its instance cools down as if it ended unanswered when it started.
 */
#define NGX_HTTP_TG_INFLIGHT_MAX     (15 * 60 * 1000)

#define NGX_HTTP_TG_QUOTA_MAX        100000

/*
 * The most instances still held that one allocation looks past, when
 * the zone is full, for one whose cooldown is over.
 */
#define NGX_HTTP_TG_HELD_SCAN        64

/*
 * How long ago t was.  Each worker caches the monotonic clock once per
 * event loop turn, so a time another worker stored may lie a little in
 * this one's future: the difference is signed, never a huge unsigned.
 */
#define ngx_http_tg_age(now, t)      ((ngx_msec_int_t) ((now) - (t)))


struct ngx_http_taurus_guard_policy_s {
    u_char                       project[TG_PROJECT_ID_LEN];
    ngx_uint_t                   is_default;
    ngx_flag_t                   delay_required;
    ngx_uint_t                   max_batch;     /* 0: none */
    ngx_uint_t                   quota;         /* instances; 0: none */
    ngx_msec_t                   quota_period;
    ngx_str_t                    quota_text;    /* as written: "50/24h" */
    ngx_msec_t                   cooldown;      /* 0: none */
    ngx_str_t                    cooldown_text;
    u_char                      *file;
    ngx_uint_t                   line;
};


/* one forwarded batch in a project's quota ring */
typedef struct {
    ngx_msec_t                   time;
    uint32_t                     count;         /* 0: given back */
    uint32_t                     serial;
} ngx_http_taurus_guard_spend_t;


typedef struct {
    ngx_rbtree_node_t            node;  /* key: crc32 of project, then it */
    u_char                       project[TG_PROJECT_ID_LEN];
    ngx_uint_t                   size;
    ngx_uint_t                   head;          /* the oldest entry */
    ngx_uint_t                   n;
    ngx_http_taurus_guard_spend_t  ring[1];
} ngx_http_taurus_guard_quota_node_t;


/*
 * An instance, keyed by the crc32 of project+instance, then by both:
 * crc32 collisions are easy to make, and the tree keeps them in order.
 */
typedef struct {
    ngx_rbtree_node_t            node;
    ngx_queue_t                  queue;         /* idle or held */
    u_char                       project[TG_PROJECT_ID_LEN];
    u_char                       instance[TG_INSTANCE_ID_MAX_LEN];
    u_char                       len;
    unsigned                     pinned:1;  /* by the check in progress */
    unsigned                     held:1;    /* on the held queue */
    unsigned                     unanswered:1;  /* the cooldown's batch
                                                   got no answer */
    uint16_t                     inflight_n;    /* batches in flight */
    uint32_t                     epoch;     /* of its count in flight:
                                               a new one when the node
                                               is made, and when its
                                               batches are lost */
    u_char                       inflight[TG_AUDIT_ID_LEN];  /* newest */
    ngx_msec_t                   inflight_since;    /* the newest start */
    ngx_msec_t                   inflight_until;    /* their cooldown's
                                                       end, if lost */
    ngx_msec_t                   until;         /* the cooldown's end */
    ngx_msec_t                   last_ok;       /* 0: never */
    u_char                       last_id[TG_AUDIT_ID_LEN];
} ngx_http_taurus_guard_inst_node_t;


typedef struct {
    ngx_rbtree_t                 quotas;
    ngx_rbtree_node_t            quota_sentinel;
    ngx_rbtree_t                 instances;
    ngx_rbtree_node_t            instance_sentinel;
    ngx_queue_t                  idle;  /* holding nothing, recent first */
    ngx_queue_t                  held;  /* in flight or cooling, newest
                                           first (as it was looked at) */
    uint32_t                     serial;
    uint32_t                     epoch;     /* the last one given */
} ngx_http_taurus_guard_policy_sh_t;


typedef struct {
    ngx_slab_pool_t                     *shpool;
    ngx_http_taurus_guard_policy_sh_t   *sh;
    ngx_http_taurus_guard_pace_t         full_pace;     /* per worker */
} ngx_http_taurus_guard_policy_zone_t;


static char *ngx_http_taurus_guard_policy_period(ngx_conf_t *cf,
    ngx_str_t *value, ngx_msec_t *msec);
static int ngx_libc_cdecl ngx_http_taurus_guard_policy_cmp(const void *a,
    const void *b);
static ngx_int_t ngx_http_taurus_guard_policy_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static void ngx_http_taurus_guard_quota_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_taurus_guard_inst_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_taurus_guard_inst_cmp(u_char *project,
    u_char *instance, size_t len, ngx_http_taurus_guard_inst_node_t *in);
static ngx_http_taurus_guard_quota_node_t *ngx_http_taurus_guard_quota_find(
    ngx_http_taurus_guard_policy_zone_t *pz, u_char *project,
    ngx_uint_t size);
static ngx_uint_t ngx_http_taurus_guard_quota_used(
    ngx_http_taurus_guard_quota_node_t *q, ngx_msec_t period,
    ngx_msec_t now);
static void ngx_http_taurus_guard_quota_squeeze(
    ngx_http_taurus_guard_quota_node_t *q);
static time_t ngx_http_taurus_guard_quota_retry(
    ngx_http_taurus_guard_quota_node_t *q, ngx_uint_t need,
    ngx_msec_t period, ngx_msec_t now);
static ngx_http_taurus_guard_inst_node_t *ngx_http_taurus_guard_inst_find(
    ngx_http_taurus_guard_policy_zone_t *pz, u_char *project,
    tg_str_t *instance, ngx_uint_t create);
static void ngx_http_taurus_guard_inst_lost(
    ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in, ngx_msec_t now);
static ngx_uint_t ngx_http_taurus_guard_inst_holds(
    ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in, ngx_msec_t now);
static void ngx_http_taurus_guard_inst_queue(
    ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in, ngx_uint_t held);
static void ngx_http_taurus_guard_inst_free(
    ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in);
static void ngx_http_taurus_guard_policy_unpin(
    ngx_http_taurus_guard_inst_node_t **nodes, ngx_uint_t n);
static void *ngx_http_taurus_guard_policy_alloc(
    ngx_http_taurus_guard_policy_zone_t *pz, size_t size);
static ngx_int_t ngx_http_taurus_guard_verdict(ngx_http_request_t *r,
    ngx_http_taurus_guard_verdict_t *v, ngx_uint_t status, const char *fmt,
    ...);


/* "taurus_guard_policy PROJECT_ID|default key=value ..." (http) */

char *
ngx_http_taurus_guard_policy(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    u_char                          *slash;
    ngx_int_t                        n;
    ngx_str_t                       *value, s;
    ngx_uint_t                       i;
    ngx_http_taurus_guard_policy_t  *p, *pp;

    value = cf->args->elts;

    if (mcf->policies.elts == NULL
        && ngx_array_init(&mcf->policies, cf->pool, 4,
                          sizeof(ngx_http_taurus_guard_policy_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    p = ngx_array_push(&mcf->policies);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(p, sizeof(ngx_http_taurus_guard_policy_t));

    p->file = cf->conf_file->file.name.data;
    p->line = cf->conf_file->line;

    if (ngx_strcmp(value[1].data, "default") == 0) {
        p->is_default = 1;

    } else if (tg_project_id_check(value[1].data, value[1].len) == TG_OK) {
        ngx_memcpy(p->project, value[1].data, TG_PROJECT_ID_LEN);

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid project \"%V\": 32 letters or digits,"
                           " or \"default\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    pp = mcf->policies.elts;

    for (i = 0; i + 1 < mcf->policies.nelts; i++) {
        if (pp[i].is_default == p->is_default
            && ngx_memcmp(pp[i].project, p->project, TG_PROJECT_ID_LEN) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "policy for \"%V\" is duplicate, first in"
                               " %s:%ui", &value[1], pp[i].file, pp[i].line);
            return NGX_CONF_ERROR;
        }
    }

    if (cf->args->nelts == 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "policy for \"%V\" sets nothing: give delay=,"
                           " max_batch=, quota= or cooldown=", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_taurus_guard_param_once(cf, value, 2, i) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(value[i].data, "delay=required") == 0) {
            p->delay_required = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_batch=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;
            n = ngx_atoi(s.data, s.len);

            if (n < 1 || n > TG_BATCH_MAX_ITEMS) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": max_batch is 1 to %d",
                                   &value[i], TG_BATCH_MAX_ITEMS);
                return NGX_CONF_ERROR;
            }

            p->max_batch = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "quota=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;
            slash = ngx_strlchr(s.data, s.data + s.len, '/');

            n = (slash == NULL) ? NGX_ERROR : ngx_atoi(s.data, slash - s.data);

            if (n < 1 || n > NGX_HTTP_TG_QUOTA_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": quota is N/PERIOD, N"
                                   " from 1 to %d, PERIOD such as 24h",
                                   &value[i], NGX_HTTP_TG_QUOTA_MAX);
                return NGX_CONF_ERROR;
            }

            p->quota = n;
            p->quota_text = s;

            s.len -= slash + 1 - s.data;
            s.data = slash + 1;

            if (ngx_http_taurus_guard_policy_period(cf, &s, &p->quota_period)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "cooldown=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;
            p->cooldown_text = s;

            if (ngx_http_taurus_guard_policy_period(cf, &s, &p->cooldown)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": delay=required,"
                           " max_batch=N, quota=N/PERIOD or cooldown=PERIOD",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_taurus_guard_policy_period(ngx_conf_t *cf, ngx_str_t *value,
    ngx_msec_t *msec)
{
    ngx_int_t  sec;

    sec = ngx_parse_time(value, 1);

    /* at most a year: the monotonic milliseconds must not wrap */

    if (sec == NGX_ERROR || sec < 1 || sec > 366 * 24 * 60 * 60) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid period \"%V\": a time such as 30m or"
                           " 24h, from 1s to 366d", value);
        return NGX_CONF_ERROR;
    }

    *msec = (ngx_msec_t) sec * 1000;

    return NGX_CONF_OK;
}


/* "taurus_guard_policy_zone size" (http): the state of quota and cooldown */

char *
ngx_http_taurus_guard_policy_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_taurus_guard_main_conf_t *mcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (mcf->policy_zone_size) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid size \"%V\": at least %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    mcf->policy_zone_size = size;

    return NGX_CONF_OK;
}


/*
 * After the whole configuration: every project policy names a project of
 * the allow-list (a policy for a project nobody may upgrade is a typo),
 * the policies are sorted for lookups, and the zone is added when a
 * policy needs state.
 */

ngx_int_t
ngx_http_taurus_guard_policy_init(ngx_conf_t *cf,
    ngx_http_taurus_guard_main_conf_t *mcf)
{
    ngx_str_t                             name;
    ngx_uint_t                            i, state;
    ngx_http_taurus_guard_policy_t       *p;
    ngx_http_taurus_guard_policy_zone_t  *pz;

    p = mcf->policies.elts;
    state = 0;

    for (i = 0; i < mcf->policies.nelts; i++) {

        if (p[i].quota || p[i].cooldown) {
            state = 1;
        }

        if (p[i].is_default) {
            continue;
        }

        if (!tg_allow_has_project(mcf->allow, p[i].project,
                                  TG_PROJECT_ID_LEN))
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "policy for project \"%*s\", which the allow-list"
                          " does not name, in %s:%ui",
                          (size_t) TG_PROJECT_ID_LEN, p[i].project,
                          p[i].file, p[i].line);
            return NGX_ERROR;
        }
    }

    if (mcf->policies.nelts) {
        /* "default" sorts first, then by project */
        ngx_qsort(p, mcf->policies.nelts,
                  sizeof(ngx_http_taurus_guard_policy_t),
                  ngx_http_taurus_guard_policy_cmp);

        if (p[0].is_default) {
            mcf->policy_default = &p[0];
        }
    }

    if (!state) {
        return NGX_OK;
    }

    pz = ngx_pcalloc(cf->pool, sizeof(ngx_http_taurus_guard_policy_zone_t));
    if (pz == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, NGX_HTTP_TG_POLICY_ZONE);

    mcf->policy_zone = ngx_shared_memory_add(cf, &name,
                                             mcf->policy_zone_size
                                             ? mcf->policy_zone_size
                                             : 1024 * 1024,
                                             &ngx_http_taurus_guard_module);
    if (mcf->policy_zone == NULL) {
        return NGX_ERROR;
    }

    mcf->policy_zone->init = ngx_http_taurus_guard_policy_init_zone;
    mcf->policy_zone->data = pz;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_taurus_guard_policy_cmp(const void *a, const void *b)
{
    const ngx_http_taurus_guard_policy_t  *pa = a;
    const ngx_http_taurus_guard_policy_t  *pb = b;

    if (pa->is_default != pb->is_default) {
        return pa->is_default ? -1 : 1;
    }

    return ngx_memcmp(pa->project, pb->project, TG_PROJECT_ID_LEN);
}


static ngx_int_t
ngx_http_taurus_guard_policy_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_taurus_guard_policy_zone_t  *opz = data;

    ngx_http_taurus_guard_policy_zone_t  *pz;

    pz = shm_zone->data;

    if (opz != NULL) {
        /* a reload: quotas and cooldowns go on */
        pz->sh = opz->sh;
        pz->shpool = opz->shpool;
        return NGX_OK;
    }

    pz->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        pz->sh = pz->shpool->data;
        return NGX_OK;
    }

    pz->sh = ngx_slab_calloc(pz->shpool,
                             sizeof(ngx_http_taurus_guard_policy_sh_t));
    if (pz->sh == NULL) {
        return NGX_ERROR;
    }

    pz->shpool->data = pz->sh;

    ngx_rbtree_init(&pz->sh->quotas, &pz->sh->quota_sentinel,
                    ngx_http_taurus_guard_quota_insert);
    ngx_rbtree_init(&pz->sh->instances, &pz->sh->instance_sentinel,
                    ngx_http_taurus_guard_inst_insert);
    ngx_queue_init(&pz->sh->idle);
    ngx_queue_init(&pz->sh->held);

    pz->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * By key, then by name among equal keys, as ngx_str_rbtree_insert_value()
 * does: a rotation may move a node with an equal key to either side, so
 * lookups must follow the same order to find it.
 */

static void
ngx_http_taurus_guard_quota_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                   **p;
    ngx_http_taurus_guard_quota_node_t   *q, *t;

    q = (ngx_http_taurus_guard_quota_node_t *) node;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            t = (ngx_http_taurus_guard_quota_node_t *) temp;
            p = (ngx_memcmp(q->project, t->project, TG_PROJECT_ID_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static void
ngx_http_taurus_guard_inst_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                  **p;
    ngx_http_taurus_guard_inst_node_t   *in;

    in = (ngx_http_taurus_guard_inst_node_t *) node;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_http_taurus_guard_inst_cmp(in->project, in->instance,
                     in->len, (ngx_http_taurus_guard_inst_node_t *) temp)
                 < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* the project's own policy, else "default", else none */

ngx_http_taurus_guard_policy_t *
ngx_http_taurus_guard_policy_find(ngx_http_taurus_guard_main_conf_t *mcf,
    u_char *project)
{
    ngx_int_t                        c;
    ngx_uint_t                       lo, hi, mid;
    ngx_http_taurus_guard_policy_t  *p;

    p = mcf->policies.elts;
    lo = (mcf->policy_default != NULL) ? 1 : 0;
    hi = mcf->policies.nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = ngx_memcmp(project, p[mid].project, TG_PROJECT_ID_LEN);

        if (c == 0) {
            return &p[mid];
        }

        if (c < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return mcf->policy_default;
}


/*
 * Checks a batch against its project's policy and, when it passes or
 * when take_anyway is set (report mode), takes what it spends: quota,
 * and a count in flight on each of its instances (report mode forwards
 * an instance in flight: one more batch has it until that one ends).
 * Instances new to the zone get a node only then: a refused batch
 * leaves none behind.  NGX_OK: it passes;
 * NGX_DECLINED: *v says why not (and what was taken, with take_anyway);
 * NGX_ERROR: the gateway failed (*v is a 503).
 */

ngx_int_t
ngx_http_taurus_guard_policy_check(ngx_http_request_t *r,
    ngx_http_taurus_guard_policy_t *p, ngx_str_t *project, tg_batch_t *batch,
    u_char *id, ngx_flag_t take_anyway,
    ngx_http_taurus_guard_policy_ticket_t *ticket,
    ngx_http_taurus_guard_verdict_t *v)
{
    ngx_int_t                              rc;
    ngx_msec_t                             now;
    ngx_uint_t                             i, used, npinned;
    ngx_http_taurus_guard_inst_node_t     *in, **nodes;
    ngx_http_taurus_guard_quota_node_t    *q;
    ngx_http_taurus_guard_policy_zone_t   *pz;
    ngx_http_taurus_guard_main_conf_t     *mcf;

    ngx_memzero(v, sizeof(ngx_http_taurus_guard_verdict_t));
    ngx_memzero(ticket, sizeof(ngx_http_taurus_guard_policy_ticket_t));

    if (p == NULL) {
        return NGX_OK;
    }

    rc = NGX_OK;

    /* what the batch alone can break */

    if (p->max_batch && batch->nitems > p->max_batch) {
        rc = ngx_http_taurus_guard_verdict(r, v, NGX_HTTP_FORBIDDEN,
                 "policy max_batch=%ui for project %V: the batch has %uz"
                 " instances", p->max_batch, project, batch->nitems);
        if (rc == NGX_ERROR || !take_anyway) {
            return rc;
        }
    }

    if (rc == NGX_OK && p->delay_required && !batch->delay) {
        rc = ngx_http_taurus_guard_verdict(r, v, NGX_HTTP_FORBIDDEN,
                 "policy delay=required for project %V: the batch must"
                 " ask for the maintenance window (\"delay\":\"true\")",
                 project);
        if (rc == NGX_ERROR || !take_anyway) {
            return rc;
        }
    }

    if (rc == NGX_OK && p->quota && batch->nitems > p->quota) {
        rc = ngx_http_taurus_guard_verdict(r, v, NGX_HTTP_FORBIDDEN,
                 "policy quota=%V for project %V: a batch of %uz"
                 " instances can never fit", &p->quota_text, project,
                 batch->nitems);
        if (rc == NGX_ERROR || !take_anyway) {
            return rc;
        }
    }

    if (!p->quota && !p->cooldown) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);
    pz = mcf->policy_zone->data;

    nodes = NULL;

    if (p->cooldown) {
        nodes = ngx_palloc(r->pool, batch->nitems * sizeof(void *));
        if (nodes == NULL) {
            return NGX_ERROR;
        }

        ticket->epochs = ngx_pcalloc(r->pool,
                                     batch->nitems * sizeof(uint32_t));
        if (ticket->epochs == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_shmtx_lock(&pz->shpool->mutex);

    now = ngx_current_msec;

    /* one instance sent twice: in flight, or still cooling down */

    npinned = 0;

    for (i = 0; p->cooldown && i < batch->nitems; i++) {
        nodes[i] = NULL;
        npinned = i + 1;

        in = ngx_http_taurus_guard_inst_find(pz, project->data,
                                             &batch->items[i].instance_id, 0);
        if (in == NULL) {
            /* new to the zone, or dropped once it held nothing */
            continue;
        }

        /*
         * Making room for the next ones must not evict this batch's own
         * nodes: pinned until the check ends.
         */

        in->pinned = 1;
        nodes[i] = in;

        /* a lost batch's mark becomes its cooldown */

        ngx_http_taurus_guard_inst_lost(pz, in, now);

        if (rc != NGX_OK) {
            continue;
        }

        if (in->inflight_n) {
            rc = ngx_http_taurus_guard_verdict(r, v, NGX_HTTP_CONFLICT,
                     "policy cooldown=%V for project %V: instance %*s has"
                     " a batch in flight, audit id %*s", &p->cooldown_text,
                     project, (size_t) in->len, in->instance,
                     (size_t) TG_AUDIT_ID_LEN, in->inflight);
            v->retry_after = 1;

        } else if (in->last_ok
                   && (ngx_msec_int_t) (in->last_ok + p->cooldown - now) > 0)
        {
            /*
             * The cooldown of the policy in force, from the end of the
             * instance's last batch: a reload that lengthens it covers
             * the instances upgraded before, one that shortens it frees
             * them.  A node kept for the old end is kept for the new.
             */

            if ((ngx_msec_int_t) (in->last_ok + p->cooldown - in->until) > 0) {
                in->until = in->last_ok + p->cooldown;
                ngx_http_taurus_guard_inst_queue(pz, in, 1);
            }

            rc = ngx_http_taurus_guard_verdict(r, v, NGX_HTTP_CONFLICT,
                     "policy cooldown=%V for project %V: instance %*s was"
                     " %s %M s ago, audit id %*s", &p->cooldown_text,
                     project, (size_t) in->len, in->instance,
                     in->unanswered ? "sent" : "upgraded",
                     (ngx_msec_t) ngx_max(ngx_http_tg_age(now, in->last_ok),
                                          0) / 1000,
                     (size_t) TG_AUDIT_ID_LEN, in->last_id);
            v->retry_after = (in->last_ok + p->cooldown - now + 999) / 1000;
        }

        if (rc == NGX_ERROR) {
            goto failed;
        }

        if (rc != NGX_OK && !take_anyway) {
            break;
        }
    }

    if (rc != NGX_OK && !take_anyway) {
        ngx_http_taurus_guard_policy_unpin(nodes, npinned);
        ngx_shmtx_unlock(&pz->shpool->mutex);
        return rc;
    }

    /* at most quota instances forwarded in any rolling period */

    q = NULL;

    if (p->quota) {
        q = ngx_http_taurus_guard_quota_find(pz, project->data, p->quota);
        if (q == NULL) {
            goto full;
        }

        used = ngx_http_taurus_guard_quota_used(q, p->quota_period, now);

        if (rc == NGX_OK && used + batch->nitems > p->quota) {
            rc = ngx_http_taurus_guard_verdict(r, v,
                     NGX_HTTP_TOO_MANY_REQUESTS,
                     "policy quota=%V for project %V: %ui of %ui instances"
                     " used, the batch has %uz", &p->quota_text, project,
                     used, p->quota, batch->nitems);

            v->retry_after = ngx_http_taurus_guard_quota_retry(q,
                                 used + batch->nitems - p->quota,
                                 p->quota_period, now);
            if (rc == NGX_ERROR) {
                goto failed;
            }
        }
    }

    if (rc != NGX_OK && !take_anyway) {
        ngx_http_taurus_guard_policy_unpin(nodes, npinned);
        ngx_shmtx_unlock(&pz->shpool->mutex);
        return rc;
    }

    /* the instances new to the zone, now that the batch takes them */

    for (i = 0; p->cooldown && i < batch->nitems; i++) {
        if (nodes[i] != NULL
            || batch->items[i].instance_id.len > TG_INSTANCE_ID_MAX_LEN)
        {
            /* too long: on no allow-list, refused or would_deny already */
            continue;
        }

        in = ngx_http_taurus_guard_inst_find(pz, project->data,
                                             &batch->items[i].instance_id, 1);
        if (in == NULL) {
            goto full;
        }

        in->pinned = 1;
        nodes[i] = in;
    }

    /*
     * Take.  Entries given back keep their place until they age out:
     * squeeze them out when the ring is full.  A full ring of live
     * entries holds the whole quota, so only report mode gets here with
     * no room, and then the batch is not counted.
     */

    if (q != NULL && q->n == q->size) {
        ngx_http_taurus_guard_quota_squeeze(q);
    }

    if (q != NULL && q->n < q->size) {
        pz->sh->serial++;

        q->ring[(q->head + q->n) % q->size].time = now;
        q->ring[(q->head + q->n) % q->size].count = batch->nitems;
        q->ring[(q->head + q->n) % q->size].serial = pz->sh->serial;
        q->n++;

        ticket->serial = pz->sh->serial;
        ticket->quota = 1;
    }

    for (i = 0; p->cooldown && i < batch->nitems; i++) {
        in = nodes[i];

        if (in == NULL) {
            continue;
        }

        /*
         * In report mode, an instance other batches have in flight: in
         * flight until the last of them ends.  Lost batches were made
         * its cooldown above.
         */

        if (in->inflight_n == 0
            || (ngx_msec_int_t) (now + p->cooldown - in->inflight_until) > 0)
        {
            in->inflight_until = now + p->cooldown;
        }

        /* at the most, the last ones are no longer told apart */

        if (in->inflight_n < 0xffff) {
            in->inflight_n++;
        }

        ticket->epochs[i] = in->epoch;
        ngx_memcpy(in->inflight, id, TG_AUDIT_ID_LEN);
        in->inflight_since = now;
        ngx_http_taurus_guard_inst_queue(pz, in, 1);
    }

    /* its instances are settled when it ends, marked by it or not */

    ticket->cooldown = p->cooldown ? 1 : 0;

    ngx_http_taurus_guard_policy_unpin(nodes, npinned);

    ticket->policy = p;

    ngx_shmtx_unlock(&pz->shpool->mutex);

    return rc;

full:

    ngx_http_taurus_guard_policy_unpin(nodes, npinned);
    ngx_shmtx_unlock(&pz->shpool->mutex);

    if (ngx_http_taurus_guard_pace(&pz->full_pace)) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "taurus_guard: zone \"" NGX_HTTP_TG_POLICY_ZONE "\" is"
                      " full, batches of projects with a quota or a"
                      " cooldown are refused; raise"
                      " taurus_guard_policy_zone");
    }

    (void) ngx_http_taurus_guard_verdict(r, v, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "policy state is full");
    return NGX_ERROR;

failed:

    ngx_http_taurus_guard_policy_unpin(nodes, npinned);
    ngx_shmtx_unlock(&pz->shpool->mutex);

    return NGX_ERROR;
}


/*
 * The batch ended: its quota is given back unless some upstream try
 * sent it bytes (the done record's "forwarded"), and its in-flight
 * marks are cleared.  Its instances start their cooldown
 * unless nothing reached the upstream (outcome NGX_HTTP_TG_UNSENT) or
 * the upstream answered outside 2xx, 502, 503 and 504: once bytes were
 * sent and no answer came (NGX_HTTP_TG_UNANSWERED: the caller or the
 * upstream went away, a timeout), or the upstream's own gateway gave up
 * on the endpoint behind it, the endpoint may have upgraded them.  A
 * batch sets the cooldown whether or not it still holds the mark:
 * report mode forwards instances in flight, and a lost batch's mark was
 * made its cooldown.  Its count in flight is given back, unless it was
 * taken for lost already (a batch in flight for too long).
 */

void
ngx_http_taurus_guard_policy_end(ngx_http_request_t *r,
    ngx_http_taurus_guard_policy_ticket_t *ticket, ngx_str_t *project,
    tg_batch_t *batch, u_char *id, ngx_flag_t forwarded, ngx_uint_t outcome)
{
    tg_str_t                             *instance;
    ngx_flag_t                            cool, unanswered;
    ngx_msec_t                            now;
    ngx_uint_t                            i;
    ngx_http_taurus_guard_policy_t       *p;
    ngx_http_taurus_guard_inst_node_t    *in;
    ngx_http_taurus_guard_quota_node_t   *q;
    ngx_http_taurus_guard_policy_zone_t  *pz;
    ngx_http_taurus_guard_main_conf_t    *mcf;

    p = ticket->policy;

    if (p == NULL || (!ticket->quota && !ticket->cooldown)) {
        return;
    }

    /*
     * The endpoint is a gateway itself: its 502, 503 or 504 may come
     * after it handed the batch on, as good as no answer.
     */

    unanswered = (outcome == NGX_HTTP_TG_UNANSWERED
                  || outcome == NGX_HTTP_BAD_GATEWAY
                  || outcome == NGX_HTTP_SERVICE_UNAVAILABLE
                  || outcome == NGX_HTTP_GATEWAY_TIME_OUT);

    cool = forwarded
           && (unanswered || (outcome >= 200 && outcome < 300));

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);
    pz = mcf->policy_zone->data;

    ngx_shmtx_lock(&pz->shpool->mutex);

    now = ngx_current_msec;

    /* no try sent the upstream a byte: none of the quota was spent */

    if (ticket->quota && (!forwarded || outcome == NGX_HTTP_TG_UNSENT)) {
        q = ngx_http_taurus_guard_quota_find(pz, project->data, 0);

        for (i = 0; q != NULL && i < q->n; i++) {
            if (q->ring[(q->head + i) % q->size].serial == ticket->serial) {
                q->ring[(q->head + i) % q->size].count = 0;
                break;
            }
        }
    }

    for (i = 0; ticket->cooldown && i < batch->nitems; i++) {
        instance = &batch->items[i].instance_id;

        if (instance->len > TG_INSTANCE_ID_MAX_LEN) {
            continue;
        }

        /* a node dropped once it held nothing is made again to cool */

        in = ngx_http_taurus_guard_inst_find(pz, project->data, instance,
                                             cool);
        if (in == NULL) {
            if (cool && ngx_http_taurus_guard_pace(&pz->full_pace)) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "taurus_guard: zone \"" NGX_HTTP_TG_POLICY_ZONE
                              "\" is full, the cooldown of instance %*s"
                              " after batch %*s is lost; raise"
                              " taurus_guard_policy_zone",
                              (size_t) instance->len, instance->data,
                              (size_t) TG_AUDIT_ID_LEN, id);
            }

            continue;
        }

        ngx_http_taurus_guard_inst_lost(pz, in, now);

        if (in->inflight_n && in->epoch == ticket->epochs[i]) {
            in->inflight_n--;
        }

        if (in->inflight_n == 0) {
            ngx_memzero(in->inflight, TG_AUDIT_ID_LEN);
        }

        if (cool) {
            in->last_ok = now ? now : 1;
            in->until = now + p->cooldown;
            in->unanswered = unanswered;
            ngx_memcpy(in->last_id, id, TG_AUDIT_ID_LEN);
            ngx_http_taurus_guard_inst_queue(pz, in, 1);

        } else if (!ngx_http_taurus_guard_inst_holds(pz, in, now)) {
            ngx_http_taurus_guard_inst_queue(pz, in, 0);
        }
    }

    ticket->quota = 0;
    ticket->cooldown = 0;

    ngx_shmtx_unlock(&pz->shpool->mutex);
}


/*
 * For the metrics: each project's quota in use now, with its limit, as
 * an array of quota_state_t.  The zone's lock is held while the rings
 * are read; no request waits on it for long.
 */

ngx_int_t
ngx_http_taurus_guard_policy_quotas(ngx_http_request_t *r,
    ngx_array_t *out)
{
    ngx_msec_t                              now;
    ngx_rbtree_node_t                      *node, *root, *sentinel;
    ngx_http_taurus_guard_policy_t         *p;
    ngx_http_taurus_guard_quota_node_t     *q;
    ngx_http_taurus_guard_quota_state_t    *st;
    ngx_http_taurus_guard_policy_zone_t    *pz;
    ngx_http_taurus_guard_main_conf_t      *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_taurus_guard_module);

    if (ngx_array_init(out, r->pool, 8,
                       sizeof(ngx_http_taurus_guard_quota_state_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mcf->policy_zone == NULL) {
        return NGX_OK;
    }

    pz = mcf->policy_zone->data;

    ngx_shmtx_lock(&pz->shpool->mutex);

    now = ngx_current_msec;
    root = pz->sh->quotas.root;
    sentinel = pz->sh->quotas.sentinel;

    if (root == sentinel) {
        goto done;
    }

    for (node = ngx_rbtree_min(root, sentinel);
         node != NULL;
         node = ngx_rbtree_next(&pz->sh->quotas, node))
    {
        q = (ngx_http_taurus_guard_quota_node_t *) node;

        /* the policy of this configuration: a reload may have changed it */

        p = ngx_http_taurus_guard_policy_find(mcf, q->project);
        if (p == NULL || p->quota == 0) {
            continue;
        }

        st = ngx_array_push(out);
        if (st == NULL) {
            break;
        }

        ngx_memcpy(st->project, q->project, TG_PROJECT_ID_LEN);
        st->used = ngx_http_taurus_guard_quota_used(q, p->quota_period, now);
        st->limit = p->quota;
        st->period = p->quota_period / 1000;
    }

done:

    ngx_shmtx_unlock(&pz->shpool->mutex);

    return NGX_OK;
}


/*
 * A project's quota ring, created (or grown to size, after a reload that
 * raised the quota) when size is not 0.
 */

static ngx_http_taurus_guard_quota_node_t *
ngx_http_taurus_guard_quota_find(ngx_http_taurus_guard_policy_zone_t *pz,
    u_char *project, ngx_uint_t size)
{
    uint32_t                             hash;
    ngx_int_t                            rc;
    ngx_uint_t                           i;
    ngx_rbtree_node_t                   *node, *sentinel;
    ngx_http_taurus_guard_quota_node_t  *q, *nq;

    hash = ngx_crc32_short(project, TG_PROJECT_ID_LEN);

    node = pz->sh->quotas.root;
    sentinel = pz->sh->quotas.sentinel;
    q = NULL;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        /* equal keys are ordered by project: see quota_insert() */

        rc = ngx_memcmp(project,
                        ((ngx_http_taurus_guard_quota_node_t *) node)->project,
                        TG_PROJECT_ID_LEN);

        if (rc == 0) {
            q = (ngx_http_taurus_guard_quota_node_t *) node;
            break;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (size == 0 || (q != NULL && q->size >= size)) {
        return q;
    }

    nq = ngx_http_taurus_guard_policy_alloc(pz,
             offsetof(ngx_http_taurus_guard_quota_node_t, ring)
             + size * sizeof(ngx_http_taurus_guard_spend_t));
    if (nq == NULL) {
        return NULL;
    }

    ngx_memcpy(nq->project, project, TG_PROJECT_ID_LEN);
    nq->size = size;
    nq->head = 0;
    nq->n = 0;

    if (q != NULL) {
        for (i = 0; i < q->n; i++) {
            nq->ring[i] = q->ring[(q->head + i) % q->size];
        }

        nq->n = q->n;

        ngx_rbtree_delete(&pz->sh->quotas, &q->node);
        ngx_slab_free_locked(pz->shpool, q);
    }

    nq->node.key = hash;
    ngx_rbtree_insert(&pz->sh->quotas, &nq->node);

    return nq;
}


/* instances forwarded in the last period; older entries are dropped */

static ngx_uint_t
ngx_http_taurus_guard_quota_used(ngx_http_taurus_guard_quota_node_t *q,
    ngx_msec_t period, ngx_msec_t now)
{
    ngx_uint_t  i, used;

    while (q->n
           && ngx_http_tg_age(now, q->ring[q->head].time)
              >= (ngx_msec_int_t) period)
    {
        q->head = (q->head + 1) % q->size;
        q->n--;
    }

    used = 0;

    for (i = 0; i < q->n; i++) {
        used += q->ring[(q->head + i) % q->size].count;
    }

    return used;
}


static void
ngx_http_taurus_guard_quota_squeeze(ngx_http_taurus_guard_quota_node_t *q)
{
    ngx_uint_t                      i, n;
    ngx_http_taurus_guard_spend_t  *s;

    n = 0;

    for (i = 0; i < q->n; i++) {
        s = &q->ring[(q->head + i) % q->size];

        if (s->count) {
            q->ring[(q->head + n) % q->size] = *s;
            n++;
        }
    }

    q->n = n;
}


/* seconds until need instances of the quota come free */

static time_t
ngx_http_taurus_guard_quota_retry(ngx_http_taurus_guard_quota_node_t *q,
    ngx_uint_t need, ngx_msec_t period, ngx_msec_t now)
{
    ngx_uint_t                      i, freed;
    ngx_http_taurus_guard_spend_t  *s;

    freed = 0;

    for (i = 0; i < q->n; i++) {
        s = &q->ring[(q->head + i) % q->size];
        freed += s->count;

        if (freed >= need) {
            return (time_t) ((s->time + period - now + 999) / 1000);
        }
    }

    return (time_t) ((period + 999) / 1000);
}


static ngx_http_taurus_guard_inst_node_t *
ngx_http_taurus_guard_inst_find(ngx_http_taurus_guard_policy_zone_t *pz,
    u_char *project, tg_str_t *instance, ngx_uint_t create)
{
    uint32_t                            hash;
    ngx_int_t                           rc;
    ngx_rbtree_node_t                  *node, *sentinel;
    ngx_http_taurus_guard_inst_node_t  *in;

    ngx_crc32_init(hash);
    ngx_crc32_update(&hash, project, TG_PROJECT_ID_LEN);
    ngx_crc32_update(&hash, (u_char *) instance->data, instance->len);
    ngx_crc32_final(hash);

    node = pz->sh->instances.root;
    sentinel = pz->sh->instances.sentinel;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        /* equal keys are ordered by name: see inst_insert() */

        in = (ngx_http_taurus_guard_inst_node_t *) node;
        rc = ngx_http_taurus_guard_inst_cmp(project, (u_char *) instance->data,
                                            instance->len, in);

        if (rc == 0) {
            if (!in->held) {
                /* the least recently used idle ones are dropped first */
                ngx_http_taurus_guard_inst_queue(pz, in, 0);
            }

            return in;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (!create || instance->len > TG_INSTANCE_ID_MAX_LEN) {
        return NULL;
    }

    in = ngx_http_taurus_guard_policy_alloc(pz,
                              sizeof(ngx_http_taurus_guard_inst_node_t));
    if (in == NULL) {
        return NULL;
    }

    ngx_memzero(in, sizeof(ngx_http_taurus_guard_inst_node_t));

    ngx_memcpy(in->project, project, TG_PROJECT_ID_LEN);
    ngx_memcpy(in->instance, instance->data, instance->len);
    in->len = (u_char) instance->len;

    /* never one a batch of a node dropped before took */
    in->epoch = ++pz->sh->epoch;

    in->node.key = hash;
    ngx_rbtree_insert(&pz->sh->instances, &in->node);
    ngx_queue_insert_head(&pz->sh->idle, &in->queue);

    return in;
}


/* a total order of instances: project, then the instance id */

static ngx_int_t
ngx_http_taurus_guard_inst_cmp(u_char *project, u_char *instance,
    size_t len, ngx_http_taurus_guard_inst_node_t *in)
{
    ngx_int_t  rc;

    rc = ngx_memcmp(project, in->project, TG_PROJECT_ID_LEN);

    if (rc != 0) {
        return rc;
    }

    return ngx_memn2cmp(instance, in->instance, len, in->len);
}


/*
 * Batches in flight whose newest started longer ago than the longest
 * flight are lost (their workers were killed, and never gave back their
 * count): no end came, as if unanswered, so the instance cools down from
 * the newest one's start, unless a longer cooldown holds it already.
 * Their ends, should one come after all, no longer count: the count in
 * flight gets an epoch of the zone's that no batch took, the node's nor
 * any other's, so not even once a full zone dropped the node and made it
 * again for another batch.
 */

static void
ngx_http_taurus_guard_inst_lost(ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in, ngx_msec_t now)
{
    if (in->inflight_n == 0
        || ngx_http_tg_age(now, in->inflight_since) < NGX_HTTP_TG_INFLIGHT_MAX)
    {
        return;
    }

    if (!in->last_ok
        || (ngx_msec_int_t) (in->inflight_until - in->until) > 0)
    {
        in->last_ok = in->inflight_since ? in->inflight_since : 1;
        in->until = in->inflight_until;
        in->unanswered = 1;
        ngx_memcpy(in->last_id, in->inflight, TG_AUDIT_ID_LEN);
    }

    in->epoch = ++pz->sh->epoch;
    in->inflight_n = 0;
    ngx_memzero(in->inflight, TG_AUDIT_ID_LEN);
}


/* in flight, or cooling down (a lost batch's mark made its cooldown) */

static ngx_uint_t
ngx_http_taurus_guard_inst_holds(ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in, ngx_msec_t now)
{
    ngx_http_taurus_guard_inst_lost(pz, in, now);

    if (in->inflight_n) {
        return 1;
    }

    return in->last_ok && (ngx_msec_int_t) (in->until - now) > 0;
}


/* to the head of the held queue, or of the idle one */

static void
ngx_http_taurus_guard_inst_queue(ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in, ngx_uint_t held)
{
    ngx_queue_remove(&in->queue);
    ngx_queue_insert_head(held ? &pz->sh->held : &pz->sh->idle, &in->queue);
    in->held = held ? 1 : 0;
}


static void
ngx_http_taurus_guard_inst_free(ngx_http_taurus_guard_policy_zone_t *pz,
    ngx_http_taurus_guard_inst_node_t *in)
{
    ngx_queue_remove(&in->queue);
    ngx_rbtree_delete(&pz->sh->instances, &in->node);
    ngx_slab_free_locked(pz->shpool, in);
}


static void
ngx_http_taurus_guard_policy_unpin(ngx_http_taurus_guard_inst_node_t **nodes,
    ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (nodes[i] != NULL) {
            nodes[i]->pinned = 0;
        }
    }
}


/*
 * From the zone, making room if needed.  An instance that holds nothing
 * goes first, the least recently used of the idle queue; the batch being
 * checked pinned its own, the most recent, so the first pinned one ends
 * the walk.  Then an instance whose cooldown is over, from the tail of
 * the held queue: one still held (or pinned) is moved to the head, so
 * that the next allocation looks past it, and at most
 * NGX_HTTP_TG_HELD_SCAN of them are looked at, so the work under the
 * lock stays bounded.  Each node dropped was made by some batch before.
 */

static void *
ngx_http_taurus_guard_policy_alloc(ngx_http_taurus_guard_policy_zone_t *pz,
    size_t size)
{
    void                               *p;
    ngx_uint_t                          skipped;
    ngx_msec_t                          now;
    ngx_queue_t                        *q;
    ngx_http_taurus_guard_inst_node_t  *in;

    p = ngx_slab_alloc_locked(pz->shpool, size);
    if (p != NULL) {
        return p;
    }

    while (!ngx_queue_empty(&pz->sh->idle)) {
        q = ngx_queue_last(&pz->sh->idle);
        in = ngx_queue_data(q, ngx_http_taurus_guard_inst_node_t, queue);

        if (in->pinned) {
            break;
        }

        ngx_http_taurus_guard_inst_free(pz, in);

        p = ngx_slab_alloc_locked(pz->shpool, size);
        if (p != NULL) {
            return p;
        }
    }

    now = ngx_current_msec;
    skipped = 0;

    while (!ngx_queue_empty(&pz->sh->held)
           && skipped < NGX_HTTP_TG_HELD_SCAN)
    {
        q = ngx_queue_last(&pz->sh->held);
        in = ngx_queue_data(q, ngx_http_taurus_guard_inst_node_t, queue);

        if (in->pinned || ngx_http_taurus_guard_inst_holds(pz, in, now)) {
            ngx_queue_remove(q);
            ngx_queue_insert_head(&pz->sh->held, q);
            skipped++;
            continue;
        }

        ngx_http_taurus_guard_inst_free(pz, in);

        p = ngx_slab_alloc_locked(pz->shpool, size);
        if (p != NULL) {
            return p;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_taurus_guard_verdict(ngx_http_request_t *r,
    ngx_http_taurus_guard_verdict_t *v, ngx_uint_t status, const char *fmt,
    ...)
{
    u_char   *p, buf[512];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    /* a verdict replaces the one before, its Retry-After too */

    v->status = status;
    v->retry_after = 0;
    v->reason.len = p - buf;
    v->reason.data = ngx_pnalloc(r->pool, v->reason.len);

    if (v->reason.data == NULL) {
        /* no reason: the caller says it could not check the policy */
        v->reason.len = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(v->reason.data, buf, v->reason.len);

    return NGX_DECLINED;
}
