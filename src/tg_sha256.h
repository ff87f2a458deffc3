/*
 * SHA-256 for the core: one algorithm handle fetched once per process,
 * updates as small as one byte cheap enough for a writer to stream what
 * it writes into the hash (tg_out.h).
 *
 * It is the SHA-256 of OpenSSL's provider configuration: an OpenSSL
 * configured without SHA-256 (a FIPS setup missing its provider) fails
 * every hash, and the gateway refuses to start rather than hash outside
 * it.  When the configuration takes SHA-256 from OpenSSL's built-in
 * default provider, the hashes call the functions that provider calls
 * itself; any other provider is used through EVP (tg_sha256.c).
 *
 * Errors are sticky: init and update cannot fail visibly, and
 * tg_sha256_final() says whether all went well.
 */

#ifndef TG_SHA256_H
#define TG_SHA256_H


#include "tg_core.h"


#define TG_SHA256_LEN        32
#define TG_SHA256_BLOCK      64


/* room for OpenSSL's SHA256_CTX (112 bytes), checked in tg_sha256.c */
#define TG_SHA256_STATE      128


typedef struct {
    void                *ctx;           /* an EVP_MD_CTX, or NULL */
    unsigned long long   state[TG_SHA256_STATE / 8];    /* or this */
    int                  failed;
} tg_sha256_t;


void tg_sha256_init(tg_sha256_t *sha);
void tg_sha256_update(tg_sha256_t *sha, const void *data, size_t len);

/*
 * TG_OK with md set, or TG_ERR_CRYPTO; the state is released either way.
 * Nothing of the message is left in a state finalized with TG_OK, only
 * its digest (what md holds) and length: a state that stood for a key
 * (an HMAC's) is wiped after all the same, with tg_sha256_wipe().
 */
tg_rc_t tg_sha256_final(tg_sha256_t *sha, unsigned char md[TG_SHA256_LEN])
    TG_WUR;

/*
 * dst starts as a copy of src, which is left as it was: a state hashed
 * once (an HMAC key's padded block) and resumed for each message.  A
 * failed src, or a failed copy, gives a failed dst.
 */
void tg_sha256_copy(tg_sha256_t *dst, const tg_sha256_t *src);

/* releases a state that will not be finalized (wiped: it may hold a key) */
void tg_sha256_wipe(tg_sha256_t *sha);

/* the lowercase hex of md, 64 digits and a NUL */
void tg_sha256_hex_of(const unsigned char md[TG_SHA256_LEN], char hex[65]);


#endif /* TG_SHA256_H */
