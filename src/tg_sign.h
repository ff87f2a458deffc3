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
    size_t               nheaders;  /* 1..TG_SIGN_MAX_HEADERS */
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

/* X-Sdk-Date for t (UTC), "YYYYMMDDTHHMMSSZ" and a NUL */
tg_rc_t tg_sdk_date(time_t t, char out[TG_SDK_DATE_LEN + 1]) TG_WUR;

/*
 * Builds the canonical request into buf.  Returns TG_OK with *len set, or
 * TG_ERR_BUF_TOO_SMALL with *len set to the size needed, or
 * TG_ERR_SIGN_HEADER for a header name or value that cannot be signed
 * (empty name, CR, LF or NUL in either).
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


#endif /* TG_SIGN_H */
