/*
 * The output writer (tg_out.h).
 */

#include <string.h>

#include "tg_escape.h"
#include "tg_out.h"


/* input bytes escaped at a time when the window has no room for 6x */
#define TG_OUT_JSON_CHUNK  64


void
tg_out_init(tg_out_t *o, void *buf, size_t size)
{
    o->buf = buf;
    o->size = (buf == NULL) ? 0 : size;
    o->pos = 0;
    o->len = 0;
    o->overflow = 0;
    o->sha = NULL;
    o->hashed = 0;
    o->paused = 0;
}


void
tg_out_hash(tg_out_t *o, tg_sha256_t *sha)
{
    o->sha = sha;
    o->hashed = o->pos;
}


void
tg_out_hash_pause(tg_out_t *o)
{
    if (o->sha != NULL) {
        tg_out_flush(o);
    }

    o->paused = 1;
}


void
tg_out_hash_resume(tg_out_t *o)
{
    if (o->sha != NULL) {
        /* what the window took while paused is passed over, not hashed */
        tg_out_flush(o);
    }

    o->paused = 0;
}


void
tg_out_put_slow(tg_out_t *o, const void *data, size_t len)
{
    size_t                room;
    const unsigned char  *p;

    if (len > (size_t) -1 - o->len) {
        o->overflow = 1;
        return;
    }

    p = data;
    o->len += len;

    while (len > 0) {
        room = o->size - o->pos;

        if (len <= room) {
            memcpy(o->buf + o->pos, p, len);
            o->pos += len;
            return;
        }

        if (o->sha == NULL) {
            /* counted, not written: the caller learns the size it needs */
            if (room > 0) {
                memcpy(o->buf + o->pos, p, room);
                o->pos += room;
            }

            o->overflow = 1;
            return;
        }

        if (o->size == 0) {
            if (!o->paused) {
                tg_sha256_update(o->sha, p, len);
            }

            return;
        }

        /* a full window is hashed and reused */

        memcpy(o->buf + o->pos, p, room);
        o->pos += room;
        p += room;
        len -= room;

        tg_out_flush(o);
        o->pos = 0;
        o->hashed = 0;
    }
}


void
tg_out_str(tg_out_t *o, const char *s)
{
    tg_out_put(o, s, strlen(s));
}


/*
 * One pass.  Most strings have nothing to escape, or a long plain run
 * first: that run is copied as it is, whatever room the buffer has.
 * For what is left, with room for its worst case (6 bytes per input
 * byte) the escaper writes straight into the buffer; otherwise it goes
 * in chunks through a small buffer, each cut where no UTF-8 sequence is
 * split.  The plain run is ASCII, so cutting after it splits nothing.
 */

void
tg_out_json(tg_out_t *o, const unsigned char *src, size_t len)
{
    size_t          n, k;
    unsigned char  *end;
    unsigned char   chunk[TG_OUT_JSON_CHUNK * 6];

    n = tg_json_plain_len(src, len);

    if (n > 0) {
        tg_out_put(o, src, n);
        src += n;
        len -= n;
    }

    if (len == 0) {
        return;
    }

    if (len <= (o->size - o->pos) / 6) {
        end = tg_json_escape(o->buf + o->pos, src, len);
        n = (size_t) (end - (o->buf + o->pos));
        o->pos += n;
        o->len += n;
        return;
    }

    while (len > 0) {
        n = len;

        if (n > TG_OUT_JSON_CHUNK) {
            n = TG_OUT_JSON_CHUNK;

            /* a continuation byte starts no chunk, if a lead is near */
            for (k = 0; k < 3 && (src[n - k] & 0xc0) == 0x80; k++) {
                /* void */
            }

            if ((src[n - k] & 0xc0) != 0x80) {
                n -= k;
            }
        }

        end = tg_json_escape(chunk, src, n);
        tg_out_put(o, chunk, (size_t) (end - chunk));

        src += n;
        len -= n;
    }
}


tg_rc_t
tg_out_sha256(tg_out_t *o, unsigned char md[TG_SHA256_LEN])
{
    tg_out_flush(o);

    return tg_sha256_final(o->sha, md);
}


void
tg_out_flush(tg_out_t *o)
{
    if (o->pos > o->hashed) {
        if (!o->paused) {
            tg_sha256_update(o->sha, o->buf + o->hashed,
                             o->pos - o->hashed);
        }

        o->hashed = o->pos;
    }
}
