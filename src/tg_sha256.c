/*
 * SHA-256 over EVP, with the algorithm fetched once.
 *
 * EVP_sha256() with EVP_DigestInit_ex() looks the algorithm up in the
 * providers on every hash (thousands of instructions, more than hashing
 * a short line); an explicitly fetched EVP_MD skips that.  It is fetched
 * once per process, the first time it is needed (in nginx: while the
 * configuration is read, before the workers fork), and kept: it is the
 * library's, immutable, and the same after a reload.
 *
 * EVP costs a hash more than dispatch, too: OpenSSL 3.0 allocates and
 * frees a context and the provider's state for each, and a forwarded
 * batch hashes six messages (its body, the canonical request, the
 * HMAC's two, its allow and done records).  So when the SHA-256 fetched
 * is the built-in default provider's, the hashes call what that provider
 * calls itself, SHA256_Init(), _Update() and _Final(), on a state in the
 * caller's tg_sha256_t: the same code and the same digests, without
 * EVP's part.
 * Any other provider (a FIPS one) is used through EVP, as is every one
 * when OpenSSL is built without the deprecated functions, or with
 * TG_SHA256_EVP_ONLY defined (the tests of that path).
 */

#if !defined(TG_SHA256_EVP_ONLY)
/* SHA256_Init() and the like are deprecated in OpenSSL 3.0, not gone */
#define OPENSSL_SUPPRESS_DEPRECATED
#endif

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/sha.h>

#include "tg_sha256.h"


#if !defined(TG_SHA256_EVP_ONLY) && !defined(OPENSSL_NO_DEPRECATED_3_0)
#define TG_SHA256_DIRECT  1

/* a compile-time check that OpenSSL's state fits in tg_sha256_t */
typedef char  tg_sha256_state_fits[
    (sizeof(SHA256_CTX) <= sizeof(((tg_sha256_t *) 0)->state)) ? 1 : -1];
#endif


static void tg_sha256_fetch(void);


static pthread_once_t   tg_sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD          *tg_sha256_md;

#ifdef TG_SHA256_DIRECT
static int              tg_sha256_direct;
#endif


static void
tg_sha256_fetch(void)
{
#ifdef TG_SHA256_DIRECT
    const char           *name;
    const OSSL_PROVIDER  *prov;
#endif

    tg_sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);

#ifdef TG_SHA256_DIRECT
    if (tg_sha256_md != NULL) {
        prov = EVP_MD_get0_provider(tg_sha256_md);
        name = (prov != NULL) ? OSSL_PROVIDER_get0_name(prov) : NULL;

        tg_sha256_direct = (name != NULL && strcmp(name, "default") == 0);
    }
#endif
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

#ifdef TG_SHA256_DIRECT
    if (tg_sha256_direct) {
        sha->failed = (SHA256_Init((SHA256_CTX *) sha->state) != 1);
        return;
    }
#endif

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

    if (src->ctx == NULL) {
        memcpy(dst->state, src->state, sizeof(dst->state));
        dst->failed = 0;
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

#ifdef TG_SHA256_DIRECT
    if (sha->ctx == NULL) {
        if (SHA256_Update((SHA256_CTX *) sha->state, data, len) != 1) {
            sha->failed = 1;
        }

        return;
    }
#endif

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

#ifdef TG_SHA256_DIRECT
    if (!sha->failed && sha->ctx == NULL) {

        /*
         * SHA256_Final() erases the block it buffered: what is left is the
         * digest, which md holds too, and the message's length.  Wiping it
         * again is for a state of key material (tg_sha256_wipe()), not for
         * the hash of a body or of an audit record.
         */

        if (SHA256_Final(md, (SHA256_CTX *) sha->state) == 1) {
            sha->failed = 1;
            return TG_OK;
        }

        tg_sha256_wipe(sha);

        return rc;
    }
#endif

    if (!sha->failed
        && EVP_DigestFinal_ex(sha->ctx, md, &len) == 1
        && len == TG_SHA256_LEN)
    {
        rc = TG_OK;
    }

    /* EVP_MD_CTX_free() cleanses the provider's state */
    EVP_MD_CTX_free(sha->ctx);

    sha->ctx = NULL;
    sha->failed = 1;

    return rc;
}


void
tg_sha256_wipe(tg_sha256_t *sha)
{
    /* EVP_MD_CTX_free() cleanses the provider's state */
    EVP_MD_CTX_free(sha->ctx);
    OPENSSL_cleanse(sha->state, sizeof(sha->state));

    sha->ctx = NULL;
    sha->failed = 1;
}


void
tg_sha256_hex_of(const unsigned char md[TG_SHA256_LEN], char hex[65])
{
    tg_hex_encode(md, TG_SHA256_LEN, hex);
    hex[2 * TG_SHA256_LEN] = '\0';
}
