/*
 * SDK-HMAC-SHA256 request signing, byte for byte as the official Huawei
 * Cloud Python SDK does it (huaweicloud-sdk-python-v3 3.1.211,
 * huaweicloud-sdk-core/huaweicloudsdkcore/signer/signer.py, class Signer).
 * t/data/sdk_vectors.json holds the SDK's own outputs; t/unit/test_sign.c
 * reproduces every one of them.
 *
 * The rules, and the SDK line each one comes from:
 *
 *   Method      uppercased (signer.py:154, request.method.upper()).
 *
 *   URI         the path is percent-decoded as a whole (urllib's unquote:
 *               "%XX" with two hex digits becomes the byte, anything else
 *               stays as is), split on "/" (so "%2F" splits too), every
 *               byte but A-Z a-z 0-9 "-" "_" "." "~" of each segment is
 *               encoded as "%XX" with uppercase hex (quote(s, safe='~')),
 *               and a "/" is appended unless the result already ends with
 *               one (signer.py:127-128, 167-177).  The decoded path must be
 *               UTF-8: the SDK would replace bad sequences with U+FFFD, we
 *               refuse them (TG_ERR_ARG).
 *
 *   Query       the SDK sends its canonical query string on the wire
 *               (signer.py:86-90), so the raw query is parsed back: split
 *               on "&" (empty pieces skipped), each piece split at its
 *               first "=" (none: empty value), key and value decoded as
 *               above (no "+" to space), pairs sorted by decoded key then
 *               decoded value (the SDK sorts (key, value) tuples and list
 *               values, signer.py:184-205; UTF-8 byte order is code point
 *               order), re-encoded as above and joined "k=v" with "&".
 *
 *   Headers     every header given is signed except names containing "_"
 *               (signer.py:222-230); names lowercased and sorted; values
 *               trimmed with Python's str.strip() (signer.py:213), i.e.
 *               of ASCII 09-0D, 1C-20 and the UTF-8 encodings of U+0085,
 *               U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
 *               U+205F, U+3000; inner bytes untouched.  Each line is
 *               "name:value\n".  X-Sdk-Date is always signed: taken from
 *               req->date, or checked against it when given as a header.
 *               Stricter than the SDK: a name must be an RFC 9110 token,
 *               two headers may not share a name, values may hold no CR,
 *               LF or NUL (TG_ERR_SIGN_HEADER).
 *
 *   Body        lowercase hex SHA-256, given by the caller (signer.py:157).
 *
 *   StringToSign "SDK-HMAC-SHA256\n" date "\n" hex(SHA-256(canonical
 *               request)) (signer.py:119-124); Signature is the lowercase
 *               hex HMAC-SHA256 keyed with the SK's bytes (signer.py:232);
 *               Authorization as in tg_sign.h (signer.py:235-237).
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "tg_out.h"
#include "tg_sha256.h"
#include "tg_sign.h"


#define TG_SIGN_ALGORITHM      "SDK-HMAC-SHA256"
#define TG_SIGN_DATE_HEADER    "x-sdk-date"
#define TG_SIGN_DATE_HDR_LEN   (sizeof(TG_SIGN_DATE_HEADER) - 1)

/*
 * Query parameters sorted at a time, on the stack: the guarded route has
 * no query at all, the SDK's own requests a handful.
 */
#define TG_SIGN_MAX_QUERY      128

/*
 * The X-Sdk-Date range: 1000-01-01T00:00:00Z to 9999-12-31T23:59:59Z
 * (Python's calendar.timegm()), the years of four digits.
 */
#define TG_SIGN_DATE_MIN       (-30610224000LL)
#define TG_SIGN_DATE_MAX       253402300799LL

/* the canonical request is hashed through a window of this size */
#define TG_SIGN_WINDOW         256


/*
 * Byte classes: TG_TCHAR, a token character of RFC 7230 (a method, a
 * header name); TG_UNRESERVED, what Python's quote(s, safe='~') leaves
 * as it is; TG_LOWER_HEX, a digit of the body's lowercase hex hash;
 * TG_PATH_PLAIN, unreserved or "/" (a path that is its own canonical
 * form); TG_AK, what an AK may hold (printable ASCII but the space and
 * ",").  A table, not comparisons: every byte of them is looked at, and
 * a string's bytes are looked up all, their classes and-ed, before one
 * test.
 */

#define TG_TCHAR               0x01
#define TG_UNRESERVED          0x02
#define TG_LOWER_HEX           0x04
#define TG_PATH_PLAIN          0x08
#define TG_AK                  0x10

/*
 * Eight bytes of a word at a time, for the longest strings a request
 * has (its path, the body's hash): a byte x below 0x80 is in lo..hi
 * when x + (0x80 - lo) has its high bit and x + (0x7f - hi) has not,
 * and is c when (x ^ c) + 0x7f has not.  Neither sum passes 0xff, so
 * no carry runs into the next byte and each byte's bit is exact.
 */

#define TG_ONES                0x0101010101010101ULL
#define TG_HIGHS               0x8080808080808080ULL
#define tg_has_zero(x)         (((x) - TG_ONES) & ~(x) & TG_HIGHS)
#define tg_in(x, lo, hi)                                                      \
    (((x) + TG_ONES * (0x80 - (lo))) & ~((x) + TG_ONES * (0x7f - (hi))))
#define tg_is(x, c)            (~(((x) ^ (TG_ONES * (c))) + TG_ONES * 0x7f))

static const unsigned char  tg_class[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0, 17, 16, 17, 17, 17, 17, 17, 16, 16, 17, 17,  0, 27, 27, 24,  /* 0x20 */
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 16, 16, 16, 16, 16, 16,  /* 0x30 */
    16, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,  /* 0x40 */
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 16, 16, 16, 17, 27,  /* 0x50 */
    17, 31, 31, 31, 31, 31, 31, 27, 27, 27, 27, 27, 27, 27, 27, 27,  /* 0x60 */
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 16, 17, 16, 27,  0,  /* 0x70 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
};


typedef struct {
    const unsigned char *key;
    size_t               key_len;
    const unsigned char *value;
    size_t               value_len;
} tg_query_pair_t;


typedef struct {
    const unsigned char *name;      /* as given */
    size_t               name_len;
    const unsigned char *lower;     /* lowercased in names, or NULL */
    const unsigned char *value;     /* trimmed */
    size_t               value_len;
} tg_sign_header_t;


/*
 * The signed names lowercased once, in order and joined with ";": the
 * SignedHeaders value, which the canonical request and the
 * Authorization both hold, and in which each header's name is.  Names
 * too long for it together are lowercased as they are written.
 */
#define TG_SIGN_NAMES_SIZE     512

typedef struct {
    tg_sign_header_t     h[TG_SIGN_MAX_HEADERS + 1];
    size_t               n;
    size_t               names_len;     /* 0: the names did not fit */
    unsigned char        names[TG_SIGN_NAMES_SIZE];
} tg_sign_headers_t;


static void tg_out_case(tg_out_t *out, const unsigned char *data,
    size_t len, int upper);
static int tg_is_unreserved(unsigned char c);
static void tg_out_encode(tg_out_t *out, unsigned char c);
static int tg_hexval(unsigned char c);
static int tg_pct_next(const unsigned char *s, size_t len, size_t *i);
static int tg_pct_utf8(const unsigned char *s, size_t len);
static int tg_pct_cmp(const unsigned char *a, size_t alen,
    const unsigned char *b, size_t blen);
static void tg_out_reencode(tg_out_t *out, const unsigned char *s,
    size_t len);
static int tg_query_cmp(const void *a, const void *b);
static unsigned tg_classes(const unsigned char *s, size_t len);
static int tg_has_line_end(const unsigned char *p, size_t len);
static int tg_lower_hex(const char *s, size_t len);
static int tg_path_plain(const unsigned char *p, size_t len);
static size_t tg_ws_head(const unsigned char *p, size_t len);
static size_t tg_ws_tail(const unsigned char *p, size_t len);
static int tg_name_cmp(const tg_sign_header_t *a, const tg_sign_header_t *b);
static int tg_name_eq(const unsigned char *name, size_t len,
    const char *lower);
static tg_rc_t tg_check_request(const tg_sign_request_t *req);
static tg_rc_t tg_collect_headers(const tg_sign_request_t *req,
    tg_sign_headers_t *hs);
static void tg_join_names(tg_sign_headers_t *hs);
static tg_rc_t tg_canonical_uri(tg_out_t *out, const tg_str_t *path);
static tg_rc_t tg_canonical_query(tg_out_t *out, const tg_str_t *query);
static void tg_signed_headers(tg_out_t *out, const tg_sign_headers_t *hs);
static size_t tg_signed_headers_len(const tg_sign_headers_t *hs);
static tg_rc_t tg_canonical_write(const tg_sign_request_t *req,
    const tg_sign_headers_t *hs, tg_out_t *out);
static tg_rc_t tg_sign(const tg_sign_request_t *req, const tg_str_t *ak,
    const tg_str_t *sk, const tg_hmac_key_t *hk, char *out, size_t size,
    size_t *len);
static void tg_hmac_init(tg_sha256_t *inner, tg_sha256_t *outer,
    const unsigned char *key, size_t key_len);
static tg_rc_t tg_hmac_final(tg_sha256_t *inner, tg_sha256_t *outer,
    unsigned char mac[TG_HMAC_SHA256_LEN]);


static const char  tg_hex_upper[] = "0123456789ABCDEF";


tg_rc_t
tg_sha256_hex(const unsigned char *data, size_t len,
    char hex[TG_SHA256_HEX_LEN + 1])
{
    tg_sha256_t    sha;
    unsigned char  md[TG_SHA256_LEN];

    if (hex == NULL || (data == NULL && len != 0)) {
        return TG_ERR_ARG;
    }

    tg_sha256_init(&sha);
    tg_sha256_update(&sha, data, len);

    if (tg_sha256_final(&sha, md) != TG_OK) {
        return TG_ERR_CRYPTO;
    }

    tg_sha256_hex_of(md, hex);

    return TG_OK;
}


tg_rc_t
tg_hmac_sha256(const unsigned char *key, size_t key_len,
    const unsigned char *data, size_t len,
    unsigned char mac[TG_HMAC_SHA256_LEN])
{
    tg_sha256_t  inner, outer;

    if (mac == NULL || (key == NULL && key_len != 0)
        || (data == NULL && len != 0))
    {
        return TG_ERR_ARG;
    }

    tg_hmac_init(&inner, &outer, key, key_len);
    tg_sha256_update(&inner, data, len);

    return tg_hmac_final(&inner, &outer, mac);
}


tg_rc_t
tg_hmac_key_init(tg_hmac_key_t *hk, const unsigned char *key,
    size_t key_len)
{
    if (hk == NULL) {
        return TG_ERR_ARG;
    }

    memset(hk, 0, sizeof(tg_hmac_key_t));

    if (key == NULL && key_len != 0) {
        /* wiped, not only zeroed: a zeroed state hashes as a live one */
        tg_hmac_key_wipe(hk);
        return TG_ERR_ARG;
    }

    tg_hmac_init(&hk->inner, &hk->outer, key, key_len);

    if (hk->inner.failed || hk->outer.failed) {
        tg_hmac_key_wipe(hk);
        return TG_ERR_CRYPTO;
    }

    return TG_OK;
}


void
tg_hmac_key_wipe(tg_hmac_key_t *hk)
{
    tg_sha256_wipe(&hk->inner);
    tg_sha256_wipe(&hk->outer);
}


tg_rc_t
tg_hmac_sha256_key(const tg_hmac_key_t *hk, const unsigned char *data,
    size_t len, unsigned char mac[TG_HMAC_SHA256_LEN])
{
    tg_sha256_t  inner, outer;

    if (hk == NULL || mac == NULL || (data == NULL && len != 0)) {
        return TG_ERR_ARG;
    }

    tg_sha256_copy(&inner, &hk->inner);
    tg_sha256_copy(&outer, &hk->outer);
    tg_sha256_update(&inner, data, len);

    return tg_hmac_final(&inner, &outer, mac);
}


/*
 * The date by arithmetic, not gmtime_r() and strftime(): a few dozen
 * instructions instead of a thousand, for every signature
 * (tg_civil_from_days()).  Only years of four digits are accepted, those
 * strftime()'s "%Y" wrote in 16 bytes.
 */

tg_rc_t
tg_sdk_date(time_t t, char out[TG_SDK_DATE_LEN + 1])
{
    int        m, d;
    int64_t    y;
    long long  days, secs;

    if (out == NULL) {
        return TG_ERR_ARG;
    }

    if ((long long) t < TG_SIGN_DATE_MIN || (long long) t > TG_SIGN_DATE_MAX)
    {
        return TG_ERR_ARG;
    }

    days = (long long) t / 86400;
    secs = (long long) t % 86400;

    if (secs < 0) {
        secs += 86400;
        days--;
    }

    tg_civil_from_days(days, &y, &m, &d);

    tg_dec2(out, (unsigned) y / 100);
    tg_dec2(out + 2, (unsigned) y % 100);
    tg_dec2(out + 4, (unsigned) m);
    tg_dec2(out + 6, (unsigned) d);
    out[8] = 'T';
    tg_dec2(out + 9, (unsigned) (secs / 3600));
    tg_dec2(out + 11, (unsigned) (secs / 60 % 60));
    tg_dec2(out + 13, (unsigned) (secs % 60));
    out[15] = 'Z';
    out[16] = '\0';

    return TG_OK;
}


tg_rc_t
tg_sign_canonical_request(const tg_sign_request_t *req, unsigned char *buf,
    size_t size, size_t *len)
{
    tg_rc_t             rc;
    tg_out_t            out;
    tg_sign_headers_t   hs;

    if (req == NULL || len == NULL || (buf == NULL && size != 0)) {
        return TG_ERR_ARG;
    }

    *len = 0;

    rc = tg_check_request(req);
    if (rc != TG_OK) {
        return rc;
    }

    rc = tg_collect_headers(req, &hs);
    if (rc != TG_OK) {
        return rc;
    }

    tg_out_init(&out, buf, size);

    rc = tg_canonical_write(req, &hs, &out);
    if (rc != TG_OK) {
        return rc;
    }

    *len = out.len;

    return out.overflow ? TG_ERR_BUF_TOO_SMALL : TG_OK;
}


tg_rc_t
tg_sign_authorization(const tg_sign_request_t *req, const tg_str_t *ak,
    const tg_str_t *sk, char *out, size_t size, size_t *len)
{
    return tg_sign(req, ak, sk, NULL, out, size, len);
}


tg_rc_t
tg_sign_authorization_key(const tg_sign_request_t *req, const tg_str_t *ak,
    const tg_hmac_key_t *sk, char *out, size_t size, size_t *len)
{
    return tg_sign(req, ak, NULL, sk, out, size, len);
}


/*
 * One pass over the request: the canonical request is streamed into
 * SHA-256 through a small window, the string to sign into the HMAC's
 * inner hash; nothing is allocated and nothing is built twice.  The SK
 * is given as its bytes (sk) or as a ready key (hk), never both.
 */

static tg_rc_t
tg_sign(const tg_sign_request_t *req, const tg_str_t *ak, const tg_str_t *sk,
    const tg_hmac_key_t *hk, char *out, size_t size, size_t *len)
{
    size_t              need;
    tg_rc_t             rc;
    tg_out_t            o;
    tg_sha256_t         sha, inner, outer;
    unsigned char      *p;
    tg_sign_headers_t   hs;
    unsigned char       md[TG_SHA256_LEN];
    unsigned char       mac[TG_HMAC_SHA256_LEN];
    unsigned char       window[TG_SIGN_WINDOW];
    char                hex[TG_SHA256_HEX_LEN + 1];
    unsigned char       sts[sizeof(TG_SIGN_ALGORITHM) + TG_SDK_DATE_LEN + 1
                            + TG_SHA256_HEX_LEN];

    /* nothing held yet: the exit path releases all three */
    memset(&sha, 0, sizeof(tg_sha256_t));
    memset(&inner, 0, sizeof(tg_sha256_t));
    memset(&outer, 0, sizeof(tg_sha256_t));

    if (req == NULL || ak == NULL || (sk == NULL && hk == NULL)
        || len == NULL || (out == NULL && size != 0))
    {
        rc = TG_ERR_ARG;
        goto done;
    }

    *len = 0;

    if (out != NULL && size > 0) {
        out[0] = '\0';
    }

    if (ak->data == NULL || ak->len == 0
        || (sk != NULL && (sk->data == NULL || sk->len == 0)))
    {
        rc = TG_ERR_ARG;
        goto done;
    }

    /* the AK goes into a header value: printable ASCII, no ',' or space */
    if (!(tg_classes(ak->data, ak->len) & TG_AK)) {
        rc = TG_ERR_ARG;
        goto done;
    }

    rc = tg_check_request(req);
    if (rc != TG_OK) {
        goto done;
    }

    rc = tg_collect_headers(req, &hs);
    if (rc != TG_OK) {
        goto done;
    }

    /* a request that cannot be signed wins over a buffer too small */

    tg_sha256_init(&sha);
    tg_out_init(&o, window, sizeof(window));
    tg_out_hash(&o, &sha);

    rc = tg_canonical_write(req, &hs, &o);
    if (rc != TG_OK) {
        goto done;
    }

    if (o.overflow) {
        rc = TG_ERR_NOMEM;
        goto done;
    }

    rc = tg_out_sha256(&o, md);
    if (rc != TG_OK) {
        goto done;
    }

    tg_sha256_hex_of(md, hex);

    /* size the result: nothing is signed for a buffer too small */

    need = sizeof(TG_SIGN_ALGORITHM " Access=") - 1 + ak->len
           + sizeof(", SignedHeaders=") - 1 + tg_signed_headers_len(&hs)
           + sizeof(", Signature=") - 1 + TG_SHA256_HEX_LEN;

    if (need >= size) {
        *len = need + 1;
        rc = TG_ERR_BUF_TOO_SMALL;
        goto done;
    }

    /* the string to sign goes straight into the HMAC */

    if (hk != NULL) {
        tg_sha256_copy(&inner, &hk->inner);
        tg_sha256_copy(&outer, &hk->outer);

    } else {
        tg_hmac_init(&inner, &outer, sk->data, sk->len);
    }

    /* in one piece: each update costs more than its bytes */

    p = sts;
    memcpy(p, TG_SIGN_ALGORITHM "\n", sizeof(TG_SIGN_ALGORITHM));
    p += sizeof(TG_SIGN_ALGORITHM);
    memcpy(p, req->date.data, TG_SDK_DATE_LEN);
    p += TG_SDK_DATE_LEN;
    *p++ = '\n';
    memcpy(p, hex, TG_SHA256_HEX_LEN);

    tg_sha256_update(&inner, sts, sizeof(sts));

    rc = tg_hmac_final(&inner, &outer, mac);
    if (rc != TG_OK) {
        goto done;
    }

    tg_sha256_hex_of(mac, hex);

    tg_out_init(&o, out, size);
    tg_out_put(&o, TG_SIGN_ALGORITHM " Access=",
               sizeof(TG_SIGN_ALGORITHM " Access=") - 1);
    tg_out_put(&o, ak->data, ak->len);
    tg_out_put(&o, ", SignedHeaders=", sizeof(", SignedHeaders=") - 1);
    tg_signed_headers(&o, &hs);
    tg_out_put(&o, ", Signature=", sizeof(", Signature=") - 1);
    tg_out_put(&o, hex, TG_SHA256_HEX_LEN);

    if (o.len != need || o.overflow) {
        rc = TG_ERR_ARG;
        goto done;
    }

    out[need] = '\0';
    *len = need;
    rc = TG_OK;

done:

    /*
     * Signed, the canonical request's state was finalized (nothing of
     * it is left but its digest), and tg_hmac_final() wiped the HMAC's
     * two.  A failure may leave any of them as it was: all three go.
     */

    if (rc != TG_OK) {
        tg_sha256_wipe(&sha);
        tg_sha256_wipe(&inner);
        tg_sha256_wipe(&outer);
    }

    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(hex, sizeof(hex));

    /*
     * The window keeps the canonical request's last bytes, which with
     * temporary credentials end in the security token's value.
     */

    OPENSSL_cleanse(window, sizeof(window));

    if (rc != TG_OK && out != NULL && size > 0) {
        OPENSSL_cleanse(out, size);
        out[0] = '\0';
    }

    return rc;
}


/*
 * With room in the buffer (always, but for a window about to be hashed
 * and reused), the bytes are written in one loop without tg_out_byte()'s
 * check of each.
 */

static void
tg_out_case(tg_out_t *out, const unsigned char *data, size_t len, int upper)
{
    size_t          i;
    unsigned char   c, *p;

    if (len <= out->size - out->pos && len < (size_t) -1 - out->len) {
        p = out->buf + out->pos;

        /* without a branch a byte: the case bit of the letters only */

        if (upper) {
            for (i = 0; i < len; i++) {
                c = data[i];
                p[i] = (unsigned char)
                           (c ^ (((unsigned char) (c - 'a') < 26) << 5));
            }

        } else {
            for (i = 0; i < len; i++) {
                c = data[i];
                p[i] = (unsigned char)
                           (c ^ (((unsigned char) (c - 'A') < 26) << 5));
            }
        }

        out->pos += len;
        out->len += len;
        return;
    }

    for (i = 0; i < len; i++) {
        c = data[i];

        if (upper && c >= 'a' && c <= 'z') {
            c = (unsigned char) (c - 'a' + 'A');

        } else if (!upper && c >= 'A' && c <= 'Z') {
            c = (unsigned char) (c - 'A' + 'a');
        }

        tg_out_byte(out, c);
    }
}


/* what Python's quote(s, safe='~') leaves as it is */
static int
tg_is_unreserved(unsigned char c)
{
    return (tg_class[c] & TG_UNRESERVED) != 0;
}


static void
tg_out_encode(tg_out_t *out, unsigned char c)
{
    unsigned char  e[3];

    if (tg_is_unreserved(c)) {
        tg_out_byte(out, c);
        return;
    }

    e[0] = '%';
    e[1] = (unsigned char) tg_hex_upper[c >> 4];
    e[2] = (unsigned char) tg_hex_upper[c & 0x0f];
    tg_out_put(out, e, 3);
}


static int
tg_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c = (unsigned char) (c | 0x20);

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* next byte of s percent-decoded the way urllib's unquote() does */
static int
tg_pct_next(const unsigned char *s, size_t len, size_t *i)
{
    int     hi, lo;
    size_t  k;

    k = *i;

    if (s[k] == '%' && len - k >= 3) {
        hi = tg_hexval(s[k + 1]);
        lo = tg_hexval(s[k + 2]);

        if (hi >= 0 && lo >= 0) {
            *i = k + 3;
            return hi * 16 + lo;
        }
    }

    *i = k + 1;

    return s[k];
}


/* is the percent-decoded s well-formed UTF-8 (no overlong, surrogate) */
static int
tg_pct_utf8(const unsigned char *s, size_t len)
{
    int            c;
    size_t         i;
    unsigned int   need;
    unsigned char  lo, hi;

    need = 0;
    lo = 0x80;
    hi = 0xbf;

    for (i = 0; i < len; /* void */) {
        c = tg_pct_next(s, len, &i);

        if (need > 0) {
            if (c < lo || c > hi) {
                return 0;
            }

            need--;
            lo = 0x80;
            hi = 0xbf;
            continue;
        }

        if (c < 0x80) {
            continue;
        }

        lo = 0x80;
        hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;

        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) {
                lo = 0xa0;
            } else if (c == 0xed) {
                hi = 0x9f;
            }

        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) {
                lo = 0x90;
            } else if (c == 0xf4) {
                hi = 0x8f;
            }

        } else {
            return 0;
        }
    }

    return need == 0;
}


static int
tg_pct_cmp(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen)
{
    int     ca, cb;
    size_t  i, j;

    i = 0;
    j = 0;

    while (i < alen && j < blen) {
        ca = tg_pct_next(a, alen, &i);
        cb = tg_pct_next(b, blen, &j);

        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }

    if (i < alen) {
        return 1;
    }

    return (j < blen) ? -1 : 0;
}


static void
tg_out_reencode(tg_out_t *out, const unsigned char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; /* void */) {
        tg_out_encode(out, (unsigned char) tg_pct_next(s, len, &i));
    }
}


static int
tg_query_cmp(const void *a, const void *b)
{
    int                     r;
    const tg_query_pair_t  *pa, *pb;

    pa = a;
    pb = b;

    r = tg_pct_cmp(pa->key, pa->key_len, pb->key, pb->key_len);
    if (r != 0) {
        return r;
    }

    return tg_pct_cmp(pa->value, pa->value_len, pb->value, pb->value_len);
}


/* the classes every byte of s has (all of them for an empty s) */
static unsigned
tg_classes(const unsigned char *s, size_t len)
{
    size_t    i;
    unsigned  all;

    all = 0xff;

    for (i = 0; i < len; i++) {
        all &= tg_class[s[i]];
    }

    return all;
}


/* whether all of s is lowercase hex (len a multiple of 8) */
static int
tg_lower_hex(const char *s, size_t len)
{
    size_t    i;
    uint64_t  w, ok;

    ok = TG_HIGHS;

    for (i = 0; i < len; i += 8) {
        memcpy(&w, s + i, 8);
        ok &= ~w & (tg_in(w, '0', '9') | tg_in(w, 'a', 'f'));
    }

    return (ok & TG_HIGHS) == TG_HIGHS;
}


/* whether all of p is unreserved or "/": its own canonical form */
static int
tg_path_plain(const unsigned char *p, size_t len)
{
    size_t    i;
    uint64_t  w, ok;

    ok = TG_HIGHS;

    for (i = 0; len - i >= 8; i += 8) {
        memcpy(&w, p + i, 8);
        ok &= ~w & (tg_in(w, '-', '9') | tg_in(w, 'A', 'Z')
                    | tg_in(w, 'a', 'z') | tg_is(w, '_') | tg_is(w, '~'));
    }

    return (ok & TG_HIGHS) == TG_HIGHS
           && (tg_classes(p + i, len - i) & TG_PATH_PLAIN);
}


/*
 * Whether p holds a CR, an LF or a NUL, eight bytes at a time: a word
 * x has a zero byte exactly when (x - 0x01..01) & ~x & 0x80..80 is not
 * zero, and x ^ 0x0d..0d has one where x has a CR.
 */

static int
tg_has_line_end(const unsigned char *p, size_t len)
{
    size_t    i;
    uint64_t  w;

    for (i = 0; len - i >= 8; i += 8) {
        memcpy(&w, p + i, 8);

        if (tg_has_zero(w) | tg_has_zero(w ^ (TG_ONES * '\r'))
            | tg_has_zero(w ^ (TG_ONES * '\n')))
        {
            return 1;
        }
    }

    for ( /* void */ ; i < len; i++) {
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') {
            return 1;
        }
    }

    return 0;
}


/* length of the Python str.isspace() character at the start of p, or 0 */
static size_t
tg_ws_head(const unsigned char *p, size_t len)
{
    if (len == 0 || (p[0] > 0x20 && p[0] < 0x80)) {
        /* no white space starts with printable ASCII */
        return 0;
    }

    if ((p[0] >= 0x09 && p[0] <= 0x0d) || (p[0] >= 0x1c && p[0] <= 0x20)) {
        return 1;
    }

    if (len >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) {
        return 2;
    }

    if (len < 3) {
        return 0;
    }

    if ((p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80)              /* 1680 */
        || (p[0] == 0xe2 && p[1] == 0x80
            && ((p[2] >= 0x80 && p[2] <= 0x8a)              /* 2000-200A */
                || p[2] == 0xa8 || p[2] == 0xa9             /* 2028 2029 */
                || p[2] == 0xaf))                                   /* 202F */
        || (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f)           /* 205F */
        || (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80))          /* 3000 */
    {
        return 3;
    }

    return 0;
}


/* length of the Python str.isspace() character at the end of p, or 0 */
static size_t
tg_ws_tail(const unsigned char *p, size_t len)
{
    if (len == 0 || (p[len - 1] > 0x20 && p[len - 1] < 0x80)) {
        /* nor ends with it: a longer one ends with a byte from 0x80 up */
        return 0;
    }

    if (tg_ws_head(p + len - 1, 1) == 1) {
        return 1;
    }

    if (len >= 2 && tg_ws_head(p + len - 2, 2) == 2) {
        return 2;
    }

    if (len >= 3 && tg_ws_head(p + len - 3, 3) == 3) {
        return 3;
    }

    return 0;
}


static int
tg_name_cmp(const tg_sign_header_t *a, const tg_sign_header_t *b)
{
    size_t         i;
    unsigned char  ca, cb;

    for (i = 0; i < a->name_len && i < b->name_len; i++) {
        ca = a->name[i];
        cb = b->name[i];
        ca = (ca >= 'A' && ca <= 'Z') ? (unsigned char) (ca | 0x20) : ca;
        cb = (cb >= 'A' && cb <= 'Z') ? (unsigned char) (cb | 0x20) : cb;

        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }

    if (a->name_len == b->name_len) {
        return 0;
    }

    return (a->name_len < b->name_len) ? -1 : 1;
}


static int
tg_name_eq(const unsigned char *name, size_t len, const char *lower)
{
    size_t         i;
    unsigned char  c;

    if (len != strlen(lower)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = name[i];
        c = (c >= 'A' && c <= 'Z') ? (unsigned char) (c | 0x20) : c;

        if (c != (unsigned char) lower[i]) {
            return 0;
        }
    }

    return 1;
}


static tg_rc_t
tg_check_request(const tg_sign_request_t *req)
{
    size_t               i;
    unsigned             bad;
    const unsigned char *d;

    if (req->method.data == NULL || req->method.len == 0
        || req->path.data == NULL || req->path.len == 0
        || (req->query.data == NULL && req->query.len != 0)
        || (req->headers == NULL && req->nheaders != 0)
        || req->nheaders > TG_SIGN_MAX_HEADERS
        || req->body_sha256_hex == NULL)
    {
        return TG_ERR_ARG;
    }

    if (!(tg_classes(req->method.data, req->method.len) & TG_TCHAR)) {
        return TG_ERR_ARG;
    }

    /* its length first: a shorter string ends, and is not read past */

    if (strnlen(req->body_sha256_hex, TG_SHA256_HEX_LEN + 1)
            != TG_SHA256_HEX_LEN
        || !tg_lower_hex(req->body_sha256_hex, TG_SHA256_HEX_LEN))
    {
        return TG_ERR_ARG;
    }

    /* YYYYMMDDTHHMMSSZ: the SDK re-formats a parsed date (signer.py:99) */
    d = req->date.data;

    if (d == NULL || req->date.len != TG_SDK_DATE_LEN
        || d[8] != 'T' || d[15] != 'Z')
    {
        return TG_ERR_ARG;
    }

    bad = 0;

    for (i = 0; i < TG_SDK_DATE_LEN; i++) {
        if (i != 8 && i != 15) {
            bad |= ((unsigned) d[i] - '0' > 9);
        }
    }

    return bad ? TG_ERR_ARG : TG_OK;
}


static tg_rc_t
tg_collect_headers(const tg_sign_request_t *req, tg_sign_headers_t *hs)
{
    size_t               i, j, k, len;
    int                  have_date;
    tg_sign_header_t     t;
    const unsigned char *v;
    const tg_header_t   *h;

    hs->n = 0;
    have_date = 0;

    for (i = 0; i < req->nheaders; i++) {
        h = &req->headers[i];

        if (h->name.data == NULL || h->name.len == 0
            || (h->value.data == NULL && h->value.len != 0))
        {
            return TG_ERR_SIGN_HEADER;
        }

        if (!(tg_classes(h->name.data, h->name.len) & TG_TCHAR)) {
            return TG_ERR_SIGN_HEADER;
        }

        v = h->value.data;
        len = h->value.len;

        if (tg_has_line_end(v, len)) {
            return TG_ERR_SIGN_HEADER;
        }

        /* the SDK sends but never signs a name with "_" (signer.py:226) */
        if (memchr(h->name.data, '_', h->name.len) != NULL) {
            continue;
        }

        for (k = tg_ws_head(v, len); k > 0; k = tg_ws_head(v, len)) {
            v += k;
            len -= k;
        }

        for (k = tg_ws_tail(v, len); k > 0; k = tg_ws_tail(v, len)) {
            len -= k;
        }

        if (tg_name_eq(h->name.data, h->name.len, TG_SIGN_DATE_HEADER)) {
            if (len != req->date.len || memcmp(v, req->date.data, len) != 0) {
                return TG_ERR_SIGN_HEADER;
            }

            have_date = 1;
        }

        hs->h[hs->n].name = h->name.data;
        hs->h[hs->n].name_len = h->name.len;
        hs->h[hs->n].value = (len > 0) ? v : (const unsigned char *) "";
        hs->h[hs->n].value_len = len;
        hs->n++;
    }

    if (!have_date) {
        hs->h[hs->n].name = (const unsigned char *) TG_SIGN_DATE_HEADER;
        hs->h[hs->n].name_len = TG_SIGN_DATE_HDR_LEN;
        hs->h[hs->n].value = req->date.data;
        hs->h[hs->n].value_len = req->date.len;
        hs->n++;
    }

    /* insertion sort: at most TG_SIGN_MAX_HEADERS + 1 entries */
    for (i = 1; i < hs->n; i++) {
        t = hs->h[i];

        for (j = i; j > 0 && tg_name_cmp(&hs->h[j - 1], &t) > 0; j--) {
            hs->h[j] = hs->h[j - 1];
        }

        hs->h[j] = t;
    }

    for (i = 1; i < hs->n; i++) {
        if (tg_name_cmp(&hs->h[i - 1], &hs->h[i]) == 0) {
            return TG_ERR_SIGN_HEADER;
        }
    }

    tg_join_names(hs);

    return TG_OK;
}


/* SignedHeaders into hs->names, and each name's place in it */

static void
tg_join_names(tg_sign_headers_t *hs)
{
    size_t                i, k, len;
    uint64_t              w;
    unsigned char         c, *p;
    const unsigned char  *n;

    len = hs->n - 1;

    for (i = 0; i < hs->n; i++) {
        len += hs->h[i].name_len;
    }

    hs->names_len = 0;

    if (len > sizeof(hs->names)) {
        for (i = 0; i < hs->n; i++) {
            hs->h[i].lower = NULL;
        }

        return;
    }

    p = hs->names;

    for (i = 0; i < hs->n; i++) {
        if (i > 0) {
            *p++ = ';';
        }

        hs->h[i].lower = p;
        n = hs->h[i].name;

        /*
         * Tokens are ASCII: the case bit of the capitals only, set
         * eight bytes at a time (tg_in() is exact below 0x80).
         */

        for (k = 0; hs->h[i].name_len - k >= 8; k += 8) {
            memcpy(&w, n + k, 8);
            w |= (tg_in(w, 'A', 'Z') & TG_HIGHS) >> 2;
            memcpy(p, &w, 8);
            p += 8;
        }

        for ( /* void */ ; k < hs->h[i].name_len; k++) {
            c = n[k];
            *p++ = (unsigned char)
                       (c ^ (((unsigned char) (c - 'A') < 26) << 5));
        }
    }

    hs->names_len = len;
}


static tg_rc_t
tg_canonical_uri(tg_out_t *out, const tg_str_t *path)
{
    int     c, last;
    size_t  i;

    /*
     * A path of unreserved bytes and "/" only (the guarded route's) is
     * its own canonical form: nothing to decode, ASCII, nothing to
     * encode.  It is copied in one go.
     */

    if (tg_path_plain(path->data, path->len)) {
        tg_out_put(out, path->data, path->len);

        if (path->data[path->len - 1] != '/') {
            tg_out_byte(out, '/');
        }

        return TG_OK;
    }

    if (!tg_pct_utf8(path->data, path->len)) {
        return TG_ERR_ARG;
    }

    last = -1;

    for (i = 0; i < path->len; /* void */) {
        c = tg_pct_next(path->data, path->len, &i);

        if (c == '/') {
            tg_out_byte(out, '/');

        } else {
            tg_out_encode(out, (unsigned char) c);
        }

        last = c;
    }

    if (last != '/') {
        tg_out_byte(out, '/');
    }

    return TG_OK;
}


static tg_rc_t
tg_canonical_query(tg_out_t *out, const tg_str_t *query)
{
    size_t                i, n, start, end;
    tg_query_pair_t      *p;
    const unsigned char  *q, *eq;
    tg_query_pair_t       pairs[TG_SIGN_MAX_QUERY];

    q = query->data;

    if (query->len == 0) {
        return TG_OK;
    }

    n = 0;
    start = 0;

    while (start <= query->len) {
        end = start;
        while (end < query->len && q[end] != '&') {
            end++;
        }

        if (end > start) {
            if (n == TG_SIGN_MAX_QUERY) {
                return TG_ERR_ARG;
            }

            p = &pairs[n++];
            eq = memchr(q + start, '=', end - start);

            p->key = q + start;

            if (eq == NULL) {
                p->key_len = end - start;
                p->value = q + end;
                p->value_len = 0;

            } else {
                p->key_len = (size_t) (eq - (q + start));
                p->value = eq + 1;
                p->value_len = (size_t) ((q + end) - (eq + 1));
            }

            if (!tg_pct_utf8(p->key, p->key_len)
                || !tg_pct_utf8(p->value, p->value_len))
            {
                return TG_ERR_ARG;
            }
        }

        start = end + 1;
    }

    if (n > 1) {
        qsort(pairs, n, sizeof(tg_query_pair_t), tg_query_cmp);
    }

    for (i = 0; i < n; i++) {
        if (i > 0) {
            tg_out_byte(out, '&');
        }

        tg_out_reencode(out, pairs[i].key, pairs[i].key_len);
        tg_out_byte(out, '=');
        tg_out_reencode(out, pairs[i].value, pairs[i].value_len);
    }

    return TG_OK;
}


static void
tg_signed_headers(tg_out_t *out, const tg_sign_headers_t *hs)
{
    size_t  i;

    if (hs->names_len) {
        tg_out_put(out, hs->names, hs->names_len);
        return;
    }

    for (i = 0; i < hs->n; i++) {
        if (i > 0) {
            tg_out_byte(out, ';');
        }

        tg_out_case(out, hs->h[i].name, hs->h[i].name_len, 0);
    }
}


/* what tg_signed_headers() writes: the names and a ";" between two */
static size_t
tg_signed_headers_len(const tg_sign_headers_t *hs)
{
    size_t  i, len;

    len = hs->n - 1;

    for (i = 0; i < hs->n; i++) {
        len += hs->h[i].name_len;
    }

    return len;
}


/* the canonical request, the same bytes whatever out does with them */

static tg_rc_t
tg_canonical_write(const tg_sign_request_t *req, const tg_sign_headers_t *hs,
    tg_out_t *out)
{
    size_t   i;
    tg_rc_t  rc;

    tg_out_case(out, req->method.data, req->method.len, 1);
    tg_out_byte(out, '\n');

    rc = tg_canonical_uri(out, &req->path);
    if (rc != TG_OK) {
        return rc;
    }

    tg_out_byte(out, '\n');

    rc = tg_canonical_query(out, &req->query);
    if (rc != TG_OK) {
        return rc;
    }

    tg_out_byte(out, '\n');

    for (i = 0; i < hs->n; i++) {
        if (hs->h[i].lower != NULL) {
            tg_out_put(out, hs->h[i].lower, hs->h[i].name_len);

        } else {
            tg_out_case(out, hs->h[i].name, hs->h[i].name_len, 0);
        }

        tg_out_byte(out, ':');
        tg_out_put(out, hs->h[i].value, hs->h[i].value_len);
        tg_out_byte(out, '\n');
    }

    tg_out_byte(out, '\n');
    tg_signed_headers(out, hs);
    tg_out_byte(out, '\n');
    tg_out_put(out, req->body_sha256_hex, TG_SHA256_HEX_LEN);

    return TG_OK;
}


/* RFC 2104: the key, hashed first when longer than a block, padded */

static void
tg_hmac_init(tg_sha256_t *inner, tg_sha256_t *outer,
    const unsigned char *key, size_t key_len)
{
    size_t         i;
    tg_rc_t        rc;
    tg_sha256_t    kh;
    unsigned char  pad[TG_SHA256_BLOCK];

    memset(pad, 0, sizeof(pad));

    if (key_len > TG_SHA256_BLOCK) {
        tg_sha256_init(&kh);
        tg_sha256_update(&kh, key, key_len);

        rc = tg_sha256_final(&kh, pad);

        /* what is left of it is the key's digest: the key itself here */
        tg_sha256_wipe(&kh);

        if (rc != TG_OK) {
            /* a failed state: the HMAC fails at its end */
            tg_sha256_init(inner);
            tg_sha256_init(outer);
            inner->failed = 1;
            OPENSSL_cleanse(pad, sizeof(pad));
            return;
        }

    } else if (key_len > 0) {
        memcpy(pad, key, key_len);
    }

    for (i = 0; i < TG_SHA256_BLOCK; i++) {
        pad[i] ^= 0x36;
    }

    tg_sha256_init(inner);
    tg_sha256_update(inner, pad, TG_SHA256_BLOCK);

    for (i = 0; i < TG_SHA256_BLOCK; i++) {
        pad[i] ^= 0x36 ^ 0x5c;
    }

    tg_sha256_init(outer);
    tg_sha256_update(outer, pad, TG_SHA256_BLOCK);

    OPENSSL_cleanse(pad, sizeof(pad));
}


static tg_rc_t
tg_hmac_final(tg_sha256_t *inner, tg_sha256_t *outer,
    unsigned char mac[TG_HMAC_SHA256_LEN])
{
    tg_rc_t        rc;
    unsigned char  md[TG_SHA256_LEN];

    rc = tg_sha256_final(inner, md);

    if (rc == TG_OK) {
        tg_sha256_update(outer, md, TG_SHA256_LEN);
        rc = tg_sha256_final(outer, mac);
    }

    tg_sha256_wipe(inner);
    tg_sha256_wipe(outer);
    OPENSSL_cleanse(md, sizeof(md));

    if (rc != TG_OK) {
        OPENSSL_cleanse(mac, TG_HMAC_SHA256_LEN);
    }

    return rc;
}
