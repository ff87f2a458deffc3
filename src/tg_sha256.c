/*
 * SHA-256 over EVP, with the algorithm fetched once.
 *
 * EVP_sha256() with EVP_DigestInit_ex() looks the algorithm up in the
 * providers on every hash (thousands of instructions, more than hashing
 * a short line); an explicitly fetched EVP_MD skips that.  It is fetched
 * once per process, the first time it is needed (in nginx: while the
 * configuration is read, before the workers fork), and kept: it is the
 * library's, immutable, and the same after a reload.
 */

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "tg_sha256.h"


static void tg_sha256_fetch(void);


static pthread_once_t   tg_sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD          *tg_sha256_md;


static void
tg_sha256_fetch(void)
{
    tg_sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}


void
tg_sha256_init(tg_sha256_t *sha)
{
    EVP_MD_CTX  *ctx;

    sha->ctx = NULL;
    sha->failed = 1;

    if (pthread_once(&tg_sha256_once, tg_sha256_fetch) != 0
        || tg_sha256_md == NULL)
    {
        return;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return;
    }

    if (EVP_DigestInit_ex2(ctx, tg_sha256_md, NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return;
    }

    sha->ctx = ctx;
    sha->failed = 0;
}


void
tg_sha256_copy(tg_sha256_t *dst, const tg_sha256_t *src)
{
    EVP_MD_CTX  *ctx;

    dst->ctx = NULL;
    dst->failed = 1;

    if (src->failed) {
        return;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return;
    }

    if (EVP_MD_CTX_copy_ex(ctx, src->ctx) != 1) {
        EVP_MD_CTX_free(ctx);
        return;
    }

    dst->ctx = ctx;
    dst->failed = 0;
}


void
tg_sha256_update(tg_sha256_t *sha, const void *data, size_t len)
{
    if (sha->failed || len == 0) {
        return;
    }

    if (EVP_DigestUpdate(sha->ctx, data, len) != 1) {
        sha->failed = 1;
    }
}


tg_rc_t
tg_sha256_final(tg_sha256_t *sha, unsigned char md[TG_SHA256_LEN])
{
    tg_rc_t       rc;
    unsigned int  len;

    rc = TG_ERR_CRYPTO;

    if (!sha->failed
        && EVP_DigestFinal_ex(sha->ctx, md, &len) == 1
        && len == TG_SHA256_LEN)
    {
        rc = TG_OK;
    }

    tg_sha256_wipe(sha);

    return rc;
}


void
tg_sha256_wipe(tg_sha256_t *sha)
{
    /* EVP_MD_CTX_free() cleanses the provider's state */
    EVP_MD_CTX_free(sha->ctx);

    sha->ctx = NULL;
    sha->failed = 1;
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
