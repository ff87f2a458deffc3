/*
 * Unit tests of the audit record encoder (src/tg_audit.c).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tg_audit.h"
#include "tg_audit_read.h"
#include "tg_sign.h"
#include "tap.h"


#define ID   "5f0c2a9e8d7b4c1a9e3f6d2b8a7c4e10"
#define P1   "0123456789abcdef0123456789abcdef"
#define I1   "6754902da1f447269c6979b0590102a5in07"
#define I2   "a1b2c3d4e5f60718293a4b5c6d7e8f90in07"
#define V1   "2.0.48.231200"
#define SHA  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define POL  "b52d9f7c43443ebdbf9f5c4ea1cfa82388659474cd75209e41141ecf6ae66f6c"
#define URI  "/v3/" P1 "/instances/database-version/upgrade"

#define STR(s)  { (const unsigned char *) (s), sizeof(s) - 1 }


static void test_names(void);
static void test_rfc3339(void);
static void rfc3339_like_gmtime(void);
static void test_allow_record(void);
static void test_deny_record(void);
static void test_minimal_and_done(void);
static void test_hostile(void);
static void test_request_id(void);
static void test_long_fields(void);
static void test_chain_brief(void);
static void test_bound(void);
static void test_stand_in(void);
static void chain_of_body(const char *body, const char *what);
static unsigned char *encode(const tg_audit_record_t *r, size_t *len,
    const char *what);
static void one_pass(const tg_audit_record_t *r, const unsigned char *want,
    size_t n, const char *what);
static void record_init(tg_audit_record_t *r);


static void
record_init(tg_audit_record_t *r)
{
    memset(r, 0, sizeof(tg_audit_record_t));
    r->id = ID;
    r->time_sec = 1764450000;
    r->time_msec = 7;
    r->client.data = (const unsigned char *) "127.0.0.1";
    r->client.len = 9;
    r->duration_ms = -1;
    r->bytes = -1;
}


/*
 * Encodes r and checks the length contract on the way: sizing with a
 * NULL buffer, a buffer one byte short (nothing written), and an exact
 * heap buffer with guard bytes after it (exactly len written).
 * Returns a NUL-terminated copy of the record (the caller frees it).
 */
static unsigned char *
encode(const tg_audit_record_t *r, size_t *len, const char *what)
{
    size_t          n, i, untouched;
    unsigned char  *buf, *copy;

    n = tg_audit_encode(r, NULL, 0);
    ok(n > 2, "%s: sized with a NULL buffer (%zu bytes)", what, n);

    buf = malloc(n + 16);
    copy = malloc(n + 1);
    if (buf == NULL || copy == NULL) {
        free(buf);
        free(copy);
        ok(0, "%s: malloc", what);
        return NULL;
    }

    memset(buf, 0xa5, n + 16);
    is_int(tg_audit_encode(r, buf, n - 1), n, "%s: one byte short: length",
           what);

    untouched = 0;
    for (i = 0; i < n + 16; i++) {
        untouched += (buf[i] == 0xa5);
    }

    is_int(untouched, n + 16, "%s: one byte short: nothing written", what);

    is_int(tg_audit_encode(r, buf, n), n, "%s: exact buffer: length", what);

    untouched = 0;
    for (i = n; i < n + 16; i++) {
        untouched += (buf[i] == 0xa5);
    }

    is_int(untouched, 16, "%s: nothing written past the length", what);
    ok(buf[n - 1] == '\n', "%s: ends with a newline", what);
    ok(memchr(buf, '\n', n - 1) == NULL, "%s: one line", what);

    /* the same bytes into a buffer with room to spare */
    memcpy(copy, buf, n);
    memset(buf, 0xa5, n + 16);
    is_int(tg_audit_encode(r, buf, n + 16), n, "%s: larger buffer: length",
           what);
    ok(memcmp(copy, buf, n) == 0 && buf[n] == 0xa5,
       "%s: larger buffer: same bytes", what);

    one_pass(r, copy, n, what);

    copy[n] = '\0';
    free(buf);

    *len = n;
    return copy;
}


/*
 * The gateway's way: a buffer of the bound, the head and the link in one
 * pass through a hashing writer.  The same bytes as tg_audit_encode(),
 * and the writer's hash is the line's link (tg_audit_chain_digest()).
 */
static void
one_pass(const tg_audit_record_t *r, const unsigned char *want, size_t n,
    const char *what)
{
    size_t          bound, head;
    tg_out_t        o;
    tg_sha256_t     sha;
    unsigned char  *buf, md[TG_SHA256_LEN];
    char            hex[65], want_hex[65];

    bound = tg_audit_bound(r);
    ok(bound >= n, "%s: the bound (%zu) holds the record (%zu)", what,
       bound, n);

    buf = malloc(bound);
    if (buf == NULL) {
        ok(0, "%s: malloc", what);
        return;
    }

    tg_out_init(&o, buf, bound);
    tg_sha256_init(&sha);
    tg_out_hash(&o, &sha);

    tg_audit_write_head(&o, r);
    head = o.len;
    tg_audit_write_link(&o, r->prev);

    ok(!o.overflow && o.len == n && o.pos == n && memcmp(buf, want, n) == 0,
       "%s: one pass into the bound: the same bytes", what);

    if (r->prev != NULL && strlen(r->prev) == 64) {
        ok(n - head == TG_AUDIT_LINK_LEN, "%s: the link is %zu bytes, as"
           " TG_AUDIT_LINK_LEN says", what, n - head);
    }

    is_rc(tg_out_sha256(&o, md), TG_OK, "%s: the writer's hash", what);
    tg_sha256_hex_of(md, hex);

    if (tg_audit_chain_digest(want, n, want_hex) != TG_OK) {
        want_hex[0] = '\0';
    }

    is_str(hex, want_hex, "%s: the writer hashed the line's link", what);

    free(buf);
}


static void
test_names(void)
{
    is_str(tg_decision_name(TG_DECISION_ALLOW), "allow", "allow");
    is_str(tg_decision_name(TG_DECISION_DENY), "deny", "deny");
    is_str(tg_decision_name(TG_DECISION_INVALID), "invalid", "invalid");
    is_str(tg_decision_name(TG_DECISION_ERROR), "error", "error");
    is_str(tg_decision_name(TG_DECISION_DONE), "done", "done");
    is_str(tg_decision_name((tg_decision_t) 42), "unknown",
           "out of the enum");
}


static void
test_rfc3339(void)
{
    char  out[TG_RFC3339_MS_LEN + 1];

    /* the expected values are `date -u -d @SECONDS +%FT%T` plus the ms */

    is_rc(tg_rfc3339_ms(0, 0, out), TG_OK, "epoch");
    is_str(out, "1970-01-01T00:00:00.000Z", "epoch text");

    is_rc(tg_rfc3339_ms(1764450000, 7, out), TG_OK, "1764450000.007");
    is_str(out, "2025-11-29T21:00:00.007Z", "1764450000.007 text");

    is_rc(tg_rfc3339_ms(951827696, 999, out), TG_OK, "leap day");
    is_str(out, "2000-02-29T12:34:56.999Z", "leap day text");

    is_rc(tg_rfc3339_ms(-1, 500, out), TG_OK, "one second before epoch");
    is_str(out, "1969-12-31T23:59:59.500Z", "before epoch text");

    is_rc(tg_rfc3339_ms(253402300799LL, 999, out), TG_OK, "last of 9999");
    is_str(out, "9999-12-31T23:59:59.999Z", "last of 9999 text");
    is_int(strlen(out), TG_RFC3339_MS_LEN, "24 characters");

    is_rc(tg_rfc3339_ms(-62167219200LL, 0, out), TG_OK, "first of year 0");
    is_str(out, "0000-01-01T00:00:00.000Z", "first of year 0 text");

    is_rc(tg_rfc3339_ms(253402300800LL, 0, out), TG_ERR_ARG, "year 10000");
    is_rc(tg_rfc3339_ms(-62167219201LL, 0, out), TG_ERR_ARG, "year -1");
    is_rc(tg_rfc3339_ms(INT64_MAX, 0, out), TG_ERR_ARG, "INT64_MAX");
    is_rc(tg_rfc3339_ms(INT64_MIN, 0, out), TG_ERR_ARG, "INT64_MIN");
    is_rc(tg_rfc3339_ms(0, 1000, out), TG_ERR_ARG, "msec 1000");
    is_rc(tg_rfc3339_ms(0, -1, out), TG_ERR_ARG, "msec -1");
    is_rc(tg_rfc3339_ms(0, 0, NULL), TG_ERR_ARG, "NULL out");

    rfc3339_like_gmtime();
}


/*
 * The calendar arithmetic against the C library's gmtime_r(): every day
 * boundary around the leap rules (1600, 1900, 2000, 2100), then seconds
 * spread over the whole range the format holds.
 */
static void
rfc3339_like_gmtime(void)
{
    int        bad;
    time_t     t;
    int64_t    sec, step;
    uint64_t   x;
    struct tm  tm;
    char       out[TG_RFC3339_MS_LEN + 1], want[64];

    static const int64_t  starts[] = {
        -62167219200LL, -11676096000LL, -2208988800LL, 946684800LL,
        4102444800LL, 253370764800LL
    };

    bad = 0;
    x = 88172645463325252ULL;

    for (step = 0; step < 6 * 3000 + 200000 && bad < 5; step++) {
        if (step < 6 * 3000) {
            /* 1500 days either side of each start, at a day's last second */
            sec = starts[step / 3000] + (step % 3000 - 1500) * 86400LL
                  + 86399;

        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sec = -62167219200LL + (int64_t) (x % 315569520000ULL);
        }

        if (sec < -62167219200LL || sec > 253402300799LL) {
            continue;
        }

        t = (time_t) sec;

        if (gmtime_r(&t, &tm) == NULL
            || tg_rfc3339_ms(sec, 123, out) != TG_OK)
        {
            bad++;
            printf("# %lld: no time\n", (long long) sec);
            continue;
        }

        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.123Z",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);

        if (strcmp(out, want) != 0) {
            bad++;
            printf("# %lld: %s, gmtime_r() says %s\n", (long long) sec, out,
                   want);
        }
    }

    is_int(bad, 0, "the same calendar as gmtime_r() over years 0 to 9999");
}


static void
test_allow_record(void)
{
    size_t              len;
    unsigned char      *s;
    tg_instance_t       inst[2];
    tg_audit_record_t   r;

    static const tg_str_t  i1 = STR(I1), i2 = STR(I2), v1 = STR(V1);

    record_init(&r);

    inst[0].instance_id = i1;
    inst[0].current_version = v1;
    inst[1].instance_id = i2;
    inst[1].current_version = v1;

    r.decision = TG_DECISION_ALLOW;
    r.project_id.data = (const unsigned char *) P1;
    r.project_id.len = 32;
    r.method.data = (const unsigned char *) "POST";
    r.method.len = 4;
    r.uri.data = (const unsigned char *) URI;
    r.uri.len = sizeof(URI) - 1;
    r.instances = inst;
    r.ninstances = 2;
    r.has_delay = 1;
    r.delay = 0;
    r.delay_kind = TG_DELAY_STRING;
    r.body_sha256 = SHA;
    r.user.data = (const unsigned char *) "alice";
    r.user.len = 5;
    r.policy.data = (const unsigned char *) POL;
    r.policy.len = 64;

    s = encode(&r, &len, "allow");
    if (s == NULL) {
        return;
    }

    is_str((char *) s,
           "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
           "\"client\":\"127.0.0.1\",\"project_id\":\"" P1 "\","
           "\"method\":\"POST\",\"uri\":\"" URI "\","
           "\"instances\":[{\"instance_id\":\"" I1 "\","
           "\"current_version\":\"" V1 "\"},{\"instance_id\":\"" I2 "\","
           "\"current_version\":\"" V1 "\"}],\"delay\":\"false\","
           "\"decision\":\"allow\",\"body_sha256\":\"" SHA "\","
           "\"user\":\"alice\",\"policy\":\"" POL "\"}\n",
           "allow record, byte for byte");
    free(s);

    /* the same with a JSON boolean delay, as the caller sent it */
    r.delay = 1;
    r.delay_kind = TG_DELAY_BOOL;
    r.ninstances = 1;

    s = encode(&r, &len, "allow, bool delay");
    if (s == NULL) {
        return;
    }

    is_str((char *) s,
           "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
           "\"client\":\"127.0.0.1\",\"project_id\":\"" P1 "\","
           "\"method\":\"POST\",\"uri\":\"" URI "\","
           "\"instances\":[{\"instance_id\":\"" I1 "\","
           "\"current_version\":\"" V1 "\"}],\"delay\":true,"
           "\"decision\":\"allow\",\"body_sha256\":\"" SHA "\","
           "\"user\":\"alice\",\"policy\":\"" POL "\"}\n",
           "allow record with delay true, byte for byte");
    free(s);
}


static void
test_deny_record(void)
{
    size_t              len;
    tg_str_t            denied[2];
    unsigned char      *s;
    tg_instance_t       inst[2];
    tg_audit_record_t   r;

    static const tg_str_t  i1 = STR(I1), i2 = STR(I2), v1 = STR(V1);

    record_init(&r);

    inst[0].instance_id = i1;
    inst[0].current_version = v1;
    inst[1].instance_id = i2;
    inst[1].current_version = v1;
    denied[0] = i1;
    denied[1] = i2;

    r.decision = TG_DECISION_DENY;
    r.project_id.data = (const unsigned char *) P1;
    r.project_id.len = 32;
    r.instances = inst;
    r.ninstances = 2;
    r.has_delay = 1;
    r.delay = 1;
    r.delay_kind = TG_DELAY_STRING;
    r.reason.data = (const unsigned char *) "instance not allowed";
    r.reason.len = 20;
    r.denied = denied;
    r.ndenied = 2;
    r.status = 403;

    s = encode(&r, &len, "deny");
    if (s == NULL) {
        return;
    }

    is_str((char *) s,
           "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
           "\"client\":\"127.0.0.1\",\"project_id\":\"" P1 "\","
           "\"instances\":[{\"instance_id\":\"" I1 "\","
           "\"current_version\":\"" V1 "\"},{\"instance_id\":\"" I2 "\","
           "\"current_version\":\"" V1 "\"}],\"delay\":\"true\","
           "\"decision\":\"deny\",\"reason\":\"instance not allowed\","
           "\"denied\":[\"" I1 "\",\"" I2 "\"],\"status\":403}\n",
           "deny record with the denied list, byte for byte");
    free(s);
}


static void
test_minimal_and_done(void)
{
    size_t              len;
    unsigned char      *s;
    tg_audit_record_t   r;

    record_init(&r);
    r.decision = TG_DECISION_INVALID;

    /* zero items with a non-NULL array are left out too */
    r.denied = (const tg_str_t *) &r.client;
    r.ndenied = 0;

    s = encode(&r, &len, "minimal");
    if (s != NULL) {
        is_str((char *) s,
               "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
               "\"client\":\"127.0.0.1\",\"decision\":\"invalid\"}\n",
               "minimal record: optional fields left out");
        free(s);
    }

    record_init(&r);
    r.decision = TG_DECISION_DONE;
    r.time_msec = 999;
    r.status = 200;
    r.duration_ms = 0;
    r.bytes = 9007199254740993LL;

    s = encode(&r, &len, "done");
    if (s != NULL) {
        is_str((char *) s,
               "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.999Z\","
               "\"client\":\"127.0.0.1\",\"decision\":\"done\","
               "\"status\":200,\"duration_ms\":0,"
               "\"bytes\":9007199254740993}\n",
               "done record with status, duration 0 and bytes");
        free(s);
    }

    /* numbers at the ends of their types, as printf writes them */
    record_init(&r);
    r.decision = TG_DECISION_DONE;
    r.status = -7;
    r.duration_ms = INT64_MIN;
    r.bytes = INT64_MAX;

    s = encode(&r, &len, "extreme numbers");
    if (s != NULL) {
        is_str((char *) s,
               "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
               "\"client\":\"127.0.0.1\",\"decision\":\"done\","
               "\"status\":-7,\"duration_ms\":-9223372036854775808,"
               "\"bytes\":9223372036854775807}\n",
               "negative and extreme numbers in decimal");
        free(s);
    }

    /*
     * Every number of up to four digits and each power of ten, one
     * below it, negated: written two digits at a time, as printf does.
     */
    {
        int            bad;
        char           want[64];
        size_t         i;
        int64_t        v, k;
        unsigned char  buf[1024];

        bad = 0;

        for (k = -10000; k < 10000 + 19 * 4; k++) {
            if (k < 10000) {
                v = k;

            } else {
                v = 1;
                for (i = 0; i < (size_t) (k - 10000) / 4; i++) {
                    v *= 10;
                }

                v = ((k - 10000) % 2) ? v - 1 : v;
                v = ((k - 10000) % 4) >= 2 ? -v : v;
            }

            if (v == -1) {
                /* "left out" */
                continue;
            }

            record_init(&r);
            r.decision = TG_DECISION_DONE;
            r.bytes = v;

            len = tg_audit_encode(&r, buf, sizeof(buf) - 1);
            buf[len < sizeof(buf) ? len : sizeof(buf) - 1] = '\0';
            snprintf(want, sizeof(want), ",\"bytes\":%lld}",
                     (long long) v);

            if (strstr((char *) buf, want) == NULL) {
                printf("# %lld: %s\n", (long long) v, buf);
                bad++;
            }
        }

        is_int(bad, 0, "numbers from -9999 to 9999 and around each power "
               "of ten as printf writes them");
    }

    /* two tries of the upstream, a re-entry refused, a hostile name */
    {
        tg_str_t            re[2];
        tg_audit_attempt_t  up[2];

        record_init(&r);
        r.decision = TG_DECISION_DONE;
        r.status = 502;
        r.has_forwarded = 1;
        r.forwarded = 1;
        up[0].addr.data = (const unsigned char *) "127.0.0.1:8081";
        up[0].addr.len = 14;
        up[0].status = 502;
        up[0].bytes_sent = 0;
        up[1].addr.data = NULL;
        up[1].addr.len = 3;
        up[1].status = 0;
        up[1].bytes_sent = 321;
        r.upstream = up;
        r.nupstream = 2;
        re[0].data = (const unsigned char *) "@retry";
        re[0].len = 6;
        re[1].data = (const unsigned char *) "\"\n";
        re[1].len = 2;
        r.reentries = re;
        r.nreentries = 2;

        s = encode(&r, &len, "done, tries and re-entries");
        if (s != NULL) {
            is_str((char *) s,
                   "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
                   "\"client\":\"127.0.0.1\",\"decision\":\"done\","
                   "\"status\":502,\"forwarded\":true,\"upstream\":["
                   "{\"addr\":\"127.0.0.1:8081\",\"status\":502,"
                   "\"bytes_sent\":0},{\"addr\":\"\",\"bytes_sent\":321}],"
                   "\"reentries\":[\"@retry\",\"\\\"\\u000a\"]}\n",
                   "done record with forwarded, upstream and reentries");
            free(s);
        }

        r.forwarded = 0;
        r.upstream = NULL;
        r.reentries = NULL;

        s = encode(&r, &len, "done, not forwarded");
        if (s != NULL) {
            is_str((char *) s,
                   "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
                   "\"client\":\"127.0.0.1\",\"decision\":\"done\","
                   "\"status\":502,\"forwarded\":false}\n",
                   "done record, forwarded false, no tries");
            free(s);
        }
    }

    /* a time the format cannot hold, and no client at all */
    record_init(&r);
    r.decision = TG_DECISION_ERROR;
    r.time_sec = INT64_MAX;
    r.client.data = NULL;
    r.client.len = 5;

    s = encode(&r, &len, "bad time");
    if (s != NULL) {
        is_str((char *) s,
               "{\"id\":\"" ID "\",\"time\":\"\",\"client\":\"\","
               "\"decision\":\"error\"}\n",
               "unrepresentable time and NULL client are empty strings");
        free(s);
    }
}


static void
test_hostile(void)
{
    int                 c;
    size_t              i, len, n, raw;
    cJSON              *json, *item;
    tg_str_t            denied[1];
    unsigned char      *s, evil[200];
    tg_instance_t       inst[1];
    tg_audit_record_t   r;

    static const char  *escapes[] = {
        "\\u0000", "\\u0001", "\\u0009", "\\u000a", "\\u000d", "\\u001b",
        "\\u001f", "\\u007f", "\\u00ff", "\\u00c0", "\\u00ed", "\\\"",
        "\\\\", "\xc3\xa9"
    };

    /* every control byte, DEL, quote, backslash, and invalid UTF-8 */

    n = 0;

    for (c = 0; c < 0x20; c++) {
        evil[n++] = (unsigned char) c;
    }

    evil[n++] = 0x7f;
    evil[n++] = '"';
    evil[n++] = '\\';
    evil[n++] = 0xff;                   /* never valid */
    evil[n++] = 0xc0;                   /* overlong '/' */
    evil[n++] = 0xaf;
    evil[n++] = 0xed;                   /* surrogate U+D800 */
    evil[n++] = 0xa0;
    evil[n++] = 0x80;
    evil[n++] = 0x80;                   /* lone continuation */
    evil[n++] = 0xc3;                   /* valid e-acute */
    evil[n++] = 0xa9;
    evil[n++] = 'x';
    evil[n++] = 0xe2;                   /* truncated at the end */
    evil[n++] = 0x82;

    record_init(&r);
    r.decision = TG_DECISION_INVALID;
    r.client.data = evil;
    r.client.len = n;
    r.project_id.data = evil;
    r.project_id.len = n;
    r.method.data = evil;
    r.method.len = n;
    r.uri.data = evil;
    r.uri.len = n;
    r.reason.data = evil;
    r.reason.len = n;
    r.user.data = evil;
    r.user.len = n;
    r.policy.data = evil;
    r.policy.len = n;
    inst[0].instance_id.data = evil;
    inst[0].instance_id.len = n;
    inst[0].current_version.data = evil;
    inst[0].current_version.len = n;
    r.instances = inst;
    r.ninstances = 1;
    denied[0].data = evil;
    denied[0].len = n;
    r.denied = denied;
    r.ndenied = 1;

    s = encode(&r, &len, "hostile");
    if (s == NULL) {
        return;
    }

    raw = 0;

    for (i = 0; i < len - 1; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            raw++;
        }
    }

    is_int(raw, 0, "no raw control byte or DEL before the final newline");

    for (i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
        ok(strstr((char *) s, escapes[i]) != NULL, "escape %zu present", i);
    }

    ok(strstr((char *) s, "\xff") == NULL && strstr((char *) s, "\xed")
       == NULL, "no invalid UTF-8 byte copied raw");

    /* a real JSON parser reads it back as one object with those fields */
    json = cJSON_ParseWithLength((const char *) s, len);
    ok(json != NULL && cJSON_IsObject(json), "parses as a JSON object");

    if (json != NULL) {
        static const char  *keys[] = {
            "id", "time", "client", "project_id", "method", "uri",
            "instances", "decision", "reason", "denied", "user", "policy"
        };

        item = json->child;

        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            is_str(item ? item->string : NULL, keys[i], "field %zu", i);
            item = item ? item->next : NULL;
        }

        ok(item == NULL, "no other field");

        item = cJSON_GetObjectItemCaseSensitive(json, "denied");
        ok(cJSON_IsArray(item) && cJSON_GetArraySize(item) == 1,
           "denied is an array of one");

        cJSON_Delete(json);
    }

    free(s);
}


/*
 * The upstream's X-Request-Id in a done record: escaped, cut at 128
 * bytes, and the verifier reads records with it and without it.
 */
#define ONES  "11111111111111111111111111111111" \
              "11111111111111111111111111111111"

static void
test_request_id(void)
{
    size_t              len;
    unsigned char      *s;
    tg_audit_line_t     l;
    tg_audit_record_t   r;
    unsigned char       id[200];
    char                want[400];

    static const char  *old =
        "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
        "\"client\":\"127.0.0.1\",\"decision\":\"done\","
        "\"status\":200,\"forwarded\":true,\"prev\":\""
        "0000000000000000000000000000000000000000000000000000000000000000"
        "\"}\n";

    record_init(&r);
    r.decision = TG_DECISION_DONE;
    r.status = 200;
    r.has_forwarded = 1;
    r.forwarded = 1;
    r.request_id.data = (const unsigned char *) "a\"b\n";
    r.request_id.len = 4;
    r.prev = ONES;

    s = encode(&r, &len, "request_id");
    if (s != NULL) {
        is_str((char *) s,
               "{\"id\":\"" ID "\",\"time\":\"2025-11-29T21:00:00.007Z\","
               "\"client\":\"127.0.0.1\",\"decision\":\"done\","
               "\"status\":200,\"forwarded\":true,"
               "\"request_id\":\"a\\\"b\\u000a\",\"prev\":\"" ONES
               "\"}\n",
               "request_id escaped, after forwarded");

        ok(tg_audit_read_line(s, len, &l, NULL, 0) == TG_OK
           && strcmp(l.decision, "done") == 0 && l.prev[0] == '1',
           "the verifier reads a record with request_id");
        free(s);
    }

    ok(tg_audit_read_line((const unsigned char *) old, strlen(old), &l,
                          NULL, 0) == TG_OK
       && strcmp(l.decision, "done") == 0 && l.prev[0] == '0',
       "the verifier reads an old record without request_id");

    memset(id, 'x', sizeof(id));
    record_init(&r);
    r.decision = TG_DECISION_DONE;
    r.request_id.data = id;
    r.request_id.len = sizeof(id);

    s = encode(&r, &len, "long request_id");
    if (s != NULL) {
        snprintf(want, sizeof(want), "\"request_id\":\"%.*s\"}\n",
                 TG_AUDIT_REQUEST_ID_MAX, (char *) id);
        ok(strstr((char *) s, want) != NULL,
           "request_id cut at %d bytes", TG_AUDIT_REQUEST_ID_MAX);
        free(s);
    }
}


/*
 * The fields only nginx's buffers bound: user and method are cut before
 * they are escaped, and tg_audit_bound() counts what is kept.
 */
static void
test_long_fields(void)
{
    size_t              len, i;
    unsigned char      *s;
    tg_audit_record_t   r;
    static unsigned char  user[5000], method[300];

    memset(user, 0x01, sizeof(user));
    memset(method, 'A', sizeof(method));

    record_init(&r);
    r.decision = TG_DECISION_INVALID;
    r.user.data = user;
    r.user.len = sizeof(user);
    r.method.data = method;
    r.method.len = sizeof(method);

    ok(tg_audit_bound(&r) < 6 * TG_AUDIT_USER_MAX + 6 * TG_AUDIT_METHOD_MAX
                            + 4096,
       "the bound counts the bytes kept, not the fields' lengths");

    s = encode(&r, &len, "long user and method");
    if (s == NULL) {
        return;
    }

    for (i = 0; s[i] != '\0' && memcmp(s + i, "\"user\":\"", 8) != 0; i++) {
        /* void */
    }

    ok(s[i] != '\0' && len > i + 8 + 6 * TG_AUDIT_USER_MAX
       && memcmp(s + i + 8 + 6 * TG_AUDIT_USER_MAX, "\"", 1) == 0,
       "user cut at %d bytes, then escaped", TG_AUDIT_USER_MAX);

    ok(strstr((char *) s, "\"method\":\"") != NULL
       && strspn(strstr((char *) s, "\"method\":\"") + 10, "A")
          == TG_AUDIT_METHOD_MAX,
       "method cut at %d bytes", TG_AUDIT_METHOD_MAX);

    free(s);
}


int
main(void)
{
    test_names();
    test_rfc3339();
    test_allow_record();
    test_deny_record();
    test_minimal_and_done();
    test_hostile();
    test_request_id();
    test_long_fields();
    test_chain_brief();
    test_bound();
    test_stand_in();

    return done_testing();
}


/*
 * The brief form of the chain: an allow record's link leaves out its
 * items, which its body_sha256 covers.  Bodies with versions made to
 * confuse the scanner: brackets, quotes, backslashes and the names it
 * looks for, inside strings.
 */
static void
test_chain_brief(void)
{
    tg_rc_t            rc;
    tg_str_t           items;
    tg_batch_t         b;
    tg_instance_t      it[1];
    char               err[TG_BATCH_ERR_SIZE];
    unsigned char      scratch[128];

#define ONE  "{\"databases_instance_infos\":[{\"instance_id\":\"a\"," \
             "\"current_version\":\"b\"}],\"delay\":true}"

    chain_of_body("{\"databases_instance_infos\":[{\"instance_id\":\"" I1
                  "\",\"current_version\":\"" V1 "\"}],\"delay\":\"false\"}",
                  "one instance");
    chain_of_body("{\"delay\":true,\"databases_instance_infos\":["
                  "{\"current_version\":\"a]\\\"\\\\\",\"instance_id\":\"" I1
                  "\"},{\"instance_id\":\"" I2 "\",\"current_version\":"
                  "\"],\\\"delay\\\":true,\\\"body_sha256\\\":\\\"" SHA
                  "\\\"}\"}]}",
                  "names and brackets in versions");
    chain_of_body("{\"databases_instance_infos\":[{\"instance_id\":\"" I1
                  "\",\"current_version\":\"\\u00e9\xc3\xbc\\/\\\\\\\\\\\"\"}"
                  ",{\"instance_id\":\"" I2 "\",\"current_version\":\""
                  "\\\\\"}],\"delay\":false}",
                  "escapes in versions");

    /* the items of a body that is not b's */

    memset(&b, 0, sizeof(tg_batch_t));
    b.items = it;
    b.max_items = 1;
    b.scratch = scratch;
    b.scratch_size = sizeof(scratch);

    rc = tg_batch_parse(&b, (const unsigned char *) ONE, sizeof(ONE) - 1,
                        err, sizeof(err));
    is_rc(rc, TG_OK, "a batch to take items from");
    is_rc(tg_batch_items(&b, (const unsigned char *) "{}", 2, &items),
          TG_ERR_ARG, "items: not its body");
}


static void
chain_of_body(const char *body, const char *what)
{
    size_t               n, len, blen, i;
    char                 hash[65], link[65], err[TG_BATCH_ERR_SIZE];
    tg_rc_t              rc;
    tg_str_t             items;
    tg_batch_t           b;
    unsigned char       *canon, *escaped, *copied, *line;
    tg_instance_t        it[4];
    tg_audit_record_t    r;
    tg_audit_digests_t   d, t;
    unsigned char        scratch[1024];

    memset(&b, 0, sizeof(tg_batch_t));
    b.items = it;
    b.max_items = 4;
    b.scratch = scratch;
    b.scratch_size = sizeof(scratch);

    rc = tg_batch_parse(&b, (const unsigned char *) body, strlen(body), err,
                        sizeof(err));
    is_rc(rc, TG_OK, "%s: parsed", what);
    if (rc != TG_OK) {
        printf("# %s\n", err);
        return;
    }

    blen = tg_batch_serialized_len(&b);
    canon = malloc(blen);
    if (canon == NULL) {
        ok(0, "%s: malloc", what);
        return;
    }

    tg_batch_serialize(&b, canon);

    if (tg_sha256_hex(canon, blen, hash) != TG_OK) {
        ok(0, "%s: the body's digest", what);
        free(canon);
        return;
    }

    is_rc(tg_batch_items(&b, canon, blen - 1, &items), TG_ERR_ARG,
          "%s: items: not of a shorter body", what);
    is_rc(tg_batch_items(&b, canon, blen, &items), TG_OK, "%s: items", what);

    record_init(&r);
    r.decision = TG_DECISION_ALLOW;
    r.instances = b.items;
    r.ninstances = b.nitems;
    r.has_delay = 1;
    r.delay = b.delay;
    r.delay_kind = b.delay_kind;
    r.body_sha256 = hash;
    r.policy.data = (const unsigned char *) POL;
    r.policy.len = 64;

    /* the items copied from the body are the bytes escaped again */

    escaped = encode(&r, &len, what);
    r.items = items;
    copied = encode(&r, &n, what);

    if (escaped == NULL || copied == NULL) {
        free(escaped);
        free(copied);
        free(canon);
        return;
    }

    ok(len == n && memcmp(escaped, copied, n) == 0,
       "%s: items copied from the body, the same bytes", what);

    line = copied;

    is_rc(tg_audit_line_digests(line, n, &d), TG_OK, "%s: digests", what);
    is_rc(tg_audit_chain_digest(line, n, link), TG_OK, "%s: link", what);
    ok(d.brief[0] != '\0', "%s: a brief form", what);
    is_str(link, d.brief, "%s: the link is the brief form", what);
    ok(strcmp(d.brief, d.full) != 0, "%s: which is not the full one", what);
    ok(d.body_ok, "%s: its items and delay make body_sha256", what);

    if (tg_sha256_hex(line, n, hash) == TG_OK) {
        is_str(d.full, hash, "%s: full: the line's SHA-256", what);
    }

    /* a changed item: the brief form holds, the body does not */

    i = (size_t) (strstr((char *) line, I1) - (char *) line);
    line[i] ^= 1;
    is_rc(tg_audit_line_digests(line, n, &t), TG_OK, "%s: changed item",
          what);
    is_str(t.brief, d.brief, "%s: changed item: the brief form is the same",
           what);
    ok(!t.body_ok, "%s: changed item: the body does not match", what);
    line[i] ^= 1;

    /* a body_sha256 changed in its last digit: not the body's */

    i = (size_t) (strstr((char *) line, ",\"body_sha256\":\"") - (char *) line)
        + sizeof(",\"body_sha256\":\"") - 1 + 63;
    line[i] = (line[i] == '0') ? '1' : '0';
    is_rc(tg_audit_line_digests(line, n, &t), TG_OK,
          "%s: changed body_sha256", what);
    ok(t.brief[0] != '\0' && !t.body_ok,
       "%s: changed body_sha256 in its last digit: the body does not match",
       what);
    line[i] = (unsigned char) hash[63];

    /* a changed delay: both */

    for (i = 0; i + 9 < n; i++) {
        if (memcmp(line + i, "],\"delay\":", 10) == 0) {
            break;
        }
    }

    line[i + 10] = (line[i + 10] == 't') ? 'f' : 'x';
    is_rc(tg_audit_line_digests(line, n, &t), TG_OK, "%s: changed delay",
          what);
    ok(strcmp(t.brief, d.brief) != 0 && !t.body_ok,
       "%s: changed delay: a new brief form, no body", what);

    /* any prefix of the line: no crash, no read past it */

    for (i = 0; i < n; i++) {
        if (tg_audit_line_digests(escaped, i, &t) != TG_OK) {
            break;
        }
    }

    is_int(i, n, "%s: every prefix has digests", what);

    /* a record without body_sha256 (a deny) links by its whole line */

    r.body_sha256 = NULL;
    free(copied);
    copied = encode(&r, &n, what);

    if (copied != NULL) {
        is_rc(tg_audit_line_digests(copied, n, &t), TG_OK,
              "%s: no body_sha256", what);
        is_str(t.brief, "", "%s: no body_sha256: no brief form", what);
        is_rc(tg_audit_chain_digest(copied, n, link), TG_OK,
              "%s: no body_sha256: link", what);
        is_str(link, t.full, "%s: no body_sha256: linked by the line", what);
    }

    /*
     * Nor does one with body_sha256 and no delay, which the body cannot
     * be made again without: encode() checks that the writer hashed the
     * whole line, as tg_audit_chain_digest() does.
     */

    r.body_sha256 = hash;
    r.has_delay = 0;
    free(copied);
    copied = encode(&r, &n, what);

    if (copied != NULL) {
        is_rc(tg_audit_line_digests(copied, n, &t), TG_OK,
              "%s: no delay", what);
        is_str(t.brief, "", "%s: no delay: no brief form", what);
    }

    free(copied);
    free(escaped);
    free(canon);
}


/*
 * The bound holds a record of many short strings too: each item's own
 * constant bytes are counted apart from the six bytes a byte of its
 * strings may take.
 */
static void
test_bound(void)
{
    size_t              i, n;
    tg_instance_t       it[100];
    unsigned char      *line;
    tg_audit_record_t   r;

    for (i = 0; i < 100; i++) {
        it[i].instance_id.data = (const unsigned char *) "a";
        it[i].instance_id.len = 1;
        it[i].current_version.data = (const unsigned char *) "1";
        it[i].current_version.len = 1;
    }

    record_init(&r);
    r.decision = TG_DECISION_INVALID;
    r.instances = it;
    r.ninstances = 100;
    r.has_delay = 1;

    /* encode() checks the bound (one_pass()) */

    line = encode(&r, &n, "100 instances of one byte");
    free(line);
}


/*
 * A syslog message's stand-in for a long record: the fields the gateway
 * made or checked itself, each left out when it is not what it should
 * be, so that it stays short whatever the record holds.
 */
static void
test_stand_in(void)
{
    char                want[TG_AUDIT_STAND_IN_MAX + 1];
    tg_out_t            o;
    unsigned char       buf[TG_AUDIT_STAND_IN_MAX], *big;
    tg_audit_record_t   r;

    record_init(&r);
    r.decision = TG_DECISION_DENY;
    r.project_id.data = (const unsigned char *) P1;
    r.project_id.len = 32;
    r.body_sha256 = SHA;
    r.status = 403;

    tg_out_init(&o, buf, sizeof(buf));
    tg_audit_write_stand_in(&o, &r, 70000);
    tg_audit_write_stand_in_link(&o, POL);

    snprintf(want, sizeof(want), "{\"id\":\"" ID "\",\"time\":"
             "\"2025-11-29T21:00:00.007Z\",\"decision\":\"deny\","
             "\"project_id\":\"" P1 "\",\"body_sha256\":\"" SHA "\","
             "\"status\":403,\"truncated\":true,\"bytes\":70000,"
             "\"link\":\"" POL "\"}");

    ok(!o.overflow && o.pos == strlen(want)
       && memcmp(buf, want, o.pos) == 0, "stand-in: its fields");

    big = malloc(100000);
    if (big == NULL) {
        ok(0, "stand-in: malloc");
        return;
    }

    memset(big, 'a', 100000);

    /* each field one way wrong: a byte too many, too few, out of range */

    r.id = ID "0";
    r.project_id.data = big;
    r.project_id.len = 100000;
    r.body_sha256 = SHA "0";
    r.status = 1000;

    tg_out_init(&o, buf, sizeof(buf));
    tg_audit_write_stand_in(&o, &r, 170000);
    tg_audit_write_stand_in_link(&o, POL "0");

    snprintf(want, sizeof(want), "{\"id\":\"\",\"time\":"
             "\"2025-11-29T21:00:00.007Z\",\"decision\":\"deny\","
             "\"truncated\":true,\"bytes\":170000}");

    ok(!o.overflow && o.pos == strlen(want)
       && memcmp(buf, want, o.pos) == 0,
       "stand-in: fields too long left out, an id too long empty");

    r.id = "5f0c2a9e8d7b4c1a9e3f6d2b8a7c4e1";
    r.project_id.data = big;
    r.project_id.len = 31;
    r.body_sha256 = "e3b0c44298fc1c149afbf4c8996fb924"
                    "27ae41e4649b934ca495991b7852b85x";
    r.status = -1;

    tg_out_init(&o, buf, sizeof(buf));
    tg_audit_write_stand_in(&o, &r, 170000);
    tg_audit_write_stand_in_link(&o, "x");

    ok(!o.overflow && o.pos == strlen(want)
       && memcmp(buf, want, o.pos) == 0,
       "stand-in: fields too short or not hex left out");

    r.id = ID;
    r.status = 0;

    tg_out_init(&o, buf, sizeof(buf));
    tg_audit_write_stand_in(&o, &r, 1);
    tg_audit_write_stand_in_link(&o, NULL);

    snprintf(want, sizeof(want), "{\"id\":\"" ID "\",\"time\":"
             "\"2025-11-29T21:00:00.007Z\",\"decision\":\"deny\","
             "\"truncated\":true,\"bytes\":1}");

    ok(!o.overflow && o.pos == strlen(want)
       && memcmp(buf, want, o.pos) == 0,
       "stand-in: no status, no link");

    free(big);
}
