/*
 * IAM token requests: the request body and the expiry of the answer.
 */

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "tg_escape.h"
#include "tg_iam.h"


static int64_t tg_days_from_civil(int64_t y, unsigned m, unsigned d);
static int tg_digits(const char *p, size_t n, unsigned *v);
static tg_rc_t tg_time_parse(const char *v, int64_t *t);
static int tg_metadata_word(const char *v);
static tg_rc_t tg_answer_parse(const unsigned char *body, size_t len,
    cJSON **root);
static const cJSON *tg_answer_member(const cJSON *object, const char *name,
    tg_rc_t *rc);
static void tg_answer_wipe(cJSON *item);
static void tg_answer_free(void *p);
static void tg_iam_identity_part(tg_sha256_t *sha, const tg_str_t *s);


#define tg_lit(s)  (const unsigned char *) (s), sizeof(s) - 1


static cJSON_Hooks  tg_answer_hooks = { NULL, tg_answer_free };


/*
 * The request body's own writer, not tg_out.h's: tg_iam_body() sizes
 * the body, then writes it only into a buffer it fits whole.
 */
typedef struct {
    unsigned char  *buf;
    size_t          size;
    size_t          len;
} tg_iam_out_t;


/* one request body: the password method's, or an agency's */
typedef struct {
    const tg_iam_cred_t  *cred;         /* the password method */
    const tg_str_t       *domain;       /* or assume_role */
    const tg_str_t       *agency;
    const tg_str_t       *project;      /* NULL: the user's domain */
} tg_iam_req_t;


static size_t tg_iam_body(const tg_iam_req_t *q, unsigned char *buf,
    size_t size);
static void tg_iam_emit(tg_iam_out_t *o, const tg_iam_req_t *q);
static void tg_iam_raw(tg_iam_out_t *o, const unsigned char *s, size_t n);
static void tg_iam_str(tg_iam_out_t *o, const tg_str_t *s);


size_t
tg_iam_request_body(const tg_iam_cred_t *c, const unsigned char *project,
    size_t plen, unsigned char *buf, size_t size)
{
    tg_str_t      p;
    tg_iam_req_t  q;

    p.data = project;
    p.len = plen;

    q.cred = c;
    q.domain = NULL;
    q.agency = NULL;
    q.project = (project != NULL) ? &p : NULL;

    return tg_iam_body(&q, buf, size);
}


size_t
tg_iam_agency_body(const tg_str_t *domain, const tg_str_t *agency,
    const unsigned char *project, size_t plen, unsigned char *buf,
    size_t size)
{
    tg_str_t      p;
    tg_iam_req_t  q;

    p.data = project;
    p.len = plen;

    q.cred = NULL;
    q.domain = domain;
    q.agency = agency;
    q.project = &p;

    return tg_iam_body(&q, buf, size);
}


tg_rc_t
tg_iam_identity(const tg_iam_cred_t *c, const tg_str_t *domain,
    const tg_str_t *agency, unsigned char md[TG_SHA256_LEN])
{
    tg_rc_t        rc;
    unsigned char  parts;
    tg_sha256_t    sha;

    parts = (agency != NULL) ? 5 : 3;

    tg_sha256_init(&sha);
    tg_sha256_update(&sha, &parts, 1);

    tg_iam_identity_part(&sha, &c->domain);
    tg_iam_identity_part(&sha, &c->user);
    tg_iam_identity_part(&sha, &c->password);

    if (agency != NULL) {
        tg_iam_identity_part(&sha, domain);
        tg_iam_identity_part(&sha, agency);
    }

    /* the state held the password: wiped, not only finalized */
    rc = tg_sha256_final(&sha, md);
    tg_sha256_wipe(&sha);

    return rc;
}


/* a part of an identity: its length (32 bits, big-endian), then it */

static void
tg_iam_identity_part(tg_sha256_t *sha, const tg_str_t *s)
{
    unsigned char  len[4];

    len[0] = (unsigned char) (s->len >> 24);
    len[1] = (unsigned char) (s->len >> 16);
    len[2] = (unsigned char) (s->len >> 8);
    len[3] = (unsigned char) s->len;

    tg_sha256_update(sha, len, sizeof(len));
    tg_sha256_update(sha, s->data, s->len);
}


/* sized first, then written only if it all fits */

static size_t
tg_iam_body(const tg_iam_req_t *q, unsigned char *buf, size_t size)
{
    size_t        len;
    tg_iam_out_t  o;

    o.buf = NULL;
    o.size = 0;
    o.len = 0;
    tg_iam_emit(&o, q);
    len = o.len;

    if (buf != NULL && size >= len) {
        o.buf = buf;
        o.size = size;
        o.len = 0;
        tg_iam_emit(&o, q);
    }

    return len;
}


static void
tg_iam_emit(tg_iam_out_t *o, const tg_iam_req_t *q)
{
    if (q->cred == NULL) {
        tg_iam_raw(o, tg_lit("{\"auth\":{\"identity\":{\"methods\":"
                             "[\"assume_role\"],\"assume_role\":"
                             "{\"domain_name\":\""));
        tg_iam_str(o, q->domain);
        tg_iam_raw(o, tg_lit("\",\"agency_name\":\""));
        tg_iam_str(o, q->agency);
        tg_iam_raw(o, tg_lit("\"}},\"scope\":{\"project\":{\"id\":\""));
        tg_iam_str(o, q->project);
        tg_iam_raw(o, tg_lit("\"}}}}"));
        return;
    }

    tg_iam_raw(o, tg_lit("{\"auth\":{\"identity\":{\"methods\":"
                         "[\"password\"],\"password\":{\"user\":"
                         "{\"name\":\""));
    tg_iam_str(o, &q->cred->user);
    tg_iam_raw(o, tg_lit("\",\"password\":\""));
    tg_iam_str(o, &q->cred->password);
    tg_iam_raw(o, tg_lit("\",\"domain\":{\"name\":\""));
    tg_iam_str(o, &q->cred->domain);

    if (q->project == NULL) {
        tg_iam_raw(o, tg_lit("\"}}}},\"scope\":{\"domain\":"
                             "{\"name\":\""));
        tg_iam_str(o, &q->cred->domain);

    } else {
        tg_iam_raw(o, tg_lit("\"}}}},\"scope\":{\"project\":"
                             "{\"id\":\""));
        tg_iam_str(o, q->project);
    }

    tg_iam_raw(o, tg_lit("\"}}}}"));
}


static void
tg_iam_raw(tg_iam_out_t *o, const unsigned char *s, size_t n)
{
    if (o->buf != NULL && o->len + n <= o->size) {
        memcpy(o->buf + o->len, s, n);
    }

    o->len += n;
}


static void
tg_iam_str(tg_iam_out_t *o, const tg_str_t *s)
{
    size_t  n;

    n = tg_json_escaped_len(s->data, s->len);

    if (o->buf != NULL && o->len + n <= o->size) {
        tg_json_escape(o->buf + o->len, s->data, s->len);
    }

    o->len += n;
}


tg_rc_t
tg_iam_expires_at(const unsigned char *body, size_t len, int64_t *expires)
{
    cJSON        *root;
    tg_rc_t       rc;
    const cJSON  *token, *at;

    rc = tg_answer_parse(body, len, &root);

    if (rc != TG_OK) {
        goto done;
    }

    token = tg_answer_member(root, "token", &rc);
    at = tg_answer_member(token, "expires_at", &rc);

    if (rc != TG_OK) {
        goto done;
    }

    if (at == NULL) {
        rc = TG_ERR_MISSING_KEY;
        goto done;
    }

    rc = tg_time_parse(cJSON_GetStringValue(at), expires);

done:

    cJSON_Delete(root);

    return rc;
}


static int
tg_metadata_word(const char *v)
{
    for ( /* void */ ; *v != '\0'; v++) {
        if ((unsigned char) *v <= 0x20 || (unsigned char) *v >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


tg_rc_t
tg_metadata_profile(const unsigned char *body, size_t len,
    unsigned char *out, size_t size, size_t *outlen, int64_t *expires)
{
    int           n;
    cJSON        *root;
    tg_rc_t       rc;
    const char   *a, *s, *t;
    const cJSON  *cred, *ak, *sk, *token, *at;

    rc = tg_answer_parse(body, len, &root);

    if (rc != TG_OK) {
        goto done;
    }

    cred = tg_answer_member(root, "credential", &rc);
    ak = tg_answer_member(cred, "access", &rc);
    sk = tg_answer_member(cred, "secret", &rc);
    token = tg_answer_member(cred, "securitytoken", &rc);
    at = tg_answer_member(cred, "expires_at", &rc);

    if (rc != TG_OK) {
        goto done;
    }

    a = cJSON_GetStringValue(ak);
    s = cJSON_GetStringValue(sk);
    t = cJSON_GetStringValue(token);

    if (a == NULL || s == NULL || t == NULL || at == NULL
        || *a == '\0' || *s == '\0' || *t == '\0')
    {
        rc = TG_ERR_MISSING_KEY;
        goto done;
    }

    /*
     * Each value is one word of printable ASCII, as tg_cred_parse() takes
     * them: a line feed would start a line of its own in the profile
     * (a "security_token=" or a "[section]" of the answer's choosing), and
     * trailing blanks would be cut.
     */

    if (!tg_metadata_word(a) || !tg_metadata_word(s) || !tg_metadata_word(t))
    {
        rc = TG_ERR_CRED_BAD_VALUE;
        goto done;
    }

    rc = tg_time_parse(cJSON_GetStringValue(at), expires);
    if (rc != TG_OK) {
        goto done;
    }

    n = snprintf((char *) out, size, "[basic]\nak=%s\nsk=%s\n"
                 "security_token=%s\n", a, s, t);

    if (n < 0 || (size_t) n >= size) {
        rc = TG_ERR_BUF_TOO_SMALL;
        goto done;
    }

    *outlen = (size_t) n;
    rc = TG_OK;

done:

    /* the tree held the secret too, wherever the answer put it */

    tg_answer_wipe(root);
    cJSON_Delete(root);

    return rc;
}


/*
 * An answer of IAM's or the metadata service's as one JSON object, read
 * the one way any reader reads it.  cJSON alone keeps a "\u0000" (or a
 * raw NUL) in a string, where every C string read from it then ends
 * ("...Z\u0000+08:00" read as UTC, a secret cut short), and stops after
 * the value, whatever follows.  A NUL is looked for in the bytes, before
 * any string of the answer is copied; *root is the tree, when there is
 * one, also with TG_ERR_TRAILING or TG_ERR_SYNTAX: the caller frees it.
 */

static tg_rc_t
tg_answer_parse(const unsigned char *body, size_t len, cJSON **root)
{
    size_t       i;
    const char  *end, *last;

    *root = NULL;

    if (memchr(body, '\0', len) != NULL) {
        return TG_ERR_NUL_ESCAPE;
    }

    /* outside an escape, a backslash starts one: "\\u0000" is none */

    for (i = 0; i < len; i++) {
        if (body[i] != '\\' || ++i == len) {
            continue;
        }

        if (body[i] == 'u' && len - i > 4
            && memcmp(&body[i + 1], "0000", 4) == 0)
        {
            return TG_ERR_NUL_ESCAPE;
        }
    }

    /*
     * A parse that fails half way frees what it has read itself, a secret
     * string too: cJSON frees through its hooks, so every block it frees
     * is wiped first.  The hooks are the process's; they are set again
     * here, before each parse, in case anything else changed them.
     */

    cJSON_InitHooks(&tg_answer_hooks);

    *root = cJSON_ParseWithLengthOpts((const char *) body, len, &end, 0);

    if (*root == NULL) {
        return TG_ERR_SYNTAX;
    }

    last = (const char *) body + len;

    while (end < last
           && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
    {
        end++;
    }

    if (end != last) {
        return TG_ERR_TRAILING;
    }

    return cJSON_IsObject(*root) ? TG_OK : TG_ERR_SYNTAX;
}


/*
 * object's one member called name, or NULL: none, or object is not an
 * object.  Of two, cJSON would take the first and other readers the
 * last: *rc is set to TG_ERR_DUP_KEY (and NULL returned), else kept.
 */

static const cJSON *
tg_answer_member(const cJSON *object, const char *name, tg_rc_t *rc)
{
    const cJSON  *item, *found;

    if (!cJSON_IsObject(object)) {
        return NULL;
    }

    found = NULL;

    cJSON_ArrayForEach(item, object) {
        if (item->string == NULL || strcmp(item->string, name) != 0) {
            continue;
        }

        if (found != NULL) {
            *rc = TG_ERR_DUP_KEY;
            return NULL;
        }

        found = item;
    }

    return found;
}


/*
 * cJSON's free: the whole block wiped, whatever cJSON kept in it (a
 * string of the answer, a node).  Blocks come from malloc(), cJSON's
 * allocator when no other is set, so malloc_usable_size() knows them.
 */

static void
tg_answer_free(void *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}


/* every string value of the tree; NUL-free, as tg_answer_parse() saw */

static void
tg_answer_wipe(cJSON *item)
{
    for ( /* void */ ; item != NULL; item = item->next) {
        if (item->valuestring != NULL) {
            OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
        }

        tg_answer_wipe(item->child);
    }
}


/*
 * "YYYY-MM-DDTHH:MM:SS[.fraction]Z" as Unix time, the form IAM and the
 * metadata service write: UTC only, a fraction of one to nine digits,
 * a day that its month has.  Anything else is refused, not read as the
 * nearest time: an offset read as UTC, or the 31st of February as the
 * 3rd of March, would keep a token longer than it lives.
 */

static tg_rc_t
tg_time_parse(const char *v, int64_t *t)
{
    size_t    n, i;
    unsigned  y, mo, d, h, mi, s, mdays;

    static const unsigned char  days[12] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (v == NULL) {
        return TG_ERR_TYPE;
    }

    n = strlen(v);

    if (n < 20
        || !tg_digits(v, 4, &y) || v[4] != '-'
        || !tg_digits(v + 5, 2, &mo) || v[7] != '-'
        || !tg_digits(v + 8, 2, &d) || v[10] != 'T'
        || !tg_digits(v + 11, 2, &h) || v[13] != ':'
        || !tg_digits(v + 14, 2, &mi) || v[16] != ':'
        || !tg_digits(v + 17, 2, &s)
        || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
    {
        return TG_ERR_TYPE;
    }

    i = 19;

    if (v[i] == '.') {
        for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
            /* void */
        }

        if (i == 20 || i > 29) {
            return TG_ERR_TYPE;
        }
    }

    if (v[i] != 'Z' || i + 1 != n) {
        return TG_ERR_TYPE;
    }

    mdays = days[mo - 1];

    if (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
        mdays = 29;
    }

    if (d > mdays) {
        return TG_ERR_TYPE;
    }

    *t = tg_days_from_civil(y, mo, d) * 86400
         + (int64_t) h * 3600 + mi * 60 + s;

    return TG_OK;
}


static int
tg_digits(const char *p, size_t n, unsigned *v)
{
    size_t  i;

    *v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        *v = *v * 10 + (unsigned) (p[i] - '0');
    }

    return 1;
}


/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */

static int64_t
tg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t   era;
    unsigned  yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}
