/*
 * tg_sign: SDK-HMAC-SHA256 against published known answers and against
 * the official Huawei Cloud Python SDK's own outputs.
 *
 *   ./test_sign [path/to/sdk_vectors.json]   (default t/data/sdk_vectors.json)
 */

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tg_sign.h"
#include "tap.h"


#define S(lit)  { (const unsigned char *) (lit), sizeof(lit) - 1 }
#define starts(s, lit)  (strncmp((s), (lit), sizeof(lit) - 1) == 0)


static void test_rfc4231(void);
static void test_hmac_key(void);
static void test_sha256(void);
static void test_hex_encode(void);
static void test_caseless_eq(void);
static void test_sdk_date(void);
static tg_rc_t libc_date(time_t t, char out[TG_SDK_DATE_LEN + 1]);
static void test_sdk_date_libc(void);
static void test_huawei_example(void);
static void test_query_and_edges(void);
static void test_long_names(void);
static void test_negative(void);
static void test_byte_classes(void);
static void test_white_space(void);
static void test_ak_and_date(void);
static void test_wiped(void);
static void test_vectors(const char *path);
static char *read_file(const char *path, size_t *len);
static void hex_of(const unsigned char *p, size_t n, char *out);
static tg_str_t str_of(const char *s);


static const char  *empty_sha =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";


int
main(int argc, char **argv)
{
    test_rfc4231();
    test_hmac_key();
    test_sha256();
    test_sdk_date();
    test_huawei_example();
    test_query_and_edges();
    test_long_names();
    test_negative();
    test_byte_classes();
    test_white_space();
    test_ak_and_date();
    test_wiped();
    test_vectors(argc > 1 ? argv[1] : "t/data/sdk_vectors.json");

    return done_testing();
}


/*
 * RFC 4231 "Identifiers and Test Vectors for HMAC-SHA-224, HMAC-SHA-256,
 * HMAC-SHA-384, and HMAC-SHA-512", section 4, test cases 1-4, 6 and 7
 * (case 5 is a truncated MAC), HMAC-SHA-256 results.
 */
static void
test_rfc4231(void)
{
    size_t          i;
    tg_rc_t         rc;
    unsigned char   key[131], data[50];
    unsigned char   mac[TG_HMAC_SHA256_LEN];
    char            hex[2 * TG_HMAC_SHA256_LEN + 1];

    static const char  *d6 =
        "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char  *d7 =
        "This is a test using a larger than block-size key and a larger "
        "than block-size data. The key needs to be hashed before being "
        "used by the HMAC algorithm.";

    /* case 1 */
    memset(key, 0x0b, 20);
    rc = tg_hmac_sha256(key, 20, (const unsigned char *) "Hi There", 8, mac);
    is_rc(rc, TG_OK, "RFC 4231 case 1: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "b0344c61d8db38535ca8afceaf0bf12b"
                "881dc200c9833da726e9376c2e32cff7", "RFC 4231 case 1");

    /* case 2 */
    rc = tg_hmac_sha256((const unsigned char *) "Jefe", 4,
                        (const unsigned char *)
                        "what do ya want for nothing?", 28, mac);
    is_rc(rc, TG_OK, "RFC 4231 case 2: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "5bdcc146bf60754e6a042426089575c7"
                "5a003f089d2739839dec58b964ec3843", "RFC 4231 case 2");

    /* case 3 */
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    rc = tg_hmac_sha256(key, 20, data, 50, mac);
    is_rc(rc, TG_OK, "RFC 4231 case 3: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "773ea91e36800e46854db8ebd09181a7"
                "2959098b3ef8c122d9635514ced565fe", "RFC 4231 case 3");

    /* case 4 */
    for (i = 0; i < 25; i++) {
        key[i] = (unsigned char) (i + 1);
    }

    memset(data, 0xcd, 50);
    rc = tg_hmac_sha256(key, 25, data, 50, mac);
    is_rc(rc, TG_OK, "RFC 4231 case 4: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "82558a389a443c0ea4cc819899f2083a"
                "85f0faa3e578f8077a2e3ff46729665b", "RFC 4231 case 4");

    /* case 6 */
    memset(key, 0xaa, 131);
    rc = tg_hmac_sha256(key, 131, (const unsigned char *) d6, strlen(d6),
                        mac);
    is_rc(rc, TG_OK, "RFC 4231 case 6: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "60e431591ee0b67f0d8a26aacbf5b77f"
                "8e0bc6213728c5140546040f0ee37f54", "RFC 4231 case 6");

    /* case 7 */
    rc = tg_hmac_sha256(key, 131, (const unsigned char *) d7, strlen(d7),
                        mac);
    is_rc(rc, TG_OK, "RFC 4231 case 7: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "9b09ffa71b942fcb27635fbcd5b0e944"
                "bfdc63644f0713938a7f51535c3a35e2", "RFC 4231 case 7");

    is_rc(tg_hmac_sha256(key, 1, NULL, 1, mac), TG_ERR_ARG,
          "HMAC: NULL data with a length");
}


/*
 * The ready-key path against OpenSSL's own one-shot HMAC() and against
 * tg_hmac_sha256(): keys around the block size (a key longer than a
 * block is hashed first), messages around the padding boundaries, the
 * same key used again (a MAC must not change the key's states), and a
 * wiped key that no longer signs.
 */
static void
test_hmac_key(void)
{
    size_t          i, j, k;
    tg_rc_t         rc;
    unsigned int    olen;
    tg_hmac_key_t   hk, zero;
    unsigned char   key[200], data[300];
    unsigned char   mac[TG_HMAC_SHA256_LEN], plain[TG_HMAC_SHA256_LEN];
    unsigned char   want[EVP_MAX_MD_SIZE];
    char            hex[2 * TG_HMAC_SHA256_LEN + 1];
    int             same_openssl, same_plain, again;

    static const size_t  key_lens[] = { 1, 4, 20, 25, 40, 63, 64, 65, 131,
                                        200 };
    static const size_t  data_lens[] = { 0, 1, 55, 56, 63, 64, 65, 119,
                                         120, 128, 300 };

    for (i = 0; i < sizeof(data); i++) {
        data[i] = (unsigned char) (i * 7 + 3);
    }

    for (i = 0; i < sizeof(key_lens) / sizeof(key_lens[0]); i++) {
        for (k = 0; k < key_lens[i]; k++) {
            key[k] = (unsigned char) (k * 13 + i);
        }

        rc = tg_hmac_key_init(&hk, key, key_lens[i]);
        is_rc(rc, TG_OK, "ready key of %zu bytes: rc", key_lens[i]);

        same_openssl = 1;
        same_plain = 1;
        again = 1;

        /* twice through the messages: the key is used and used again */
        for (k = 0; k < 2; k++) {
            for (j = 0; j < sizeof(data_lens) / sizeof(data_lens[0]); j++) {
                if (HMAC(EVP_sha256(), key, (int) key_lens[i], data,
                         data_lens[j], want, &olen) == NULL
                    || olen != TG_HMAC_SHA256_LEN
                    || tg_hmac_sha256(key, key_lens[i], data, data_lens[j],
                                      plain) != TG_OK)
                {
                    same_openssl = 0;
                    continue;
                }

                rc = tg_hmac_sha256_key(&hk, data, data_lens[j], mac);

                if (rc != TG_OK || memcmp(mac, want, sizeof(mac)) != 0) {
                    if (k == 0) {
                        same_openssl = 0;
                    } else {
                        again = 0;
                    }
                }

                if (rc != TG_OK || memcmp(mac, plain, sizeof(mac)) != 0) {
                    same_plain = 0;
                }
            }
        }

        ok(same_openssl, "ready key of %zu bytes: OpenSSL's HMAC",
           key_lens[i]);
        ok(same_plain, "ready key of %zu bytes: the plain path's HMAC",
           key_lens[i]);
        ok(again, "ready key of %zu bytes: the same MACs used again",
           key_lens[i]);

        tg_hmac_key_wipe(&hk);
        is_rc(tg_hmac_sha256_key(&hk, data, 1, mac), TG_ERR_CRYPTO,
              "ready key of %zu bytes: wiped, it no longer signs",
              key_lens[i]);
        tg_hmac_key_wipe(&hk);
    }

    /* RFC 4231 case 2 through a ready key */
    rc = tg_hmac_key_init(&hk, (const unsigned char *) "Jefe", 4);
    is_rc(rc, TG_OK, "RFC 4231 case 2, ready key: init rc");
    rc = tg_hmac_sha256_key(&hk, (const unsigned char *)
                            "what do ya want for nothing?", 28, mac);
    is_rc(rc, TG_OK, "RFC 4231 case 2, ready key: rc");
    hex_of(mac, sizeof(mac), hex);
    is_str(hex, "5bdcc146bf60754e6a042426089575c7"
                "5a003f089d2739839dec58b964ec3843",
           "RFC 4231 case 2, ready key");
    tg_hmac_key_wipe(&hk);

    memset(&zero, 0, sizeof(zero));
    tg_hmac_key_wipe(&zero);
    ok(1, "a zeroed key can be wiped");

    is_rc(tg_hmac_key_init(NULL, key, 1), TG_ERR_ARG, "ready key into NULL");
    is_rc(tg_hmac_key_init(&hk, NULL, 1), TG_ERR_ARG,
          "ready key: NULL key with a length");

    /* refused, the key is wiped: it signs nothing (it signed, or crashed) */
    is_rc(tg_hmac_sha256_key(&hk, data, 1, mac), TG_ERR_CRYPTO,
          "ready key refused: it does not sign");
    tg_hmac_key_wipe(&hk);
    is_rc(tg_hmac_sha256_key(NULL, data, 1, mac), TG_ERR_ARG,
          "MAC with a NULL ready key");

    rc = tg_hmac_key_init(&hk, key, 20);
    is_rc(rc, TG_OK, "ready key: init rc");
    is_rc(tg_hmac_sha256_key(&hk, NULL, 1, mac), TG_ERR_ARG,
          "ready key: NULL data with a length");
    tg_hmac_key_wipe(&hk);
}


/* FIPS 180-2, appendix B.1 and B.2; the empty string from FIPS 180-4 */
static void
test_sha256(void)
{
    char  hex[TG_SHA256_HEX_LEN + 1];

    is_rc(tg_sha256_hex((const unsigned char *) "", 0, hex), TG_OK,
          "SHA-256 empty: rc");
    is_str(hex, empty_sha, "SHA-256 of the empty string");

    is_rc(tg_sha256_hex(NULL, 0, hex), TG_OK, "SHA-256 NULL, 0: rc");
    is_str(hex, empty_sha, "SHA-256 of NULL, 0");

    is_rc(tg_sha256_hex((const unsigned char *) "abc", 3, hex), TG_OK,
          "SHA-256 abc: rc");
    is_str(hex, "ba7816bf8f01cfea414140de5dae2223"
                "b00361a396177a9cb410ff61f20015ad", "SHA-256 of abc");

    is_rc(tg_sha256_hex((const unsigned char *)
                        "abcdbcdecdefdefgefghfghighijhijk"
                        "ijkljklmklmnlmnomnopnopq", 56, hex), TG_OK,
          "SHA-256 448 bits: rc");
    is_str(hex, "248d6a61d20638b8e5c026930c3e6039"
                "a33ce45964ff2167f6ecedd419db06c1",
           "SHA-256 of abcdbcdecdef...nopq");

    is_rc(tg_sha256_hex(NULL, 1, hex), TG_ERR_ARG,
          "SHA-256: NULL data with a length");

    test_hex_encode();
    test_caseless_eq();
}


/*
 * tg_caseless_eq(): every byte at every place of every prefix of a
 * literal of 21 bytes (so of words, overlapping last words and bytes
 * alone), against a reference: the literal's byte, or its capital when
 * it is a letter.
 */
static void
test_caseless_eq(void)
{
    int            c, bad, want;
    size_t         len, k;
    unsigned char  s[21];

    static const char  lower[] = "content-type/json;z=a";

    bad = 0;

    for (len = 0; len <= sizeof(lower) - 1; len++) {
        for (k = 0; k < len; k++) {
            for (c = 0; c < 256; c++) {
                memcpy(s, lower, sizeof(s));
                s[k] = (unsigned char) c;

                want = c == lower[k]
                       || (lower[k] >= 'a' && lower[k] <= 'z'
                           && c == lower[k] - 'a' + 'A');

                if (tg_caseless_eq(s, lower, len) != want) {
                    printf("# 0x%02x at %zu of %zu\n", c, k, len);
                    bad++;
                }
            }
        }
    }

    is_int(bad, 0, "caseless: every byte at every place of every length");
    ok(tg_caseless_eq((const unsigned char *) "CONTENT-TYPE/JSON;Z=A",
                      lower, sizeof(lower) - 1),
       "caseless: all capitals");
}


/* tg_hex_encode(): every byte, every length up to 9 (4 a turn, then 1) */
static void
test_hex_encode(void)
{
    int            c, bad;
    char           out[2 * 256 + 1], want[2 * 256 + 1];
    size_t         n;
    unsigned char  all[256];

    for (c = 0; c < 256; c++) {
        all[c] = (unsigned char) c;
        snprintf(want + 2 * c, 3, "%02x", c);
    }

    memset(out, 'X', sizeof(out));
    tg_hex_encode(all, 256, out);
    ok(memcmp(out, want, 512) == 0 && out[512] == 'X',
       "hex of every byte, lowercase, nothing written after");

    bad = 0;

    for (n = 0; n <= 9; n++) {
        memset(out, 'X', sizeof(out));
        tg_hex_encode(all + 0xf7, n, out);

        if (memcmp(out, want + 2 * 0xf7, 2 * n) != 0 || out[2 * n] != 'X') {
            printf("# %zu bytes: %.20s\n", n, out);
            bad++;
        }
    }

    is_int(bad, 0, "hex of 0 to 9 bytes, nothing written after");
}


static void
test_sdk_date(void)
{
    char  d[TG_SDK_DATE_LEN + 1];

    is_rc(tg_sdk_date(0, d), TG_OK, "date 0: rc");
    is_str(d, "19700101T000000Z", "date of the epoch");

    /* epoch values computed with Python's calendar.timegm() */
    is_rc(tg_sdk_date(1795986000, d), TG_OK, "date 2026: rc");
    is_str(d, "20261129T210000Z", "date 2026-11-29 21:00:00");

    is_rc(tg_sdk_date(951868799, d), TG_OK, "date 2000: rc");
    is_str(d, "20000229T235959Z", "date on a leap day");

    if (sizeof(time_t) > 4) {
        is_rc(tg_sdk_date((time_t) 2147483648LL, d), TG_OK, "date 2038: rc");
        is_str(d, "20380119T031408Z", "date past 2^31");
    }

    is_rc(tg_sdk_date(0, NULL), TG_ERR_ARG, "date into NULL");

    test_sdk_date_libc();
}


/* libc's answer for t: what tg_sdk_date() did with gmtime_r() and strftime() */
static tg_rc_t
libc_date(time_t t, char out[TG_SDK_DATE_LEN + 1])
{
    struct tm  tm;

    if (gmtime_r(&t, &tm) == NULL
        || tm.tm_year < 0 - 1900 || tm.tm_year > 9999 - 1900
        || strftime(out, TG_SDK_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm)
           != TG_SDK_DATE_LEN)
    {
        return TG_ERR_ARG;
    }

    return TG_OK;
}


/*
 * The arithmetic against libc: every day of years 1 to 10001 (leap
 * years, centuries, the ends of the range of four-digit years, before
 * 1970), at a second that moves through the day, and the seconds around
 * midnight and the ends of the range.
 */
static void
test_sdk_date_libc(void)
{
    int         same, mismatch_shown;
    long long   t, day, k;
    tg_rc_t     rc, want_rc;
    char        d[TG_SDK_DATE_LEN + 1], want[TG_SDK_DATE_LEN + 1];

    static const long long  edges[] = {
        -30610224001LL, -30610224000LL, -30610223999LL, -1, 0, 1, 86399,
        86400, 951782400LL, 951868799LL, 951868800LL, 253402300799LL,
        253402300800LL, -62135596800LL, -62135596801LL, 253402387200LL,
        (long long) 1 << 40, -((long long) 1 << 40), (long long) 1 << 62,
        -((long long) 1 << 62)
    };

    if (sizeof(time_t) < 8) {
        ok(1, "date as libc's: not with a 32-bit time_t");
        return;
    }

    same = 1;
    mismatch_shown = 0;

    for (day = -719162 - 400; day < 2932897 + 400; day++) {
        for (k = 0; k < 3; k++) {
            t = day * 86400 + (k == 0 ? 0 : k == 1 ? 86399
                                              : (day * 7919) % 86400);

            want_rc = libc_date((time_t) t, want);
            memset(d, 0, sizeof(d));
            rc = tg_sdk_date((time_t) t, d);

            if (rc != want_rc || (rc == TG_OK && strcmp(d, want) != 0)) {
                if (!mismatch_shown) {
                    printf("# t %lld: %s, libc %s\n", t, d,
                           want_rc == TG_OK ? want : "refused");
                    mismatch_shown = 1;
                }

                same = 0;
            }
        }
    }

    ok(same, "date: every day of years 1 to 10001 as libc's");

    for (k = 0; k < (long long) (sizeof(edges) / sizeof(edges[0])); k++) {
        want_rc = libc_date((time_t) edges[k], want);
        rc = tg_sdk_date((time_t) edges[k], d);
        is_rc(rc, want_rc, "date %lld: rc as libc's", edges[k]);

        if (want_rc == TG_OK) {
            is_str(d, want, "date %lld as libc's", edges[k]);
        }
    }
}


/*
 * The worked example of Huawei Cloud's "API Request Signing Guide"
 * (support.huaweicloud.com/intl/en-us/devg-apisign/):
 *   canonical request:       api-sign-algorithm-002.html
 *   string to sign (b25362e6...):  api-sign-algorithm-003.html
 *   SK "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", signature 7be66680...:
 *                            the "calculating the signature" step
 *                            (api-sign-algorithm-004, zh-cn edition)
 *   Authorization:           api-sign-algorithm-005.html
 */
static void
test_huawei_example(void)
{
    size_t             len;
    tg_rc_t            rc;
    tg_hmac_key_t      hk;
    tg_sign_request_t  req;
    unsigned char      cr[512];
    char               auth[256];
    char               hex[TG_SHA256_HEX_LEN + 1];

    static const tg_header_t  h[] = {
        { S("Host"), S("service.region.example.com") },
        { S("Content-Type"), S("application/json") },
        { S("X-Sdk-Date"), S("20191115T033655Z") },
    };
    static const tg_str_t  ak = S("QTWAOYTTINDUT2QVKYUC");
    static const tg_str_t  sk = S("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc");
    static const char  *want_cr =
        "GET\n"
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n"
        "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n"
        "content-type:application/json\n"
        "host:service.region.example.com\n"
        "x-sdk-date:20191115T033655Z\n"
        "\n"
        "content-type;host;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    memset(&req, 0, sizeof(req));
    req.method = str_of("GET");
    req.path = str_of("/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs");
    req.query = str_of("limit=2&marker=13551d6b-755d-4757-b956-536f674975c0");
    req.headers = h;
    req.nheaders = 3;
    req.body_sha256_hex = empty_sha;
    req.date = str_of("20191115T033655Z");

    rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);
    is_rc(rc, TG_OK, "Huawei example: canonical request rc");
    cr[rc == TG_OK ? len : 0] = '\0';
    is_str((char *) cr, want_cr, "Huawei example: canonical request");

    rc = tg_sha256_hex(cr, len, hex);
    is_rc(rc, TG_OK, "Huawei example: hash rc");
    is_str(hex, "b25362e603ee30f4f25e7858e8a7160f"
                "d36e803bb2dfe206278659d71a9bcd7a",
           "Huawei example: hashed canonical request");

    rc = tg_sign_authorization(&req, &ak, &sk, auth, sizeof(auth), &len);
    is_rc(rc, TG_OK, "Huawei example: authorization rc");
    is_str(auth, "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, "
                 "SignedHeaders=content-type;host;x-sdk-date, "
                 "Signature=7be6668032f70418fcc22abc52071e57"
                 "aff61b84a1d2381bb430d6870f4f6ebe",
           "Huawei example: Authorization");
    is_int(len, strlen(auth), "Huawei example: length");

    rc = tg_hmac_key_init(&hk, sk.data, sk.len);
    is_rc(rc, TG_OK, "Huawei example: ready key rc");
    rc = tg_sign_authorization_key(&req, &ak, &hk, auth, sizeof(auth), &len);
    is_rc(rc, TG_OK, "Huawei example: authorization with a ready key rc");
    is_str(auth, "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, "
                 "SignedHeaders=content-type;host;x-sdk-date, "
                 "Signature=7be6668032f70418fcc22abc52071e57"
                 "aff61b84a1d2381bb430d6870f4f6ebe",
           "Huawei example: Authorization with a ready key");

    rc = tg_sign_authorization_key(&req, &ak, &hk, auth, 10, &len);
    is_rc(rc, TG_ERR_BUF_TOO_SMALL, "ready key: a buffer too small");
    is_int(len, strlen("SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, "
                       "SignedHeaders=content-type;host;x-sdk-date, "
                       "Signature=") + TG_SHA256_HEX_LEN + 1,
           "ready key: the size needed");

    tg_hmac_key_wipe(&hk);
    rc = tg_sign_authorization_key(&req, &ak, &hk, auth, sizeof(auth), &len);
    is_rc(rc, TG_ERR_CRYPTO, "a wiped ready key signs nothing");
    is_str(auth, "", "a wiped ready key: nothing written");

    is_rc(tg_sign_authorization_key(&req, &ak, NULL, auth, sizeof(auth),
                                    &len),
          TG_ERR_ARG, "no ready key");
}


static int
canon(const char *method, const char *path, const char *query,
    const tg_header_t *h, size_t nh, char *out, size_t size)
{
    size_t             len;
    tg_rc_t            rc;
    tg_sign_request_t  req;

    memset(&req, 0, sizeof(req));
    req.method = str_of(method);
    req.path = str_of(path);
    req.query = str_of(query);
    req.headers = h;
    req.nheaders = nh;
    req.body_sha256_hex = empty_sha;
    req.date = str_of("20261129T210000Z");

    rc = tg_sign_canonical_request(&req, (unsigned char *) out, size - 1,
                                   &len);
    out[rc == TG_OK ? len : 0] = '\0';

    return (int) rc;
}


/* rules the SDK vectors cannot show: the SDK never sends such a query */
static void
test_query_and_edges(void)
{
    char  out[1024];

    static const tg_header_t  h[] = {
        { S("Host"), S("h") },
    };

    is_rc(canon("get", "/x", "b=2&a=1&a=0", h, 1, out, sizeof(out)), TG_OK,
          "unsorted query: rc");
    is_str(out, "GET\n/x/\na=0&a=1&b=2\nhost:h\nx-sdk-date:20261129T210000Z"
                "\n\nhost;x-sdk-date\n"
                "e3b0c44298fc1c149afbf4c8996fb924"
                "27ae41e4649b934ca495991b7852b855",
           "unsorted query sorted by key then value; date added");

    is_rc(canon("GET", "/x", "b=1&a=2", h, 1, out, sizeof(out)), TG_OK,
          "two parameters: rc");
    ok(strstr(out, "\na=2&b=1\n") != NULL, "two parameters sorted");

    is_rc(canon("GET", "/x", "a&&b=&c=%7e%2b+", h, 1, out, sizeof(out)),
          TG_OK, "odd query: rc");
    ok(strstr(out, "\na=&b=&c=~%2B%2B\n") != NULL,
       "no '=' gives an empty value, empty pieces skipped, + kept");

    is_rc(canon("GET", "/x", "%41=1&B=2&a=3", h, 1, out, sizeof(out)), TG_OK,
          "decoded sort: rc");
    ok(strstr(out, "\nA=1&B=2&a=3\n") != NULL,
       "query sorted by decoded key");

    is_rc(canon("GET", "/x", "a=%E4%BD%A0&a=%e4%bd", h, 1, out, sizeof(out)),
          TG_ERR_ARG, "query decoding to bad UTF-8 refused");

    is_rc(canon("GET", "/a%C0%AFb", "", h, 1, out, sizeof(out)),
          TG_ERR_ARG, "overlong UTF-8 in the path refused");

    is_rc(canon("GET", "/%ED%A0%80", "", h, 1, out, sizeof(out)),
          TG_ERR_ARG, "surrogate in the path refused");

    /* paths of unreserved bytes and "/" only: copied, a "/" appended */
    is_rc(canon("GET", "/", "", h, 1, out, sizeof(out)), TG_OK,
          "root path: rc");
    ok(starts(out, "GET\n/\n\n"), "root path as it is");

    is_rc(canon("GET", "/aZ09-_.~/x", "", h, 1, out, sizeof(out)), TG_OK,
          "unreserved path: rc");
    ok(starts(out, "GET\n/aZ09-_.~/x/\n\n"),
       "unreserved path copied, a slash appended");

    is_rc(canon("GET", "//a//", "", h, 1, out, sizeof(out)), TG_OK,
          "empty segments: rc");
    ok(starts(out, "GET\n//a//\n\n"),
       "empty segments kept, no slash appended");

    is_rc(canon("GET", "a", "", h, 1, out, sizeof(out)), TG_OK,
          "relative path: rc");
    ok(starts(out, "GET\na/\n\n"), "relative path, a slash appended");

    is_rc(canon("GET", "/a+b/c%2Fd", "", h, 1, out, sizeof(out)), TG_OK,
          "path to encode: rc");
    ok(starts(out, "GET\n/a%2Bb/c/d/\n\n"),
       "a path to encode still is, an encoded slash splits");

    is_rc(canon("GET", "/%F0%9F%98%80/", "", h, 1, out, sizeof(out)), TG_OK,
          "4-byte UTF-8 in the path: rc");
    ok(strncmp(out, "GET\n/%F0%9F%98%80/\n\n", 20) == 0,
       "4-byte UTF-8 path re-encoded, no second slash");
}


/*
 * Names too long to be lowercased into SignedHeaders beforehand (more
 * than 512 bytes together) are lowercased as they are written: the same
 * canonical request and Authorization as names that fit.
 */
static void
test_long_names(void)
{
    char              *out, *want, *p;
    size_t             n, len, size;
    tg_rc_t            rc;
    tg_header_t        h[3];
    tg_sign_request_t  req;
    char               upper[2][301], lower[2][301], auth[2048];

    static const tg_str_t  ak = S("AK");
    static const tg_str_t  sk = S("SK");

    /* "XAAA...", "XZZZ...": 300 bytes each */

    for (n = 0; n < 2; n++) {
        memset(upper[n], n ? 'Z' : 'A', 300);
        memset(lower[n], n ? 'z' : 'a', 300);
        upper[n][0] = 'X';
        lower[n][0] = 'x';
        upper[n][300] = '\0';
        lower[n][300] = '\0';
    }

    h[0].name = str_of(upper[1]);
    h[0].value = str_of("2");
    h[1].name = str_of("Host");
    h[1].value = str_of("h");
    h[2].name = str_of(upper[0]);
    h[2].value = str_of("1");

    size = 4096;
    out = malloc(size);
    want = malloc(size);

    if (out == NULL || want == NULL) {
        ok(0, "malloc");
        return;
    }

    /* "x-" before "xa": '-' is below the letters */

    p = want;
    p += sprintf(p, "POST\n/x/\n\nhost:h\nx-sdk-date:20261129T210000Z\n");
    p += sprintf(p, "%s:1\n%s:2\n\nhost;x-sdk-date;%s;%s\n", lower[0],
                 lower[1], lower[0], lower[1]);
    sprintf(p, "e3b0c44298fc1c149afbf4c8996fb924"
               "27ae41e4649b934ca495991b7852b855");

    is_rc(canon("POST", "/x", "", h, 3, out, size), TG_OK,
          "names of 600 bytes: rc");
    is_str(out, want,
           "names of 600 bytes: lowercased and sorted as short ones are");

    memset(&req, 0, sizeof(req));
    req.method = str_of("POST");
    req.path = str_of("/x");
    req.query = str_of("");
    req.headers = h;
    req.nheaders = 3;
    req.body_sha256_hex = empty_sha;
    req.date = str_of("20261129T210000Z");

    rc = tg_sign_authorization(&req, &ak, &sk, auth, sizeof(auth), &len);
    is_rc(rc, TG_OK, "names of 600 bytes: signed");

    p = strstr(want, "\n\nhost;");
    n = strchr(p + 2, '\n') - (p + 2);

    ok(strstr(auth, " Access=AK, SignedHeaders=") != NULL
       && strncmp(strstr(auth, "SignedHeaders=") + 14, p + 2, n) == 0
       && strncmp(strstr(auth, "SignedHeaders=") + 14 + n, ", Signature=",
                  12) == 0,
       "names of 600 bytes: SignedHeaders as in the canonical request");

    free(want);
    free(out);
}


static void
test_negative(void)
{
    char               out[256];
    size_t             len, need;
    tg_sign_request_t  req;
    tg_header_t        h[2];
    unsigned char      cr[512];

    static const tg_str_t  ak = S("AK");
    static const tg_str_t  sk = S("SK");
    static const tg_str_t  nosk = S("");

    h[0].name = str_of("Host");
    h[0].value = str_of("example.com");
    h[1].name = str_of("X-Evil");
    h[1].value = str_of("a\r\nX-Injected: 1");

    memset(&req, 0, sizeof(req));
    req.method = str_of("POST");
    req.path = str_of("/v3/p/instances/database-version/upgrade");
    req.headers = h;
    req.nheaders = 2;
    req.body_sha256_hex = empty_sha;
    req.date = str_of("20261129T210000Z");

    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "CR LF in a value");
    is_rc(tg_sign_authorization(&req, &ak, &sk, out, sizeof(out), &len),
          TG_ERR_SIGN_HEADER, "CR LF in a value: no Authorization");
    is_str(out, "", "CR LF in a value: out is empty");

    h[1].value = str_of("a\rb");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "bare CR in a value");

    h[1].value = str_of("a\nb");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "bare LF in a value");

    h[1].value.data = (const unsigned char *) "a\0b";
    h[1].value.len = 3;
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "NUL in a value");

    h[1].value = str_of("ok");
    h[1].name = str_of("X-Bad\r");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "CR in a name");

    h[1].name = str_of("X-Bad:");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "colon in a name");

    h[1].name = str_of("");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "empty name");

    h[1].name = str_of("HOST");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "two headers with one name");

    h[1].name = str_of("X-Sdk-Date");
    h[1].value = str_of("20261129T210001Z");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len),
          TG_ERR_SIGN_HEADER, "X-Sdk-Date header differing from the date");

    h[1].value = str_of(" 20261129T210000Z ");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len), TG_OK,
          "X-Sdk-Date header equal to the date once trimmed");

    /* buffer too small: the size needed comes back */
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &need), TG_OK,
          "canonical request fits");
    is_rc(tg_sign_canonical_request(&req, cr, need - 1, &len),
          TG_ERR_BUF_TOO_SMALL, "canonical request, one byte short");
    is_int(len, need, "canonical request: needed length reported");
    is_rc(tg_sign_canonical_request(&req, NULL, 0, &len),
          TG_ERR_BUF_TOO_SMALL, "canonical request, no buffer");
    is_int(len, need, "canonical request: needed length with no buffer");
    is_rc(tg_sign_canonical_request(&req, cr, need, &len), TG_OK,
          "canonical request, exact size");

    is_rc(tg_sign_authorization(&req, &ak, &sk, out, sizeof(out), &need),
          TG_OK, "authorization fits");
    is_rc(tg_sign_authorization(&req, &ak, &sk, out, need, &len),
          TG_ERR_BUF_TOO_SMALL, "authorization, no room for the NUL");
    is_int(len, need + 1, "authorization: size needed, NUL included");
    is_str(out, "", "authorization too small: out is empty");
    is_rc(tg_sign_authorization(&req, &ak, &sk, out, need + 1, &len), TG_OK,
          "authorization, exact size");
    is_int(len, need, "authorization length");

    is_rc(tg_sign_authorization(&req, &ak, &nosk, out, sizeof(out), &len),
          TG_ERR_ARG, "empty SK");

    req.date = str_of("2026-11-29T21:00");
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len), TG_ERR_ARG,
          "malformed date");
    req.date = str_of("20261129T210000Z");

    req.body_sha256_hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934C"
                          "A495991B7852B855";
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len), TG_ERR_ARG,
          "uppercase body hash");
    req.body_sha256_hex = "UNSIGNED-PAYLOAD";
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len), TG_ERR_ARG,
          "body hash not hex");
    req.body_sha256_hex = empty_sha;

    req.nheaders = TG_SIGN_MAX_HEADERS + 1;
    is_rc(tg_sign_canonical_request(&req, cr, sizeof(cr), &len), TG_ERR_ARG,
          "too many headers");
}


/*
 * Every byte in a method, a header name, the path and the body's hash,
 * against the classes written out here from their sources: RFC 7230's
 * tchar for the method (uppercased) and the names (lowercased), what
 * Python's quote(s, safe='~') leaves as it is for the path (anything
 * else is %XX, uppercase), lowercase hex for the hash.
 */

static void
test_byte_classes(void)
{
    int                c, tchar, unreserved, hex, bad_method, bad_name,
                       bad_path, bad_hash;
    char               want[64], hash[TG_SHA256_HEX_LEN + 1];
    size_t             len, k;
    tg_rc_t            rc;
    unsigned char      name[3], path[4], cr[512], long_path[18],
                       long_name[17];
    tg_sign_request_t  req;
    tg_header_t        h[1];

    bad_method = 0;
    bad_name = 0;
    bad_path = 0;
    bad_hash = 0;

    for (c = 0; c < 256; c++) {
        tchar = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                || (c >= '0' && c <= '9')
                || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                     || (c >= '0' && c <= '9')
                     || (c != 0 && strchr("-_.~", c) != NULL);
        hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');

        memset(&req, 0, sizeof(req));
        req.method = str_of("POST");
        req.path = str_of("/v3/p/x");
        req.date = str_of("20261129T210000Z");

        /*
         * The body's hash: lowercase hex only, that byte at each place
         * (the hash is checked eight bytes at a time: every byte of a
         * word is looked at).  A NUL ends it early: refused.
         */

        for (k = 0; k < TG_SHA256_HEX_LEN; k++) {
            memcpy(hash, empty_sha, TG_SHA256_HEX_LEN + 1);
            hash[k] = (char) c;
            req.body_sha256_hex = hash;

            rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);

            if ((rc == TG_OK) != hex) {
                printf("# byte 0x%02x at %zu in the body's hash: %s\n", c,
                       k, hex ? "refused" : "accepted");
                bad_hash++;
            }
        }

        req.body_sha256_hex = empty_sha;

        /* the method: that byte alone, uppercased */

        name[0] = (unsigned char) c;
        req.method.data = name;
        req.method.len = 1;

        rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);

        if ((rc == TG_OK) != tchar) {
            printf("# byte 0x%02x in a method: %s\n", c,
                   tchar ? "refused" : "accepted");
            bad_method++;

        } else if (rc == TG_OK
                   && (len < 2 || cr[0] != (unsigned char) toupper(c)
                       || cr[1] != '\n'))
        {
            printf("# byte 0x%02x in a method: not uppercased\n", c);
            bad_method++;
        }

        req.method = str_of("POST");

        /* a header name "X?Y", lowercased ("_" is sent, never signed) */

        name[0] = 'X';
        name[1] = (unsigned char) c;
        name[2] = 'Y';
        h[0].name.data = name;
        h[0].name.len = 3;
        h[0].value = str_of("v");
        req.headers = h;
        req.nheaders = 1;

        rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);

        if ((rc == TG_OK) != tchar) {
            printf("# byte 0x%02x in a header name: %s\n", c,
                   tchar ? "refused" : "accepted");
            bad_name++;

        } else if (rc == TG_OK && c != '_') {
            cr[len] = '\0';
            snprintf(want, sizeof(want), "\nx%cy:v\n", tolower(c));

            if (strstr((char *) cr, want) == NULL) {
                printf("# byte 0x%02x in a header name: not lowercased\n",
                       c);
                bad_name++;
            }
        }

        /*
         * And at each place of a name of 17 bytes, lowercased eight
         * bytes at a time when it is joined into SignedHeaders.
         */

        for (k = 0; k < 17; k++) {
            memcpy(long_name, "XAbCdEfGhIjKlMnOp", 17);
            long_name[k] = (unsigned char) c;
            h[0].name.data = long_name;
            h[0].name.len = 17;

            rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);

            if ((rc == TG_OK) != tchar) {
                printf("# byte 0x%02x at %zu of a long name: %s\n", c, k,
                       tchar ? "refused" : "accepted");
                bad_name++;
                continue;
            }

            if (rc != TG_OK || c == '_') {
                continue;
            }

            cr[len] = '\0';
            snprintf(want, sizeof(want), "\n%.*s%c%s:v\n", (int) k,
                     "xabcdefghijklmnop", tolower(c),
                     "xabcdefghijklmnop" + k + 1);

            if (strstr((char *) cr, want) == NULL) {
                printf("# byte 0x%02x at %zu of a long name: not "
                       "lowercased\n", c, k);
                bad_name++;
            }
        }

        req.headers = NULL;
        req.nheaders = 0;

        /* the path "/a?b" for a printable byte that is not '%' or '/' */

        if (c < 0x20 || c > 0x7e || c == '%' || c == '/') {
            continue;
        }

        path[0] = '/';
        path[1] = 'a';
        path[2] = (unsigned char) c;
        path[3] = 'b';
        req.path.data = path;
        req.path.len = 4;

        if (unreserved) {
            snprintf(want, sizeof(want), "\n/a%cb/\n", c);

        } else {
            snprintf(want, sizeof(want), "\n/a%%%02Xb/\n", c);
        }

        if (tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len)
            != TG_OK)
        {
            printf("# byte 0x%02x in the path: refused\n", c);
            bad_path++;
            continue;
        }

        cr[len] = '\0';

        if (strstr((char *) cr, want) == NULL) {
            printf("# byte 0x%02x in the path: not as %s\n", c,
                   unreserved ? "itself" : "%XX");
            bad_path++;
        }

        /*
         * And at each place of "/aaaaaaaaaaaaaaab" (17 bytes: two words
         * and a byte), which is looked at eight bytes at a time.
         */

        for (k = 1; k < 17; k++) {
            memcpy(long_path, "/aaaaaaaaaaaaaaab", 18);
            long_path[k] = (unsigned char) c;
            req.path.data = long_path;
            req.path.len = 17;

            snprintf(want, sizeof(want), unreserved ? "\n%.*s%c%s/\n"
                                                    : "\n%.*s%%%02X%s/\n",
                     (int) k, long_path, c, long_path + k + 1);

            rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);

            if (rc == TG_OK) {
                cr[len] = '\0';
            }

            if (rc != TG_OK || strstr((char *) cr, want) == NULL) {
                printf("# byte 0x%02x at %zu in a long path: not as %s\n",
                       c, k, unreserved ? "itself" : "%XX");
                bad_path++;
            }
        }
    }

    is_int(bad_hash, 0, "every byte at every place in the body's hash: "
           "lowercase hex or refused");
    is_int(bad_method, 0, "every byte in a method: tchar (uppercased) or "
           "refused");
    is_int(bad_name, 0, "every byte at every place in a header name: tchar "
           "(lowercased) or refused");
    is_int(bad_path, 0, "every printable byte at every place in the path: "
           "unreserved as itself, the others %%XX");
}

/*
 * Header values are trimmed of what Python's str.strip() takes away, as
 * the SDK does (signer.py: value.strip()): the code points for which
 * str.isspace() is true, listed here from Python 3.11's
 * [c for c in range(0x110000) if chr(c).isspace()].  Every other code
 * point of the BMP, each at both ends of a value, stays; LF, CR and NUL
 * are refused.
 */
static void
test_white_space(void)
{
    int                space;
    char               want[32];
    size_t             i, n, len, bad;
    unsigned           c;
    tg_rc_t            rc;
    tg_header_t        h[1];
    unsigned char      v[16], cr[512];
    tg_sign_request_t  req;

    static const unsigned  spaces[] = {
        0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85,
        0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
        0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f,
        0x205f, 0x3000
    };

    memset(&req, 0, sizeof(req));
    req.method = str_of("POST");
    req.path = str_of("/x");
    req.headers = h;
    req.nheaders = 1;
    req.body_sha256_hex = empty_sha;
    req.date = str_of("20261129T210000Z");

    h[0].name = str_of("X-V");
    h[0].value.data = v;

    bad = 0;

    for (c = 0; c < 0x10000; c++) {
        if (c >= 0xd800 && c <= 0xdfff) {
            continue;
        }

        space = 0;

        for (i = 0; i < sizeof(spaces) / sizeof(spaces[0]); i++) {
            space |= (spaces[i] == c);
        }

        /* c, "v", c */

        if (c < 0x80) {
            n = 1;
            v[0] = (unsigned char) c;

        } else if (c < 0x800) {
            n = 2;
            v[0] = (unsigned char) (0xc0 | (c >> 6));
            v[1] = (unsigned char) (0x80 | (c & 0x3f));

        } else {
            n = 3;
            v[0] = (unsigned char) (0xe0 | (c >> 12));
            v[1] = (unsigned char) (0x80 | ((c >> 6) & 0x3f));
            v[2] = (unsigned char) (0x80 | (c & 0x3f));
        }

        v[n] = 'v';
        memcpy(v + n + 1, v, n);
        h[0].value.len = 2 * n + 1;

        rc = tg_sign_canonical_request(&req, cr, sizeof(cr) - 1, &len);

        if (c == 0 || c == '\n' || c == '\r') {
            if (rc != TG_ERR_SIGN_HEADER) {
                printf("# U+%04X in a value: not refused\n", c);
                bad++;
            }

            continue;
        }

        if (rc != TG_OK) {
            printf("# U+%04X in a value: refused\n", c);
            bad++;
            continue;
        }

        cr[len] = '\0';

        if (space) {
            snprintf(want, sizeof(want), "\nx-v:v\n");

        } else {
            memcpy(want, "\nx-v:", 5);
            memcpy(want + 5, v, 2 * n + 1);
            memcpy(want + 5 + 2 * n + 1, "\n", 2);
        }

        if (strstr((char *) cr, want) == NULL) {
            printf("# U+%04X at both ends of a value: %s\n", c,
                   space ? "not trimmed" : "trimmed");
            bad++;
        }
    }

    is_int(bad, 0, "every code point of the BMP at both ends of a value: "
           "trimmed as Python's str.strip() trims");
}


/*
 * The AK goes into the Authorization value: printable ASCII but the
 * space and ',' (a ',' would start another of its parameters, CR or LF
 * another header).  The date is YYYYMMDDTHHMMSSZ, each byte of it in
 * its place.
 */
static void
test_ak_and_date(void)
{
    int                c, good, bad;
    char               out[256];
    size_t             k, len;
    tg_rc_t            rc;
    tg_str_t           ak;
    unsigned char      a[3], d[TG_SDK_DATE_LEN];
    tg_sign_request_t  req;

    static const tg_str_t  sk = S("SK");

    memset(&req, 0, sizeof(req));
    req.method = str_of("POST");
    req.path = str_of("/x");
    req.body_sha256_hex = empty_sha;
    req.date = str_of("20261129T210000Z");

    bad = 0;

    for (c = 0; c < 256; c++) {
        good = (c > 0x20 && c < 0x7f && c != ',');

        a[0] = 'A';
        a[1] = (unsigned char) c;
        a[2] = 'K';
        ak.data = a;
        ak.len = 3;

        rc = tg_sign_authorization(&req, &ak, &sk, out, sizeof(out), &len);

        if (rc != (good ? TG_OK : TG_ERR_ARG)) {
            printf("# byte 0x%02x in the AK: %s\n", c,
                   good ? "refused" : "accepted");
            bad++;

        } else if (good && (strncmp(out, "SDK-HMAC-SHA256 Access=", 23) != 0
                            || memcmp(out + 23, a, 3) != 0
                            || out[26] != ','))
        {
            printf("# byte 0x%02x in the AK: not as it is\n", c);
            bad++;
        }
    }

    is_int(bad, 0, "every byte in the AK: printable but space and ',', "
           "or refused");

    bad = 0;
    req.date.data = d;

    for (k = 0; k < TG_SDK_DATE_LEN; k++) {
        for (c = 0; c < 256; c++) {
            memcpy(d, "20261129T210000Z", TG_SDK_DATE_LEN);

            good = (k == 8) ? (c == 'T')
                   : (k == 15) ? (c == 'Z')
                   : (c >= '0' && c <= '9');

            d[k] = (unsigned char) c;

            rc = tg_sign_authorization(&req, &sk, &sk, out, sizeof(out),
                                       &len);

            if ((rc == TG_OK) != good) {
                printf("# byte 0x%02x at %zu of the date: %s\n", c, k,
                       good ? "refused" : "accepted");
                bad++;
            }
        }
    }

    is_int(bad, 0, "every byte at every place of the date: "
           "YYYYMMDDTHHMMSSZ, or refused");
}


/*
 * What a signature leaves on the stack it ran on: nothing of the SK (its
 * padded HMAC blocks, or the digest an SK longer than a block is hashed
 * to) and nothing of the canonical request's last bytes, where with
 * temporary credentials the security token is.  The signer runs in a
 * thread on a stack of ours, zeroed first and searched after.  Only our
 * own buffers are looked for, in the byte order they hold: OpenSSL's
 * SHA-256 keeps its message words byte-swapped, and with the EVP path
 * its states are on the heap.
 */

#define TEST_STACK_SIZE  (256 * 1024)

typedef struct {
    tg_sign_request_t   req;
    tg_str_t            ak;
    tg_str_t            sk;
    tg_rc_t             rc;
    tg_rc_t             key_rc;
    char                auth[512];
    char                auth_key[512];
} sign_job_t;


static void *
sign_job(void *arg)
{
    size_t          len;
    tg_hmac_key_t   hk;
    sign_job_t     *j;

    j = arg;

    j->rc = tg_sign_authorization(&j->req, &j->ak, &j->sk, j->auth,
                                  sizeof(j->auth), &len);

    j->key_rc = tg_hmac_key_init(&hk, j->sk.data, j->sk.len);

    if (j->key_rc == TG_OK) {
        j->key_rc = tg_sign_authorization_key(&j->req, &j->ak, &hk,
                                              j->auth_key,
                                              sizeof(j->auth_key), &len);
    }

    tg_hmac_key_wipe(&hk);

    return NULL;
}


static int
sign_on(unsigned char *stack, sign_job_t *j)
{
    int             rc;
    pthread_t       t;
    pthread_attr_t  attr;

    memset(stack, 0, TEST_STACK_SIZE);

    if (pthread_attr_init(&attr) != 0) {
        return -1;
    }

    rc = pthread_attr_setstack(&attr, stack, TEST_STACK_SIZE);

    if (rc == 0) {
        rc = pthread_create(&t, &attr, sign_job, j);
    }

    if (rc == 0) {
        rc = pthread_join(t, NULL);
    }

    (void) pthread_attr_destroy(&attr);

    return rc;
}


/* where the n bytes at what are in the stack, or -1 */
static long
stack_holds(const unsigned char *stack, const unsigned char *what, size_t n)
{
    size_t  i;

    for (i = 0; i + n <= TEST_STACK_SIZE; i++) {
        if (stack[i] == what[0] && memcmp(stack + i, what, n) == 0) {
            return (long) i;
        }
    }

    return -1;
}


static void
test_wiped(void)
{
    size_t          i;
    void           *mem;
    sign_job_t     *j;
    tg_header_t     h[3];
    unsigned char  *stack, md[32], pat[16];

    static const char  sk[] = "Wiped-SK-0123456789abcdefghijklm";
    static const char  long_sk[] =
        "Wiped-long-SK-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
        "OPQRSTUVWXYZ-of-more-than-one-block";
    static const char  token[] =
        "Wiped-security-token-0123456789abcdefghijklmnopqrstuvwxyz-its-end";

    if (posix_memalign(&mem, 4096, TEST_STACK_SIZE) != 0) {
        ok(0, "wiped: a stack");
        return;
    }

    stack = mem;

    j = calloc(1, sizeof(sign_job_t));
    if (j == NULL) {
        ok(0, "wiped: a job");
        free(stack);
        return;
    }

    h[0].name = str_of("Host");
    h[0].value = str_of("gaussdb.example.com");
    h[1].name = str_of("X-Security-Token");
    h[1].value = str_of(token);
    h[2].name = str_of("Content-Type");
    h[2].value = str_of("application/json");

    j->req.method = str_of("POST");
    j->req.path = str_of("/v3/0123456789abcdef0123456789abcdef/instances/"
                         "database-version/upgrade");
    j->req.headers = h;
    j->req.nheaders = 3;
    j->req.body_sha256_hex = empty_sha;
    j->req.date = str_of("20261129T210000Z");
    j->ak = str_of("AK");
    j->sk = str_of(sk);

    if (!ok(sign_on(stack, j) == 0 && j->rc == TG_OK && j->key_rc == TG_OK
            && strcmp(j->auth, j->auth_key) == 0,
            "wiped: signed on a stack of ours, with the SK and a ready key"))
    {
        goto done;
    }

    ok(stack_holds(stack, (const unsigned char *) token + sizeof(token) - 17,
                   16) == -1,
       "wiped: no end of the security token left on the stack");

    for (i = 0; i < 16; i++) {
        pat[i] = (unsigned char) (sk[i] ^ 0x5c);
    }

    ok(stack_holds(stack, pat, 16) == -1,
       "wiped: no outer padded key block left on the stack");

    for (i = 0; i < 16; i++) {
        pat[i] = (unsigned char) (sk[i] ^ 0x36);
    }

    ok(stack_holds(stack, pat, 16) == -1,
       "wiped: no inner padded key block left on the stack");

    /* an SK longer than a block: HMAC's key is its digest */

    j->sk = str_of(long_sk);

    if (!ok(sign_on(stack, j) == 0 && j->rc == TG_OK
            && j->key_rc == TG_OK && strcmp(j->auth, j->auth_key) == 0,
            "wiped: signed with an SK of %zu bytes", sizeof(long_sk) - 1)
        || !ok(EVP_Digest(long_sk, sizeof(long_sk) - 1, md, NULL,
                          EVP_sha256(), NULL) == 1, "wiped: its digest"))
    {
        goto done;
    }

    /* as bytes, and as SHA-256's state words hold it on this machine */

    for (i = 0; i < 16; i++) {
        pat[i] = (unsigned char) (md[i] ^ 0x5c);
    }

    ok(stack_holds(stack, md, 16) == -1 && stack_holds(stack, pat, 16) == -1,
       "wiped: no digest of the long SK left on the stack, nor its block");

    for (i = 0; i < 16; i++) {
        pat[i] = md[(i & ~(size_t) 3) + 3 - (i & 3)];
    }

    ok(stack_holds(stack, pat, 16) == -1,
       "wiped: no SHA-256 state of the long SK left on the stack");

done:

    free(j);
    free(stack);
}


static void
test_vectors(const char *path)
{
    int                 i, n, j, nh;
    char               *text, *body, *cr;
    size_t              len, text_len, body_len;
    tg_rc_t             rc;
    cJSON              *doc, *vs, *v, *hs, *h, *b;
    tg_str_t            ak, sk;
    tg_hmac_key_t       hk;
    tg_header_t         headers[TG_SIGN_MAX_HEADERS];
    tg_sign_request_t   req;
    char                hex[TG_SHA256_HEX_LEN + 1];
    char                auth[1024];
    const char         *name;

    text_len = 0;
    text = read_file(path, &text_len);
    if (!ok(text != NULL, "read %s", path)) {
        return;
    }

    doc = cJSON_ParseWithLength(text, text_len);
    vs = cJSON_GetObjectItemCaseSensitive(doc, "vectors");
    n = cJSON_GetArraySize(vs);
    ok(n >= 30, "%d SDK vectors", n);

    for (i = 0; i < n; i++) {
        v = cJSON_GetArrayItem(vs, i);
        name = cJSON_GetStringValue(
                   cJSON_GetObjectItemCaseSensitive(v, "name"));

        /* the body, as text or base64 */
        b = cJSON_GetObjectItemCaseSensitive(v, "body");
        if (cJSON_IsString(b)) {
            body_len = strlen(b->valuestring);
            body = malloc(body_len + 1);
            memcpy(body, b->valuestring, body_len + 1);

        } else {
            b = cJSON_GetObjectItemCaseSensitive(v, "body_base64");
            len = strlen(b->valuestring);
            body = malloc(len + 1);
            body_len = (size_t) EVP_DecodeBlock((unsigned char *) body,
                                       (unsigned char *) b->valuestring,
                                       (int) len);
            while (len > 0 && b->valuestring[--len] == '=') {
                body_len--;
            }
        }

        rc = tg_sha256_hex((unsigned char *) body, body_len, hex);
        is_str(hex, cJSON_GetStringValue(
                   cJSON_GetObjectItemCaseSensitive(v, "body_sha256")),
               "%s: body hash", name);

        /*
         * Every other vector leaves X-Sdk-Date out of the header list, so
         * both ways of passing the date are checked against the SDK.
         */
        hs = cJSON_GetObjectItemCaseSensitive(v, "headers");
        nh = 0;
        for (j = 0; j < cJSON_GetArraySize(hs); j++) {
            h = cJSON_GetArrayItem(hs, j);
            name = cJSON_GetStringValue(cJSON_GetArrayItem(h, 0));

            if (i % 2 == 1 && strcasecmp(name, "x-sdk-date") == 0) {
                continue;
            }

            headers[nh].name = str_of(name);
            headers[nh].value = str_of(cJSON_GetStringValue(
                                           cJSON_GetArrayItem(h, 1)));
            nh++;
        }

        name = cJSON_GetStringValue(
                   cJSON_GetObjectItemCaseSensitive(v, "name"));

        memset(&req, 0, sizeof(req));
        req.method = str_of(cJSON_GetStringValue(
                         cJSON_GetObjectItemCaseSensitive(v, "method")));
        req.path = str_of(cJSON_GetStringValue(
                       cJSON_GetObjectItemCaseSensitive(v, "path")));
        req.query = str_of(cJSON_GetStringValue(
                        cJSON_GetObjectItemCaseSensitive(v, "query")));
        req.headers = headers;
        req.nheaders = (size_t) nh;
        req.body_sha256_hex = hex;
        req.date = str_of(cJSON_GetStringValue(
                       cJSON_GetObjectItemCaseSensitive(v, "x_sdk_date")));

        cr = malloc(8192);
        rc = tg_sign_canonical_request(&req, (unsigned char *) cr, 8191,
                                       &len);
        is_rc(rc, TG_OK, "%s: canonical request rc", name);
        cr[rc == TG_OK ? len : 0] = '\0';
        is_str(cr, cJSON_GetStringValue(
                   cJSON_GetObjectItemCaseSensitive(v, "canonical_request")),
               "%s: canonical request", name);

        ak = str_of(cJSON_GetStringValue(
                 cJSON_GetObjectItemCaseSensitive(v, "ak")));
        sk = str_of(cJSON_GetStringValue(
                 cJSON_GetObjectItemCaseSensitive(v, "sk")));

        rc = tg_sign_authorization(&req, &ak, &sk, auth, sizeof(auth), &len);
        is_rc(rc, TG_OK, "%s: authorization rc", name);
        is_str(auth, cJSON_GetStringValue(
                   cJSON_GetObjectItemCaseSensitive(v, "authorization")),
               "%s: Authorization", name);

        rc = tg_hmac_key_init(&hk, sk.data, sk.len);
        if (rc == TG_OK) {
            rc = tg_sign_authorization_key(&req, &ak, &hk, auth,
                                           sizeof(auth), &len);
            tg_hmac_key_wipe(&hk);
        }

        is_rc(rc, TG_OK, "%s: authorization with a ready key rc", name);
        is_str(auth, cJSON_GetStringValue(
                   cJSON_GetObjectItemCaseSensitive(v, "authorization")),
               "%s: Authorization with a ready key", name);

        free(cr);
        free(body);
    }

    cJSON_Delete(doc);
    free(text);
}


static char *
read_file(const char *path, size_t *len)
{
    long   n;
    char  *p;
    FILE  *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        return NULL;
    }

    p = malloc((size_t) n + 1);
    if (p == NULL || fread(p, 1, (size_t) n, f) != (size_t) n) {
        free(p);
        fclose(f);
        return NULL;
    }

    p[n] = '\0';
    *len = (size_t) n;
    fclose(f);

    return p;
}


static void
hex_of(const unsigned char *p, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", p[i]);
    }

    out[2 * n] = '\0';
}


static tg_str_t
str_of(const char *s)
{
    tg_str_t  r;

    r.data = (const unsigned char *) (s != NULL ? s : "");
    r.len = (s != NULL) ? strlen(s) : 0;

    return r;
}
