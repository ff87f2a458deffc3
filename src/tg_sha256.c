/*
 * SHA-256 over OpenSSL's low-level functions.
 *
 * OpenSSL 3 deprecates SHA256_Init() and friends in favour of EVP, but
 * EVP allocates a context per hash and looks the algorithm up in its
 * provider each time: several thousand instructions and two mallocs for
 * every 64-byte canonical request or audit line, more than hashing it.
 * The low-level functions run the same assembly on a state we keep on
 * the stack.  Asking for the 1.1.1 API in this one file keeps them
 * declared without the deprecation warning.
 */

#define OPENSSL_API_COMPAT  10101

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "tg_sha256.h"


/* a compile-time check that SHA256_CTX fits in tg_sha256_t */
typedef char tg_sha256_fits[sizeof(SHA256_CTX) <= sizeof(tg_sha256_t)
                            ? 1 : -1];


void
tg_sha256_init(tg_sha256_t *sha)
{
    (void) SHA256_Init((SHA256_CTX *) sha);
}


void
tg_sha256_update(tg_sha256_t *sha, const void *data, size_t len)
{
    if (len > 0) {
        (void) SHA256_Update((SHA256_CTX *) sha, data, len);
    }
}


void
tg_sha256_final(tg_sha256_t *sha, unsigned char md[TG_SHA256_LEN])
{
    (void) SHA256_Final(md, (SHA256_CTX *) sha);
}


void
tg_sha256_hex_of(const unsigned char md[TG_SHA256_LEN], char hex[65])
{
    size_t  i;

    static const char  digits[] = "0123456789abcdef";

    for (i = 0; i < TG_SHA256_LEN; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }

    hex[2 * TG_SHA256_LEN] = '\0';
}


void
tg_sha256_wipe(tg_sha256_t *sha)
{
    OPENSSL_cleanse(sha, sizeof(tg_sha256_t));
}
