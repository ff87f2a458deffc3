/*
 * SDK-HMAC-SHA256, the request signature of the official Huawei Cloud
 * SDKs (huaweicloud-sdk-python-v3 / -go-v3 "signer"):
 *
 *   CanonicalRequest = Method "\n" CanonicalURI "\n" CanonicalQuery "\n"
 *                      CanonicalHeaders "\n" SignedHeaders "\n"
 *                      HexSHA256(body)
 *   StringToSign     = "SDK-HMAC-SHA256\n" X-Sdk-Date "\n"
 *                      HexSHA256(CanonicalRequest)
 *   Signature        = Hex(HMAC-SHA256(SK, StringToSign))
 *   Authorization    = "SDK-HMAC-SHA256 Access=" AK ", SignedHeaders="
 *                      SignedHeaders ", Signature=" Signature
 *
 * The canonical URI is the path percent-decoded, then each segment
 * percent-encoded as the SDKs do, with a "/" appended unless it ends in
 * one; the canonical query sorts the decoded parameters and re-encodes
 * them; canonical headers are "lowercase-name:trimmed value\n", sorted by
 * name, a name containing "_" is not signed (as in the SDKs), and
 * X-Sdk-Date is always signed.  Exact rules and their source: tg_sign.c.
 */

#ifndef TG_SIGN_H
#define TG_SIGN_H


#include <time.h>

#include "tg_core.h"
#include "tg_sha256.h"


#define TG_SHA256_HEX_LEN    64
#define TG_HMAC_SHA256_LEN   32
#define TG_SDK_DATE_LEN      16     /* 20261129T210000Z */
#define TG_SIGN_MAX_HEADERS  32


typedef struct {
    tg_str_t             name;      /* any case; signed lowercased */
    tg_str_t             value;     /* as sent; signed trimmed */
} tg_header_t;


typedef struct {
    tg_str_t             method;    /* "POST" */
    tg_str_t             path;      /* raw path, no query */
    tg_str_t             query;     /* raw query without '?'; len 0: none */
    const tg_header_t   *headers;   /* the headers to sign, any order */
    size_t               nheaders;  /* 0..TG_SIGN_MAX_HEADERS */
    const char          *body_sha256_hex;   /* 64 lowercase hex digits */
    tg_str_t             date;      /* the X-Sdk-Date value, also signed */
} tg_sign_request_t;


/* lowercase hex SHA-256 of data, NUL-terminated */
tg_rc_t tg_sha256_hex(const unsigned char *data, size_t len,
    char hex[TG_SHA256_HEX_LEN + 1]) TG_WUR;

/* HMAC-SHA256(key, data): the signer's own MAC path, exposed for tests */
tg_rc_t tg_hmac_sha256(const unsigned char *key, size_t key_len,
    const unsigned char *data, size_t len,
    unsigned char mac[TG_HMAC_SHA256_LEN]) TG_WUR;

/*
 * An HMAC-SHA256 key made ready once: RFC 2104's inner and outer padded
 * key blocks hashed, so that each MAC resumes from copies of the two
 * states and hashes two blocks fewer than from the key itself.  The
 * states stand for the key (whoever holds them can sign): they are as
 * secret as it is, and wiped with tg_hmac_key_wipe() wherever it is.
 * A ready key is only read, never changed, by the MACs made with it.
 * A wiped key fails them; a zeroed one (never made ready) is no key at
 * all and must not be given to them.
 */
typedef struct {
    tg_sha256_t          inner;
    tg_sha256_t          outer;
} tg_hmac_key_t;


/* TG_OK, or TG_ERR_ARG or TG_ERR_CRYPTO with *hk wiped */
tg_rc_t tg_hmac_key_init(tg_hmac_key_t *hk, const unsigned char *key,
    size_t key_len) TG_WUR;

/* releases and wipes the states; a wiped or zeroed key may be wiped again */
void tg_hmac_key_wipe(tg_hmac_key_t *hk);

/* HMAC-SHA256 with a ready key, the same MAC as tg_hmac_sha256() */
tg_rc_t tg_hmac_sha256_key(const tg_hmac_key_t *hk,
    const unsigned char *data, size_t len,
    unsigned char mac[TG_HMAC_SHA256_LEN]) TG_WUR;

/* X-Sdk-Date for t (UTC), "YYYYMMDDTHHMMSSZ" and a NUL */
tg_rc_t tg_sdk_date(time_t t, char out[TG_SDK_DATE_LEN + 1]) TG_WUR;

/*
 * Builds the canonical request into buf (no NUL after it).  Returns
 * TG_OK with *len set, TG_ERR_BUF_TOO_SMALL with *len set to the size
 * needed, TG_ERR_SIGN_HEADER for a header that cannot be signed (a name
 * that is no RFC 9110 token, two of one name, a CR, LF or NUL in a value,
 * an X-Sdk-Date other than date), or TG_ERR_ARG for a request that cannot
 * (a method, path, query, date or body hash outside tg_sign.c's rules).
 */
tg_rc_t tg_sign_canonical_request(const tg_sign_request_t *req,
    unsigned char *buf, size_t size, size_t *len) TG_WUR;

/*
 * Writes the Authorization header value ("SDK-HMAC-SHA256 Access=...") to
 * out, NUL-terminated; *len is its length without the NUL.  The SK never
 * leaves this function: its HMAC key copy and every intermediate buffer
 * are wiped before returning.  TG_ERR_BUF_TOO_SMALL sets *len to the
 * size needed, NUL included.
 */
tg_rc_t tg_sign_authorization(const tg_sign_request_t *req,
    const tg_str_t *ak, const tg_str_t *sk, char *out, size_t size,
    size_t *len) TG_WUR;

/*
 * The same with the SK as a ready key (tg_hmac_key_init() of its bytes):
 * the same Authorization, byte for byte, for less work.
 */
tg_rc_t tg_sign_authorization_key(const tg_sign_request_t *req,
    const tg_str_t *ak, const tg_hmac_key_t *sk, char *out, size_t size,
    size_t *len) TG_WUR;


#endif /* TG_SIGN_H */
