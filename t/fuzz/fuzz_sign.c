/*
 * Fuzz target for the SDK-HMAC-SHA256 signer.
 *
 * Input, split on "\n":  method, path, query, then "name:value" header
 * lines up to an empty line, then the body (the rest, LF included).
 *
 * Properties (abort() on violation):
 *   - the canonical request holds no CR, its method line is uppercase,
 *     its URI line ends with "/" (it need not start with one: neither
 *     does the SDK's) and its query line only unreserved
 *     bytes, "%XX", "=" and "&";
 *   - its header block is sorted, lowercase, and repeats the
 *     SignedHeaders line exactly;
 *   - building and signing are deterministic, and canonicalization is
 *     idempotent (the canonical URI and query give themselves back);
 *   - the Signature in the Authorization value is re-computed here with
 *     a second, independent path (EVP_MD_CTX SHA-256 and EVP_Q_mac HMAC)
 *     from the canonical request and found equal (CRYPTO_memcmp);
 *   - signing fails exactly when building the canonical request fails,
 *     and never writes a partial Authorization.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "tg_sign.h"


#define FZ_MAX_LINES  (TG_SIGN_MAX_HEADERS + 4)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check(int cond);
static void fz_hex(const unsigned char *p, size_t n, char *out);
static const unsigned char *fz_line(const unsigned char *p, size_t n,
    size_t *pos, size_t *len);
static void fz_verify(const tg_sign_request_t *req, const tg_str_t *ak,
    const tg_str_t *sk, const unsigned char *cr, size_t cr_len);
static void fz_structure(const unsigned char *cr, size_t len);


static void
fz_check(int cond)
{
    if (!cond) {
        abort();
    }
}


static void
fz_hex(const unsigned char *p, size_t n, char *out)
{
    size_t              i;
    static const char   hex[] = "0123456789abcdef";

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0x0f];
    }

    out[2 * n] = '\0';
}


/* the next "\n"-terminated line at *pos, or the rest; NULL at the end */
static const unsigned char *
fz_line(const unsigned char *p, size_t n, size_t *pos, size_t *len)
{
    const unsigned char  *s, *e;

    if (*pos > n) {
        return NULL;
    }

    s = p + *pos;
    e = memchr(s, '\n', n - *pos);

    if (e == NULL) {
        *len = n - *pos;
        *pos = n + 1;

    } else {
        *len = (size_t) (e - s);
        *pos += *len + 1;
    }

    return s;
}


/* the lines of cr: method, uri, query, headers..., "", signed, hash */
static void
fz_structure(const unsigned char *cr, size_t len)
{
    size_t                i, n, pos, l, nh, sl;
    const unsigned char  *line[FZ_MAX_LINES + 4], *s, *prev, *colon;
    size_t                llen[FZ_MAX_LINES + 4];
    size_t                plen;

    fz_check(memchr(cr, '\r', len) == NULL);

    n = 0;
    pos = 0;

    while ((s = fz_line(cr, len, &pos, &l)) != NULL) {
        fz_check(n < FZ_MAX_LINES + 4);
        line[n] = s;
        llen[n] = l;
        n++;
    }

    /* method, uri, query, >= 1 header, "", signed headers, hash */
    fz_check(n >= 7);

    for (i = 0; i < llen[0]; i++) {
        fz_check(!(line[0][i] >= 'a' && line[0][i] <= 'z'));
    }

    fz_check(llen[1] > 0 && line[1][llen[1] - 1] == '/');

    for (i = 0; i < llen[2]; i++) {
        s = &line[2][i];
        fz_check((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')
                 || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'
                 || *s == '.' || *s == '~' || *s == '%' || *s == '='
                 || *s == '&');
    }

    fz_check(llen[n - 1] == TG_SHA256_HEX_LEN);
    fz_check(llen[n - 3] == 0);

    /* header lines 3 .. n-4: sorted, lowercase names, joined = SignedHeaders */
    nh = n - 6;
    prev = NULL;
    plen = 0;
    sl = 0;

    for (i = 3; i < 3 + nh; i++) {
        colon = memchr(line[i], ':', llen[i]);
        fz_check(colon != NULL && colon > line[i]);
        l = (size_t) (colon - line[i]);

        for (pos = 0; pos < l; pos++) {
            fz_check(!(line[i][pos] >= 'A' && line[i][pos] <= 'Z'));
        }

        if (prev != NULL) {
            pos = (l < plen) ? l : plen;
            fz_check(memcmp(prev, line[i], pos) < 0
                     || (memcmp(prev, line[i], pos) == 0 && plen < l));
        }

        fz_check(sl + l <= llen[n - 2]
                 && memcmp(line[n - 2] + sl, line[i], l) == 0);
        sl += l;

        if (i + 1 < 3 + nh) {
            fz_check(sl < llen[n - 2] && line[n - 2][sl] == ';');
            sl++;
        }

        prev = line[i];
        plen = l;
    }

    fz_check(sl == llen[n - 2]);
}


/* the second implementation: string to sign and HMAC, by other APIs */
static void
fz_verify(const tg_sign_request_t *req, const tg_str_t *ak,
    const tg_str_t *sk, const unsigned char *cr, size_t cr_len)
{
    char           *auth, *auth2;
    size_t          need, alen, alen2, sts_len, mac_len;
    unsigned int    md_len;
    tg_rc_t         rc;
    EVP_MD_CTX     *md;
    tg_hmac_key_t   hk;
    const char     *sig;
    unsigned char   digest[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
    char            cr_hex[2 * EVP_MAX_MD_SIZE + 1];
    char            mac_hex[2 * EVP_MAX_MD_SIZE + 1];
    char            sts[128];

    rc = tg_sign_authorization(req, ak, sk, NULL, 0, &need);
    fz_check(rc == TG_ERR_BUF_TOO_SMALL && need > 0);

    auth = malloc(need);
    auth2 = malloc(need);
    fz_check(auth != NULL && auth2 != NULL);

    rc = tg_sign_authorization(req, ak, sk, auth, need, &alen);
    fz_check(rc == TG_OK);
    fz_check(alen == strlen(auth) && alen + 1 == need);

    rc = tg_sign_authorization(req, ak, sk, auth2, need, &alen2);
    fz_check(rc == TG_OK && alen2 == alen && memcmp(auth, auth2, alen) == 0);

    /* the SK as a ready key: the same bytes */
    fz_check(tg_hmac_key_init(&hk, sk->data, sk->len) == TG_OK);
    memset(auth2, 'x', need);
    rc = tg_sign_authorization_key(req, ak, &hk, auth2, need, &alen2);
    fz_check(rc == TG_OK && alen2 == alen && memcmp(auth, auth2, need) == 0);
    tg_hmac_key_wipe(&hk);

    /* too small by one: refused, the size needed reported, nothing left */
    rc = tg_sign_authorization(req, ak, sk, auth2, alen, &alen2);
    fz_check(rc == TG_ERR_BUF_TOO_SMALL && alen2 == alen + 1
             && auth2[0] == '\0');

    md = EVP_MD_CTX_new();
    fz_check(md != NULL);
    fz_check(EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    fz_check(EVP_DigestUpdate(md, cr, cr_len) == 1);
    fz_check(EVP_DigestFinal_ex(md, digest, &md_len) == 1 && md_len == 32);
    EVP_MD_CTX_free(md);
    fz_hex(digest, md_len, cr_hex);

    memcpy(sts, "SDK-HMAC-SHA256\n", 16);
    memcpy(sts + 16, req->date.data, req->date.len);
    sts[16 + req->date.len] = '\n';
    memcpy(sts + 17 + req->date.len, cr_hex, 64);
    sts_len = 17 + req->date.len + 64;

    fz_check(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, sk->data,
                       sk->len, (const unsigned char *) sts, sts_len, mac,
                       sizeof(mac), &mac_len) != NULL && mac_len == 32);
    fz_hex(mac, mac_len, mac_hex);

    fz_check(alen > 23 + ak->len
             && memcmp(auth, "SDK-HMAC-SHA256 Access=", 23) == 0
             && memcmp(auth + 23, ak->data, ak->len) == 0);

    sig = strstr(auth, ", Signature=");
    fz_check(sig != NULL && strlen(sig + 12) == 64);
    fz_check(CRYPTO_memcmp(sig + 12, mac_hex, 64) == 0);

    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(mac_hex, sizeof(mac_hex));
    free(auth2);
    free(auth);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t              pos, l, n, len, len2, nl;
    tg_rc_t             rc, rc2;
    tg_str_t            ak, sk;
    unsigned char      *cr, *cr2, *again;
    tg_header_t         h[TG_SIGN_MAX_HEADERS + 1];
    tg_sign_request_t   req, req2;
    const unsigned char *s, *colon, *nl2;
    char                date[TG_SDK_DATE_LEN + 1];
    char                body_hex[TG_SHA256_HEX_LEN + 1];
    char                out[64];

    memset(&req, 0, sizeof(req));
    pos = 0;

    s = fz_line(data, size, &pos, &l);
    if (s == NULL) {
        return 0;
    }
    req.method.data = s;
    req.method.len = l;

    s = fz_line(data, size, &pos, &l);
    if (s == NULL) {
        return 0;
    }
    req.path.data = s;
    req.path.len = l;

    s = fz_line(data, size, &pos, &l);
    if (s == NULL) {
        return 0;
    }
    req.query.data = s;
    req.query.len = l;

    n = 0;
    while ((s = fz_line(data, size, &pos, &l)) != NULL && l > 0) {
        if (n == TG_SIGN_MAX_HEADERS + 1) {
            break;
        }

        colon = memchr(s, ':', l);
        h[n].name.data = s;
        h[n].name.len = (colon == NULL) ? l : (size_t) (colon - s);
        h[n].value.data = (colon == NULL) ? s + l : colon + 1;
        h[n].value.len = (colon == NULL) ? 0 : l - h[n].name.len - 1;
        n++;
    }

    /* the body: everything after the empty line */
    s = (pos <= size) ? data + pos : data + size;
    l = (pos <= size) ? size - pos : 0;

    fz_check(tg_sha256_hex(s, l, body_hex) == TG_OK);

    /* a date from the input: years 1970 to about 4840 */
    fz_check(tg_sdk_date((time_t) ((size % 4096) * 256
                                   + (size ? data[0] : 0)) * 86399,
                         date) == TG_OK);

    req.headers = h;
    req.nheaders = n;
    req.body_sha256_hex = body_hex;
    req.date.data = (const unsigned char *) date;
    req.date.len = TG_SDK_DATE_LEN;

    ak.data = (const unsigned char *) "FUZZAKEXAMPLE";
    ak.len = 13;
    sk.data = (l > 0) ? s : (const unsigned char *) "fuzz-sk";
    sk.len = (l > 0) ? (l < 200 ? l : 200) : 7;

    rc = tg_sign_canonical_request(&req, NULL, 0, &len);

    if (rc != TG_ERR_BUF_TOO_SMALL) {
        fz_check(rc == TG_ERR_ARG || rc == TG_ERR_SIGN_HEADER);
        rc2 = tg_sign_authorization(&req, &ak, &sk, out, sizeof(out), &len2);
        fz_check(rc2 == rc && out[0] == '\0');
        return 0;
    }

    cr = malloc(len);
    cr2 = malloc(len);
    fz_check(cr != NULL && cr2 != NULL);

    fz_check(tg_sign_canonical_request(&req, cr, len, &len2) == TG_OK
             && len2 == len);
    fz_check(tg_sign_canonical_request(&req, cr2, len, &len2) == TG_OK
             && len2 == len && memcmp(cr, cr2, len) == 0);

    fz_structure(cr, len);
    fz_verify(&req, &ak, &sk, cr, len);

    /* idempotence: sign again from the canonical URI and query */
    nl = (size_t) ((unsigned char *) memchr(cr, '\n', len) - cr);
    nl2 = memchr(cr + nl + 1, '\n', len - nl - 1);
    req2 = req;
    req2.path.data = cr + nl + 1;
    req2.path.len = (size_t) (nl2 - (cr + nl + 1));
    req2.query.data = nl2 + 1;
    req2.query.len = (size_t) ((unsigned char *) memchr(nl2 + 1, '\n',
                               len - (size_t) (nl2 + 1 - cr)) - (nl2 + 1));

    again = malloc(len);
    fz_check(again != NULL);
    fz_check(tg_sign_canonical_request(&req2, again, len, &len2) == TG_OK
             && len2 == len && memcmp(again, cr, len) == 0);

    free(again);
    free(cr2);
    free(cr);

    return 0;
}
