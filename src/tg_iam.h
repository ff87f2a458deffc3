/*
 * IAM token requests: the bodies of "POST /v3/auth/tokens" (the password
 * method, scoped to one project or to the user's domain; an agency's
 * assume_role) and the expiry in IAM's answer.
 */

#ifndef TG_IAM_H
#define TG_IAM_H


#include "tg_core.h"
#include "tg_cred.h"
#include "tg_sha256.h"


/*
 * {"auth":{"identity":{"methods":["password"],"password":{"user":
 * {"name":USER,"password":PASS,"domain":{"name":DOMAIN}}}},
 * "scope":{"project":{"id":PROJECT}}}}
 *
 * or, with project NULL, scoped to the user's own domain (the token an
 * agency token is asked with): "scope":{"domain":{"name":DOMAIN}}.
 *
 * Returns its length; writes it to buf only when size is at least that.
 * The caller wipes buf: it holds the password.
 */
size_t tg_iam_request_body(const tg_iam_cred_t *c,
    const unsigned char *project, size_t plen, unsigned char *buf,
    size_t size);

/*
 * An agency token ("Obtaining an Agency Token"), asked with the
 * delegated user's own token in X-Auth-Token:
 *
 * {"auth":{"identity":{"methods":["assume_role"],"assume_role":
 * {"domain_name":DOMAIN,"agency_name":AGENCY}},
 * "scope":{"project":{"id":PROJECT}}}}
 *
 * DOMAIN is the delegating account's.  Sized and written as above.
 */
size_t tg_iam_agency_body(const tg_str_t *domain, const tg_str_t *agency,
    const unsigned char *project, size_t plen, unsigned char *buf,
    size_t size);

/*
 * The SHA-256 of the identity a token is asked with: the password
 * file's domain, user and password, and for an agency token also the
 * delegating domain and the agency's name (both NULL for a token of the
 * user's own).  The number of parts comes first and each part's length
 * before it, so that no bytes moved from one part to the next give the
 * same digest.  The digest tells a token asked with other credentials;
 * the caller keeps it, never what it is of.  TG_ERR_CRYPTO when SHA-256
 * fails.
 */
tg_rc_t tg_iam_identity(const tg_iam_cred_t *c, const tg_str_t *domain,
    const tg_str_t *agency, unsigned char md[TG_SHA256_LEN]) TG_WUR;

/*
 * token.expires_at of IAM's answer ("2026-11-30T21:00:00.000000Z") as
 * Unix time.  TG_ERR_SYNTAX when the body is not a JSON object,
 * TG_ERR_MISSING_KEY when the field is absent, TG_ERR_TYPE when it is
 * not such a time.  An answer that JSON readers could read otherwise
 * than cJSON does is refused: TG_ERR_NUL_ESCAPE for a "\u0000" or a raw
 * NUL anywhere, TG_ERR_DUP_KEY for "token" or "expires_at" twice,
 * TG_ERR_TRAILING for bytes after the object.
 */
tg_rc_t tg_iam_expires_at(const unsigned char *body, size_t len,
    int64_t *expires) TG_WUR;


/*
 * The ECS metadata service's temporary credentials
 * (GET /openstack/latest/securitykey):
 *
 *     {"credential":{"access":AK,"secret":SK,"securitytoken":TOKEN,
 *       "expires_at":"2026-11-30T21:00:00.000000Z"}}
 *
 * written to out as an SDK profile ("[basic]\nak=..\nsk=..\n
 * security_token=..\n") for tg_cred_parse(), with its expiry.  out needs
 * len + 64 bytes at most; the caller wipes it.  TG_ERR_SYNTAX when the
 * body is not JSON, TG_ERR_MISSING_KEY when a field is absent or empty,
 * TG_ERR_CRED_BAD_VALUE when one is not a word of printable ASCII,
 * TG_ERR_TYPE for a bad time, TG_ERR_BUF_TOO_SMALL; TG_ERR_NUL_ESCAPE,
 * TG_ERR_DUP_KEY and TG_ERR_TRAILING as tg_iam_expires_at().  Every
 * string of the parsed answer is wiped before it is freed.
 */
tg_rc_t tg_metadata_profile(const unsigned char *body, size_t len,
    unsigned char *out, size_t size, size_t *outlen, int64_t *expires)
    TG_WUR;


#endif /* TG_IAM_H */
