/*
 * The core's output writer: the batch serializer, the audit record
 * encoder and the signer append through it, escaping with tg_out_json()
 * where they must, and any other encoder can (the IAM request bodies
 * still have a small writer of their own, in tg_iam.c).
 *
 * A writer appends into the caller's buffer and never allocates.  What
 * does not fit is counted, not written: len is then the size the output
 * needs and overflow is set, so one pass with a NULL buffer sizes what a
 * second would write, and a bound-sized buffer needs no sizing pass at
 * all.
 *
 * With a SHA-256 state attached (tg_out_hash()), every byte appended is
 * hashed exactly once.  The buffer is then a window: bytes are hashed in
 * runs, when the window is full (and it is reused) or when the hash is
 * asked for (tg_out_sha256()).  A caller that keeps the whole output
 * gives a buffer of its whole size and the window is never reused; the
 * signer gives a small one and streams its canonical request into the
 * hash without ever holding it whole.
 */

#ifndef TG_OUT_H
#define TG_OUT_H


#include <string.h>

#include "tg_core.h"
#include "tg_sha256.h"


typedef struct {
    unsigned char       *buf;       /* NULL with size 0: count only */
    size_t               size;
    size_t               pos;       /* bytes in buf */
    size_t               len;       /* bytes appended in all */
    int                  overflow;  /* bytes were counted, not written */
    tg_sha256_t         *sha;       /* when set, every byte is hashed */
    size_t               hashed;    /* bytes of buf already hashed */
    int                  paused;    /* bytes appended are not hashed */
} tg_out_t;


void tg_out_init(tg_out_t *o, void *buf, size_t size);

/* from now on every byte appended is hashed into sha (initialized) */
void tg_out_hash(tg_out_t *o, tg_sha256_t *sha);

/*
 * Between a pause and a resume, bytes are appended but not hashed: the
 * audit record leaves out of its chain link the instances it carries,
 * which its body_sha256 covers (tg_audit.h).
 */
void tg_out_hash_pause(tg_out_t *o);
void tg_out_hash_resume(tg_out_t *o);

/* what tg_out_put() does when data does not fit the window as it is */
void tg_out_put_slow(tg_out_t *o, const void *data, size_t len);

void tg_out_str(tg_out_t *o, const char *s);

/* the JSON-escaped form of src (tg_escape.h's rules), without quotes */
void tg_out_json(tg_out_t *o, const unsigned char *src, size_t len);

/*
 * feeds what the window holds unhashed to the hash now: a caller that
 * waits between two pieces of output hashes the first while it can
 */
void tg_out_flush(tg_out_t *o);

/* feeds what is left in the window to the hash, then finalizes it */
tg_rc_t tg_out_sha256(tg_out_t *o, unsigned char md[TG_SHA256_LEN]) TG_WUR;


/*
 * Inline, as the writers call it for every piece of their output: the
 * module gets configure's bare -O from an nginx built without
 * --with-cc-opt (Debian's has -O2), and -O inlines only what is marked
 * so.  Data that fits the window is copied there, anything else (a full
 * window, a count past SIZE_MAX, nothing to copy) is tg_out_put_slow()'s.
 */

static inline void
tg_out_put(tg_out_t *o, const void *data, size_t len)
{
    if (len > 0 && len <= o->size - o->pos && len <= (size_t) -1 - o->len) {
        memcpy(o->buf + o->pos, data, len);
        o->pos += len;
        o->len += len;
        return;
    }

    tg_out_put_slow(o, data, len);
}


/*
 * Takes room for n more bytes in the window and returns where to write
 * them, for a writer that composes a piece whole; NULL when they do not
 * fit as they are, and the piece must then be appended another way.
 */

static inline unsigned char *
tg_out_reserve(tg_out_t *o, size_t n)
{
    unsigned char  *p;

    if (n == 0 || n > o->size - o->pos || n > (size_t) -1 - o->len) {
        return NULL;
    }

    p = o->buf + o->pos;
    o->pos += n;
    o->len += n;

    return p;
}


static inline void
tg_out_byte(tg_out_t *o, unsigned char c)
{
    if (o->pos < o->size && o->len != (size_t) -1) {
        o->buf[o->pos++] = c;
        o->len++;
        return;
    }

    tg_out_put(o, &c, 1);
}


#endif /* TG_OUT_H */
