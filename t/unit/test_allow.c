/*
 * Unit tests of the allow-list (src/tg_allow.c).
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "tg_allow.h"
#include "tap.h"


#define P1  "0123456789abcdef0123456789abcdef"
#define P2  "ABCDEF0123456789abcdef0123456789"
#define I1  "6754902da1f447269c6979b0590102a5in07"
#define I2  "6754902da1f447269c6979b0590102a5in07X"
#define I3  "00000000000000000000000000000000"
#define I4  "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" \
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"

#define U(s)  (const unsigned char *) (s)
#define S(s)  U(s), strlen(s)

#define BIG_N  1000000


static void test_id_checks(void);
static void test_add_contains(void);
static void test_digest(void);
static void test_big(void);
static void test_parse(void);
static void test_growth(void);
static void test_near_misses(void);
static void test_parse_scanner(void);
static void test_stray(void);
static void test_collisions(void);
static tg_rc_t parse_all(tg_allow_t *a, const char *text,
    tg_allow_parse_t *ps);
static void gen_id(unsigned char *out, size_t len, uint64_t x);


/*
 * RAND_bytes() for this program, which the table's hash key comes from
 * (tg_allow_key()): a known key when test_collisions() asks for it, so
 * that IDs can be chosen to hash alike; else a failure, so that the key
 * comes from /dev/urandom, the fallback, for every other test here.
 */
#define TEST_KEY  "taurus-guard-key"

static int       rand_fixed;
static unsigned  rand_fixed_calls;


static void
test_id_checks(void)
{
    size_t         i;
    unsigned char  buf[80];

    static const char  *bad[] = { "-", "_", ".", " ", "\xc3\xa9", "/", "+" };

    is_rc(tg_project_id_check(S(P1)), TG_OK, "project: 32 lower/digits");
    is_rc(tg_project_id_check(S(P2)), TG_OK, "project: mixed case");
    is_rc(tg_project_id_check(U(P1), 31), TG_ERR_BAD_PROJECT_ID,
          "project: 31 chars");
    is_rc(tg_project_id_check(S(P1 "a")), TG_ERR_BAD_PROJECT_ID,
          "project: 33 chars");
    is_rc(tg_project_id_check(U(""), 0), TG_ERR_BAD_PROJECT_ID,
          "project: empty");
    is_rc(tg_project_id_check(NULL, 32), TG_ERR_BAD_PROJECT_ID,
          "project: NULL");

    is_rc(tg_instance_id_check(S(I3)), TG_OK, "instance: 32 chars");
    is_rc(tg_instance_id_check(S(I1)), TG_OK, "instance: 36 chars");
    is_rc(tg_instance_id_check(S(I4)), TG_OK, "instance: 64 chars");
    is_rc(tg_instance_id_check(U(I3), 31), TG_ERR_BAD_INSTANCE_ID,
          "instance: 31 chars");
    is_rc(tg_instance_id_check(S(I4 "z")), TG_ERR_BAD_INSTANCE_ID,
          "instance: 65 chars");
    is_rc(tg_instance_id_check(U(""), 0), TG_ERR_BAD_INSTANCE_ID,
          "instance: empty");

    /* one bad character at the start, middle and end */

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t  bl = strlen(bad[i]);

        memcpy(buf, P1, 32);
        memcpy(buf + 16, bad[i], bl);
        is_rc(tg_project_id_check(buf, 32), TG_ERR_BAD_PROJECT_ID,
              "project with bad char #%zu in the middle", i);

        memcpy(buf, bad[i], bl);
        memcpy(buf + bl, I1, 36);
        is_rc(tg_instance_id_check(buf, 36), TG_ERR_BAD_INSTANCE_ID,
              "instance with bad char #%zu at the start", i);

        memcpy(buf, I1, 36);
        memcpy(buf + 36 - bl, bad[i], bl);
        is_rc(tg_instance_id_check(buf, 36), TG_ERR_BAD_INSTANCE_ID,
              "instance with bad char #%zu at the end", i);
    }

    memcpy(buf, P1, 32);
    buf[31] = '\0';
    is_rc(tg_project_id_check(buf, 32), TG_ERR_BAD_PROJECT_ID,
          "project with a NUL byte");

    memcpy(buf, I1, 36);
    buf[10] = '\0';
    is_rc(tg_instance_id_check(buf, 36), TG_ERR_BAD_INSTANCE_ID,
          "instance with a NUL byte");

    memcpy(buf, I1, 36);
    buf[0] = 0x80 | 'a';
    is_rc(tg_instance_id_check(buf, 36), TG_ERR_BAD_INSTANCE_ID,
          "instance with a high-bit byte");
}


static void
test_add_contains(void)
{
    tg_allow_t  *a;

    ok(tg_allow_contains(NULL, S(P1), S(I1)) == 0,
       "a NULL list allows nothing");
    is_int(tg_allow_count(NULL), 0, "count of NULL is 0");

    a = tg_allow_create(0);
    if (!ok(a != NULL, "create")) {
        return;
    }

    is_int(tg_allow_count(a), 0, "empty: count 0");
    is_int(tg_allow_project_count(a), 0, "empty: project count 0");
    ok(!tg_allow_contains(a, S(P1), S(I1)), "empty: contains nothing");

    is_rc(tg_allow_add(a, S(P1), S(I1)), TG_OK, "add P1 I1");
    is_rc(tg_allow_add(a, S(P1), S(I1)), TG_ERR_DUP_ENTRY,
          "add P1 I1 again: duplicate");
    is_rc(tg_allow_add(a, S(P2), S(I1)), TG_OK,
          "same instance in another project");
    is_rc(tg_allow_add(a, S(P1), S(I2)), TG_OK,
          "instance that extends another");
    is_rc(tg_allow_add(a, S(P1 "x"), S(I3)), TG_ERR_BAD_PROJECT_ID,
          "add with a 33-char project");
    is_rc(tg_allow_add(a, S(P1), S("6754902d-a1f4-4726-9c69-79b0590102a5")),
          TG_ERR_BAD_INSTANCE_ID, "add with a dashed instance");
    is_rc(tg_allow_add(a, S("0123456789abcdef_123456789abcdef"), S(I1)),
          TG_ERR_BAD_PROJECT_ID, "add with '_' in the project");

    is_int(tg_allow_count(a), 3, "count 3 (rejects not counted)");
    is_int(tg_allow_project_count(a), 2, "2 distinct projects");

    ok(tg_allow_has_project(a, S(P1)), "has project P1");
    ok(tg_allow_has_project(a, S(P2)), "has project P2");
    ok(!tg_allow_has_project(a, S("ffffffffffffffffffffffffffffffff")),
       "not a project it never named");
    ok(!tg_allow_has_project(a, S(P1 "x")), "not a 33-char project");
    ok(!tg_allow_has_project(a, U(P1), 31),
       "not a 31-byte prefix of a project, its last byte readable");
    ok(!tg_allow_has_project(NULL, S(P1)), "a NULL list names nothing");

    ok(tg_allow_contains(a, S(P1), S(I1)), "contains P1 I1");
    ok(tg_allow_contains(a, S(P2), S(I1)), "contains P2 I1");
    ok(tg_allow_contains(a, S(P1), S(I2)), "contains P1 I2");
    ok(!tg_allow_contains(a, S(P2), S(I2)), "not P2 I2 (wrong project)");
    ok(!tg_allow_contains(a, S(P1), S(I3)), "not P1 I3 (absent)");
    ok(!tg_allow_contains(a, U(I1), 35, S(I1)) , "not: prefix of I1");
    ok(!tg_allow_contains(a, S(P1), U(I1), 35), "not: I1 minus last byte");
    ok(!tg_allow_contains(a, S(P1), U(I1) + 1, 35),
       "not: I1 minus first byte");
    ok(!tg_allow_contains(a, S(P1), S(I1 "0")), "not: I1 plus a byte");
    ok(!tg_allow_contains(a, S(P1), U(""), 0), "not: empty instance");
    ok(!tg_allow_contains(a, U(""), 0, S(I1)), "not: empty project");
    ok(!tg_allow_contains(a, U(P1), 31, S(I1)), "not: project prefix");
    ok(!tg_allow_contains(a, S("0123456789ABCDEF0123456789ABCDEF"), S(I1)),
       "not: project in other case");
    ok(!tg_allow_contains(a, S(P1), S("6754902DA1F447269C6979B0590102A5IN07")),
       "not: instance in other case");
    ok(!tg_allow_contains(a, S(P1 " " I1), S(I1)),
       "not: the joined line as project");

    tg_allow_destroy(a);
    tg_allow_destroy(NULL);
}


static void
test_digest(void)
{
    char         hex[65];
    tg_allow_t  *a;

    a = tg_allow_create(2);
    if (!ok(a != NULL, "create for the digest")) {
        return;
    }

    /*
     * e3b0c442...: SHA-256 of nothing, `printf '' | sha256sum`.
     */
    is_rc(tg_allow_digest(a, hex), TG_OK, "digest of an empty list");
    is_str(hex,
           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "empty list: SHA-256 of nothing");

    /* added out of order */
    is_rc(tg_allow_add(a, S(P1), S(I2)), TG_OK, "digest: add 1");
    is_rc(tg_allow_add(a, S(P2), S(I1)), TG_OK, "digest: add 2");
    is_rc(tg_allow_add(a, S(P1), S(I1)), TG_OK, "digest: add 3");
    is_rc(tg_allow_add(a, S(P1), S(I4)), TG_OK, "digest: add 4");
    is_rc(tg_allow_add(a, S(P2), S(I3)), TG_OK, "digest: add 5");

    /*
     * Computed with (P1, P2, I1..I4 as defined above):
     *   printf "$P1 $I2\n$P2 $I1\n$P1 $I1\n$P1 $I4\n$P2 $I3\n" \
     *     | LC_ALL=C sort | sha256sum
     * The sorted order puts I1 before I2 (a prefix first) and all of P1
     * before P2 ('0' < 'A').
     */
    is_rc(tg_allow_digest(a, hex), TG_OK, "digest of 5 pairs");
    is_str(hex,
           "b52d9f7c43443ebdbf9f5c4ea1cfa82388659474cd75209e41141ecf6ae66f6c",
           "digest matches `LC_ALL=C sort | sha256sum`");

    is_rc(tg_allow_digest(NULL, hex), TG_ERR_ARG, "digest of NULL");

    tg_allow_destroy(a);
}


/* a deterministic ID of letters and digits from x */
static void
gen_id(unsigned char *out, size_t len, uint64_t x)
{
    size_t  i;

    static const char  alnum[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    for (i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out[i] = alnum[((x * 0x2545f4914f6cdd1dULL) >> 32) % 62];
    }
}


static void
test_big(void)
{
    size_t          i, ilen, found, bad_rc, absent_found;
    double          build, look, gen;
    clock_t         t0, t1, t2, t3;
    tg_allow_t     *a;
    unsigned char   proj[1000][32], inst[64];

    /* 1000 projects with 1000 instances each, IDs of 32..64 chars */

    for (i = 0; i < 1000; i++) {
        gen_id(proj[i], 32, 0x9e3779b97f4a7c15ULL * (i + 1));
    }

    a = tg_allow_create(0);
    if (!ok(a != NULL, "create for 1M pairs")) {
        return;
    }

    bad_rc = 0;
    t0 = clock();

    for (i = 0; i < BIG_N; i++) {
        ilen = 32 + i % 33;
        gen_id(inst, ilen, 0xd1b54a32d192ed03ULL * (i + 1));

        if (tg_allow_add(a, proj[i % 1000], 32, inst, ilen) != TG_OK) {
            bad_rc++;
        }
    }

    t1 = clock();

    is_int(bad_rc, 0, "1M adds all TG_OK");
    is_int(tg_allow_count(a), BIG_N, "count is 1M");
    is_int(tg_allow_project_count(a), 1000, "1000 projects");

    found = 0;

    for (i = 0; i < BIG_N; i++) {
        ilen = 32 + i % 33;
        gen_id(inst, ilen, 0xd1b54a32d192ed03ULL * (i + 1));
        found += tg_allow_contains(a, proj[i % 1000], 32, inst, ilen);
    }

    t2 = clock();

    is_int(found, BIG_N, "all 1M pairs found");

    absent_found = 0;

    for (i = 0; i < 1000; i++) {
        ilen = 32 + i % 33;

        /* a fresh instance ID; and a present one under another project */
        gen_id(inst, ilen, 0x853c49e6748fea9bULL * (i + 1) + 7);
        absent_found += tg_allow_contains(a, proj[i], 32, inst, ilen);

        gen_id(inst, ilen, 0xd1b54a32d192ed03ULL * (i + 1));
        absent_found += tg_allow_contains(a, proj[(i + 1) % 1000], 32,
                                          inst, ilen);
    }

    is_int(absent_found, 0, "2000 absent pairs not found");

    /* the cost of generating the IDs alone, to subtract */

    found = 0;

    for (i = 0; i < BIG_N; i++) {
        ilen = 32 + i % 33;
        gen_id(inst, ilen, 0xd1b54a32d192ed03ULL * (i + 1));
        found += inst[0];
    }

    t3 = clock();

    ok(found > 0, "generated the IDs once more for timing");

    build = (double) (t1 - t0) / CLOCKS_PER_SEC;
    look = (double) (t2 - t1) / CLOCKS_PER_SEC;
    gen = (double) (t3 - t2) / CLOCKS_PER_SEC;

    printf("# 1M pairs, CPU time: build %.3f s, 1M lookups %.3f s, "
           "of which generating the IDs %.3f s each\n", build, look, gen);

    tg_allow_destroy(a);
}


int
main(void)
{
    test_id_checks();
    test_add_contains();
    test_digest();
    test_big();
    test_parse();
    test_growth();
    test_near_misses();
    test_parse_scanner();
    test_stray();
    test_collisions();

    return done_testing();
}


/* parses text whole, following no include: the first result not TG_OK */

static tg_rc_t
parse_all(tg_allow_t *a, const char *text, tg_allow_parse_t *ps)
{
    tg_rc_t  rc;

    memset(ps, 0, sizeof(*ps));
    ps->text = U(text);
    ps->len = strlen(text);

    do {
        rc = tg_allow_parse(a, ps);
    } while (rc == TG_OK && ps->pos < ps->len);

    return rc;
}


static void
test_parse(void)
{
    tg_rc_t            rc;
    tg_allow_t        *a;
    tg_allow_parse_t   ps;

    a = tg_allow_create(0);

    rc = parse_all(a, "# a comment\n" P1 " " I1 "  " I3 ";\n"
                   "\t" P2 "\n  '" I1 "' # here too\n \"" I3 "\";", &ps);
    is_rc(rc, TG_OK, "parse: statements, comments, quotes, line breaks");
    ok(tg_allow_contains(a, S(P1), S(I1)) && tg_allow_contains(a, S(P1), S(I3))
       && tg_allow_contains(a, S(P2), S(I1))
       && tg_allow_contains(a, S(P2), S(I3)) && tg_allow_count(a) == 4,
       "parse: the four pairs are in");
    is_int(ps.line, 5, "parse: lines counted");

    /* an include is handed back, then the parse goes on */

    memset(&ps, 0, sizeof(ps));
    ps.text = U("include  allow.d/*.conf ;\n" P1 " " I2 ";");
    ps.len = strlen((const char *) ps.text);
    rc = tg_allow_parse(a, &ps);
    ok(rc == TG_OK && ps.include.len == strlen("allow.d/*.conf")
       && memcmp(ps.include.data, "allow.d/*.conf", ps.include.len) == 0,
       "parse: include handed back");
    rc = tg_allow_parse(a, &ps);
    ok(rc == TG_OK && ps.include.data == NULL && ps.pos == ps.len
       && tg_allow_contains(a, S(P1), S(I2)), "parse: resumed after it");

    /* errors: the code, the token, the line of the statement's ';' */

    rc = parse_all(a, P1 " " I1 ";", &ps);
    ok(rc == TG_ERR_DUP_ENTRY && ps.token.len == strlen(I1)
       && ps.line == 1, "parse: duplicate, with its token");

    rc = parse_all(a, "\n" P1 "\n" I4 "\n" I1 "\n;", &ps);
    ok(rc == TG_ERR_DUP_ENTRY && ps.line == 5,
       "parse: reported at the line of ';', as nginx does");

    rc = parse_all(a, P1 "x " I4 ";", &ps);
    is_rc(rc, TG_ERR_BAD_PROJECT_ID, "parse: malformed project");

    rc = parse_all(a, P2 " " I1 "-;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID && ps.token.len == strlen(I1) + 1,
       "parse: malformed instance, with its token");

    rc = parse_all(a, P2 " " I4 "z;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID && ps.token.len == 65,
       "parse: an instance of 65 characters, with its token");

    rc = parse_all(a, "\n\n" P2 " ;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID && ps.token.len == 0 && ps.line == 3
       && ps.project.len == 32, "parse: a project without instances");

    rc = parse_all(a, P2 " { " I4 " };", &ps);
    ok(rc == TG_ERR_SYNTAX && ps.what != NULL, "parse: a block refused");

    rc = parse_all(a, P2 " \"" I4 "\\\";", &ps);
    ok(rc == TG_ERR_SYNTAX && ps.what != NULL,
       "parse: an escape in quotes refused");

    rc = parse_all(a, P2 " " I4, &ps);
    ok(rc == TG_ERR_SYNTAX && ps.what != NULL,
       "parse: end of text without ';'");

    rc = parse_all(a, "include a b;", &ps);
    is_rc(rc, TG_ERR_SYNTAX, "parse: include with two arguments");

    rc = parse_all(a, " ; ", &ps);
    is_rc(rc, TG_ERR_SYNTAX, "parse: an empty statement");

    rc = parse_all(a, "  # nothing\n\n", &ps);
    is_rc(rc, TG_OK, "parse: comments only");

    tg_allow_destroy(a);
}


/*
 * A table made with no hint grows from 16 slots, rehashing every entry
 * it holds each time; one reserved up front does not move, and a
 * reservation beyond 32-bit offsets is refused.  Both hold the same
 * pairs, added in opposite orders, under keys of their own: the digest
 * is the same.
 */
static void
test_growth(void)
{
    char            hx[65], hy[65];
    size_t          i, missing, bad;
    tg_allow_t     *a, *b;
    unsigned char   proj[7][32], inst[20000][40];

    for (i = 0; i < 7; i++) {
        gen_id(proj[i], 32, 0x2545f4914f6cdd1dULL * (i + 3));
    }

    for (i = 0; i < 20000; i++) {
        gen_id(inst[i], 32 + i % 9, 0x9e3779b97f4a7c15ULL * (i + 11));
    }

    a = tg_allow_create(0);
    b = tg_allow_create(0);
    if (!ok(a != NULL && b != NULL, "create two tables for growth")) {
        return;
    }

    is_rc(tg_allow_reserve(b, 20000, 20000 * 50), TG_OK,
          "reserve 20000 pairs");
    is_rc(tg_allow_reserve(b, (size_t) 1 << 40, 0), TG_ERR_NOMEM,
          "reserve beyond 32-bit slot hashes: TG_ERR_NOMEM");
    is_rc(tg_allow_reserve(b, 0, (size_t) UINT32_MAX), TG_ERR_NOMEM,
          "reserve beyond 32-bit offsets: TG_ERR_NOMEM");
    is_rc(tg_allow_reserve(NULL, 1, 1), TG_ERR_ARG, "reserve on NULL");

    missing = 0;
    bad = 0;

    for (i = 0; i < 20000; i++) {
        if (tg_allow_add(a, proj[i % 7], 32, inst[i], 32 + i % 9)
            != TG_OK)
        {
            bad++;
        }

        /* after each doubling, everything added so far is still there */
        if ((i & (i + 1)) == 0) {
            size_t  k;

            for (k = 0; k <= i; k++) {
                missing += !tg_allow_contains(a, proj[k % 7], 32, inst[k],
                                              32 + k % 9);
            }
        }
    }

    for (i = 20000; i-- > 0; ) {
        if (tg_allow_add(b, proj[i % 7], 32, inst[i], 32 + i % 9)
            != TG_OK)
        {
            bad++;
        }
    }

    is_int(bad, 0, "growth: 2 x 20000 adds TG_OK");
    is_int(missing, 0, "growth: nothing lost across the rehashes");
    is_int(tg_allow_count(a), 20000, "growth: count");
    is_int(tg_allow_project_count(b), 7, "growth: 7 projects");

    for (i = 0, missing = 0; i < 20000; i++) {
        missing += !tg_allow_contains(b, proj[i % 7], 32, inst[i],
                                      32 + i % 9);
        missing += tg_allow_contains(b, proj[(i + 1) % 7], 32, inst[i],
                                     32 + i % 9);
    }

    is_int(missing, 0, "growth: reserved table right on 40000 lookups");

    for (i = 0, bad = 0; i < 20000; i += 97) {
        bad += tg_allow_add(a, proj[i % 7], 32, inst[i], 32 + i % 9)
               != TG_ERR_DUP_ENTRY;
    }

    is_int(bad, 0, "growth: every re-add is a duplicate");

    ok(tg_allow_digest(a, hx) == TG_OK && tg_allow_digest(b, hy) == TG_OK
       && strcmp(hx, hy) == 0,
       "growth: the same pairs, other order, other key: one digest");

    tg_allow_destroy(a);
    tg_allow_destroy(b);
}


/*
 * Pairs that differ where the hash reads bytes twice (the last word
 * overlaps the one before unless the length is a multiple of 8), only
 * in their length, or only in their project: every one is its own
 * entry, and none is found for another.
 */
static void
test_near_misses(void)
{
    size_t          i, len, bad, wrong;
    tg_allow_t     *a;
    unsigned char   id[64], q[2][32];

    a = tg_allow_create(0);
    if (!ok(a != NULL, "create for near misses")) {
        return;
    }

    memcpy(q[0], P1, 32);
    memcpy(q[1], P1, 32);
    q[1][31] = 'g';

    memset(id, 'a', sizeof(id));
    bad = 0;

    /* every length, and at each length one byte changed at each place */

    for (len = TG_INSTANCE_ID_MIN_LEN; len <= TG_INSTANCE_ID_MAX_LEN; len++) {
        bad += tg_allow_add(a, q[0], 32, id, len) != TG_OK;

        for (i = 0; i < len; i++) {
            id[i] = 'b';
            bad += tg_allow_add(a, q[len & 1], 32, id, len) != TG_OK;
            id[i] = 'a';
        }
    }

    is_int(bad, 0, "near misses: all added");

    wrong = 0;

    for (len = TG_INSTANCE_ID_MIN_LEN; len <= TG_INSTANCE_ID_MAX_LEN; len++) {
        wrong += !tg_allow_contains(a, q[0], 32, id, len);
        wrong += tg_allow_contains(a, q[1], 32, id, len);

        for (i = 0; i < len; i++) {
            id[i] = 'b';
            wrong += !tg_allow_contains(a, q[len & 1], 32, id, len);
            wrong += tg_allow_contains(a, q[!(len & 1)], 32, id, len);
            id[i] = 'c';
            wrong += tg_allow_contains(a, q[len & 1], 32, id, len);
            id[i] = 'a';
        }
    }

    is_int(wrong, 0, "near misses: each found under its project only");
    is_int(tg_allow_project_count(a), 2, "near misses: 2 projects");

    tg_allow_destroy(a);
}


/*
 * The scanner's paths: IDs read eight bytes a step up to the end of the
 * text or a stop, a bad byte after good ones, quoted IDs, a project
 * named in several statements recorded once.
 */
static void
test_parse_scanner(void)
{
    tg_rc_t            rc;
    tg_allow_t        *a;
    tg_allow_parse_t   ps;

    a = tg_allow_create(0);
    if (!ok(a != NULL, "create for the scanner")) {
        return;
    }

    memset(&ps, 0, sizeof(ps));
    is_rc(tg_allow_parse(NULL, &ps), TG_ERR_ARG, "parse: NULL table");

    rc = parse_all(a, P1 "\t" I3 "\r\n" I4 ";" P1 " '" I1 "';"
                   P2 " \"" I1 "\"\n;", &ps);
    is_rc(rc, TG_OK, "scanner: tabs, CR LF, quotes, no space before ';'");
    is_int(tg_allow_count(a), 4, "scanner: 4 pairs");
    is_int(tg_allow_project_count(a), 2, "scanner: P1 recorded once");
    is_int(ps.line, 3, "scanner: lines counted");

    /* an ID that ends the text, 32 and 36 bytes long: no ';' after it */

    rc = parse_all(a, P2 " " I3, &ps);
    ok(rc == TG_ERR_SYNTAX && ps.pos == ps.len && ps.line == 1,
       "scanner: an ID at the very end, then no ';'");

    /* one bad byte after good ones, in the eight-byte steps and after */

    rc = parse_all(a, P2 " 0123456789abcdef0123456789abcde-f;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID
       && ps.token.len == 33 && ps.token.data[31] == '-',
       "scanner: '-' at byte 31, the whole word its token");

    rc = parse_all(a, P2 " 01234567\x80" "9abcdef0123456789abcdef0123;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID && ps.token.len == 36,
       "scanner: a high-bit byte inside an eight-byte step");

    rc = parse_all(a, P2 " 0123456789abcdef0123456789abcdef#x;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID && ps.token.len == 34,
       "scanner: '#' inside a word is part of it");

    rc = parse_all(a, "0123456789abcdef0123456789abcdeF{ " I1 ";", &ps);
    ok(rc == TG_ERR_SYNTAX && ps.what != NULL,
       "scanner: '{' right after an ID");

    rc = parse_all(a, "'0123456789abcdef0123456789abcd-f' " I1 ";", &ps);
    ok(rc == TG_ERR_BAD_PROJECT_ID && ps.token.len == 32,
       "scanner: a quoted project with a bad byte");

    rc = parse_all(a, P2 " '' ;", &ps);
    ok(rc == TG_ERR_BAD_INSTANCE_ID && ps.token.len == 0,
       "scanner: an empty quoted word is a malformed instance");

    /* a duplicate first in its statement, its project known already */

    rc = parse_all(a, "\n" P1 " " I1 " " I2 ";", &ps);
    ok(rc == TG_ERR_DUP_ENTRY && ps.token.len == 36 && ps.line == 2
       && ps.project.len == 32 && memcmp(ps.project.data, P1, 32) == 0,
       "scanner: a duplicate first in its statement");
    ok(!tg_allow_contains(a, S(P1), S(I2)),
       "scanner: nothing after the error is added");

    /*
     * Instances wait in a queue of 8 before they go in: a duplicate
     * that is 12th in its statement, of the 3rd, is still the error, at
     * its own token, with the 11 before it in the table and none after.
     */

    rc = parse_all(a, P2 " 10000000000000000000000000000001"
                   " 10000000000000000000000000000002"
                   " 10000000000000000000000000000003"
                   " 10000000000000000000000000000004"
                   " 10000000000000000000000000000005"
                   " 10000000000000000000000000000006"
                   " 10000000000000000000000000000007"
                   " 10000000000000000000000000000008"
                   " 10000000000000000000000000000009"
                   " 10000000000000000000000000000010"
                   " 10000000000000000000000000000011"
                   " 10000000000000000000000000000003"
                   " 10000000000000000000000000000012;", &ps);
    ok(rc == TG_ERR_DUP_ENTRY && ps.token.len == 32
       && ps.token.data == ps.text + 33 * 12,
       "queue: the 12th instance, a duplicate, is the error");
    ok(tg_allow_contains(a, S(P2), S("10000000000000000000000000000011"))
       && !tg_allow_contains(a, S(P2),
                             S("10000000000000000000000000000012")),
       "queue: the 11 before it are in, the one after is not");

    /* a duplicate still queued when a malformed word or a '{' comes */

    rc = parse_all(a, P2 " 20000000000000000000000000000001"
                   " 20000000000000000000000000000002"
                   " 20000000000000000000000000000001 bad;", &ps);
    ok(rc == TG_ERR_DUP_ENTRY && ps.token.len == 32
       && memcmp(ps.token.data, "2000", 4) == 0,
       "queue: a queued duplicate before a malformed instance wins");

    rc = parse_all(a, P2 " 30000000000000000000000000000001"
                   " 30000000000000000000000000000002 {", &ps);
    ok(rc == TG_ERR_SYNTAX && ps.token.len == 1
       && tg_allow_contains(a, S(P2), S("30000000000000000000000000000001")),
       "queue: '{' after queued instances: they went in first");

    tg_allow_destroy(a);
}


/*
 * A missing ';': "P1 I1" then "P2 I2;" reads as P1 allowing I1, P2 and
 * I2.  Instances of a project ID's shape are noted with their line, and
 * found once the whole list is read, wherever the project is listed.
 */

static void
test_stray(void)
{
    int                a_ok;
    tg_rc_t            rc;
    tg_allow_t        *a;
    tg_allow_stray_t   s;
    tg_allow_parse_t   ps;

    static const char  where[] = "allow.conf";

    a = tg_allow_create(0);

    rc = parse_all(a, P1 " " I1 "\n" P2 " " I2 ";\n", &ps);
    is_rc(rc, TG_OK, "stray: the text parses");
    is_rc(tg_allow_stray(a, &s), TG_OK,
          "stray: none while P2 is no project of the list");

    /* the project listed after, in another text, as another include */

    memset(&ps, 0, sizeof(ps));
    ps.text = U("\n" P2 " " I3 ";");
    ps.len = strlen((const char *) ps.text);
    ps.where = where;

    do {
        rc = tg_allow_parse(a, &ps);
    } while (rc == TG_OK && ps.pos < ps.len);

    is_rc(rc, TG_OK, "stray: the second text parses");

    rc = tg_allow_stray(a, &s);
    a_ok = (s.instance.len == 32 && memcmp(s.instance.data, P2, 32) == 0
            && s.project.len == 32 && memcmp(s.project.data, P1, 32) == 0);
    ok(rc == TG_ERR_INSTANCE_IS_PROJECT && a_ok && s.where == NULL
       && s.line == 2, "stray: P2 as an instance of P1, at its own line");

    tg_allow_destroy(a);

    a = tg_allow_create(0);

    is_rc(tg_allow_add(a, S(P1), S(I3)), TG_OK, "stray: added by hand");
    is_rc(tg_allow_note(a, U(P1), S(I3), where, 7), TG_OK, "stray: noted");
    is_rc(tg_allow_note(a, U(P1), S(I1), where, 8), TG_OK,
          "stray: another length, not kept");
    is_rc(tg_allow_stray(a, &s), TG_OK, "stray: I3 is no project");
    is_rc(tg_allow_add(a, S(I3), S(I1)), TG_OK, "stray: I3 as a project");
    rc = tg_allow_stray(a, &s);
    ok(rc == TG_ERR_INSTANCE_IS_PROJECT && s.where == where && s.line == 7,
       "stray: noted by hand, with its where and line");
    is_rc(tg_allow_note(NULL, U(P1), S(I3), where, 1), TG_ERR_ARG,
          "stray: NULL table");

    tg_allow_destroy(a);
}


int
RAND_bytes(unsigned char *buf, int num)
{
    int  i;

    if (!rand_fixed) {
        return 0;
    }

    rand_fixed_calls++;

    for (i = 0; i < num; i++) {
        buf[i] = (unsigned char) TEST_KEY[i % (sizeof(TEST_KEY) - 1)];
    }

    return 1;
}


/*
 * Lookups whose 64-bit hash is an entry's, so that only the comparison
 * of the bytes after the hash match tells them apart: a prefix of an
 * entry, another project with the entry's first eight bytes, an
 * instance that differs from the entry in bytes 8..15 and 24..31 only.
 * Clients cannot pick such IDs (the key is random), but a table of a
 * million entries meets 32-bit hash matches by chance.  Found with the
 * key above by solving for the last word hashed: tg_allow_hash() folds
 * each word in with (h ^ w) * K1 and a rotation, which a word chosen
 * from the state before it can bring to any state; should the hash
 * change, they no longer collide and must be found again.
 */
static void
test_collisions(void)
{
    tg_allow_t  *a;

    static const char  p2[] = "01234567ADnhNzjmidex9NcFpPyohIYc";
    static const char  i40[] = "UbTbfx26UpYD9HOyowNNuxmIxgfNs7V2Sob8Qqeo";
    static const char  prefix_of[] =
        "hg6D97EeTbS9yjUW99Mu6zcB0g5ix4BByg32sYnn";
    static const char  i48[] =
        "JOJW6eu4NZkhYztmgcq4GgP2oE18afDrNCqgbwXfjZAgzcsS";
    static const char  x48[] =
        "JOJW6eu4fLW083itgcq4GgP27lbmBZRJNCqgbwXfjZAgzcsS";

    rand_fixed = 1;
    a = tg_allow_create(0);
    rand_fixed = 0;

    if (!ok(a != NULL && rand_fixed_calls == 1,
            "collisions: a table keyed with the known key"))
    {
        tg_allow_destroy(a);
        return;
    }

    is_rc(tg_allow_add(a, S(P1), S(prefix_of)), TG_OK,
          "collisions: add an instance of 40");
    ok(!tg_allow_contains(a, S(P1), U(prefix_of), 32),
       "collisions: not its first 32 bytes, hashed alike");

    is_rc(tg_allow_add(a, S(P1), S(i40)), TG_OK,
          "collisions: add an instance to P1");
    ok(!tg_allow_contains(a, S(p2), S(i40)),
       "collisions: not under a project with P1's first 8 bytes, hashed"
       " alike");
    is_rc(tg_allow_add(a, S(p2), S(i40)), TG_OK,
          "collisions: that pair is no duplicate");
    ok(tg_allow_contains(a, S(P1), S(i40)) && tg_allow_contains(a, S(p2),
                                                                S(i40)),
       "collisions: both pairs found");

    is_rc(tg_allow_add(a, S(P1), S(i48)), TG_OK,
          "collisions: add an instance of 48");
    ok(!tg_allow_contains(a, S(P1), S(x48)),
       "collisions: not one differing in bytes 8..15 and 24..31, hashed"
       " alike");

    tg_allow_destroy(a);
}
