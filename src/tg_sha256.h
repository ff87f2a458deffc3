/*
 * SHA-256 with the state on the caller's stack: no malloc, no provider
 * lookup per hash, and updates as small as one byte cost little, so a
 * writer can stream what it writes into the hash (tg_out.h).
 *
 * The state is OpenSSL's own SHA-256 (its assembly, with the CPU's SHA
 * instructions where there are some); tg_sha256_t only keeps its
 * definition out of the headers the nginx glue includes.
 */

#ifndef TG_SHA256_H
#define TG_SHA256_H


#include "tg_core.h"


#define TG_SHA256_LEN        32
#define TG_SHA256_BLOCK      64


typedef struct {
    uint64_t             state[16];     /* an OpenSSL SHA256_CTX */
} tg_sha256_t;


void tg_sha256_init(tg_sha256_t *sha);
void tg_sha256_update(tg_sha256_t *sha, const void *data, size_t len);
void tg_sha256_final(tg_sha256_t *sha, unsigned char md[TG_SHA256_LEN]);

/* the lowercase hex of md, 64 digits and a NUL */
void tg_sha256_hex_of(const unsigned char md[TG_SHA256_LEN], char hex[65]);

/* wipes the state (it may hold a key: HMAC's inner and outer pads) */
void tg_sha256_wipe(tg_sha256_t *sha);


#endif /* TG_SHA256_H */
