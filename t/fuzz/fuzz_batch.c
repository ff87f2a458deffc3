/*
 * Fuzz target of the body validator.  Properties, abort() on violation:
 *
 *  1. accepted => its canonical serialization is accepted too, with the
 *     same items (bytes), delay and delay kind; serialized_len is exact;
 *     and serializing that second parse gives the same bytes (a fixed
 *     point): the upstream sees exactly what was checked.  Written
 *     through a writer with SHA-256 attached (tg_batch_write()), the
 *     same bytes come out, hashed to what tg_sha256_hex() says of them,
 *     also through a window too small to hold them.
 *  2. the body is read within its size: it is copied to a heap block of
 *     exactly size bytes, and scratch is exactly size bytes too, so ASan
 *     reports any read or write past them.
 *  3. refused => a validator result code, never NOMEM, and err is
 *     NUL-terminated, non-empty,
 *     the same again (deterministic), and with a short buffer a prefix
 *     of the full message.
 *  4. the items array is tg_batch_room() entries of a heap block of
 *     exactly that size, as the gateway gives it: ASan reports a write
 *     past it, and a room too small for the body (TG_ERR_BUF_TOO_SMALL)
 *     is not a validator result code (3).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tg_batch.h"
#include "tg_out.h"
#include "tg_sign.h"


#define FUZZ_MAX_ITEMS  100


static void check_accepted(const tg_batch_t *b, size_t size);
static void check_hashed(const tg_batch_t *b, const unsigned char *out,
    size_t len);
static void check_refused(tg_rc_t rc, const char *err, const uint8_t *body,
    size_t size);
static int same_str(tg_str_t a, tg_str_t z);


static tg_instance_t  items2[FUZZ_MAX_ITEMS];


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char            err[TG_BATCH_ERR_SIZE];
    size_t          room;
    tg_rc_t         rc;
    uint8_t        *body;
    tg_batch_t      b;
    tg_instance_t  *items;

    body = malloc(size ? size : 1);
    if (body == NULL) {
        return 0;
    }

    memcpy(body, data, size);

    room = tg_batch_room(FUZZ_MAX_ITEMS, size);

    items = malloc(room * sizeof(tg_instance_t));
    if (items == NULL) {
        free(body);
        return 0;
    }

    memset(&b, 0, sizeof(b));
    b.items = items;
    b.max_items = FUZZ_MAX_ITEMS;
    b.room = room;
    b.scratch = malloc(size ? size : 1);
    b.scratch_size = size;

    if (b.scratch == NULL) {
        free(items);
        free(body);
        return 0;
    }

    memset(err, 'X', sizeof(err));

    rc = tg_batch_parse(&b, body, size, err, sizeof(err));

    if (rc == TG_OK) {
        check_accepted(&b, size);

    } else {
        check_refused(rc, err, body, size);
    }

    free(b.scratch);
    free(items);
    free(body);

    return 0;
}


static void
check_accepted(const tg_batch_t *b, size_t size)
{
    char            err[TG_BATCH_ERR_SIZE];
    size_t          i, len;
    tg_rc_t         rc;
    tg_batch_t      b2;
    unsigned char  *out, *out2, *end;

    if (b->nitems == 0 || b->nitems > b->max_items
        || (b->delay != 0 && b->delay != 1)
        || (b->delay_kind != TG_DELAY_STRING
            && b->delay_kind != TG_DELAY_BOOL))
    {
        abort();
    }

    for (i = 0; i < b->nitems; i++) {
        if (b->items[i].instance_id.len == 0
            || b->items[i].instance_id.len > TG_BATCH_STRING_MAX
            || b->items[i].current_version.len == 0
            || b->items[i].current_version.len > TG_BATCH_STRING_MAX
            || b->items[i].instance_id.data < b->scratch
            || b->items[i].instance_id.data + b->items[i].instance_id.len
               > b->scratch + size
            || b->items[i].current_version.data < b->scratch
            || b->items[i].current_version.data
               + b->items[i].current_version.len > b->scratch + size)
        {
            abort();
        }
    }

    len = tg_batch_serialized_len(b);

    out = malloc(len);
    out2 = malloc(len);
    if (out == NULL || out2 == NULL) {
        abort();
    }

    end = tg_batch_serialize(b, out);
    if ((size_t) (end - out) != len) {
        abort();
    }

    check_hashed(b, out, len);

    memset(&b2, 0, sizeof(b2));
    b2.items = items2;
    b2.max_items = b->max_items;
    b2.scratch = malloc(len);
    b2.scratch_size = len;

    if (b2.scratch == NULL) {
        abort();
    }

    rc = tg_batch_parse(&b2, out, len, err, sizeof(err));

    if (rc != TG_OK || b2.nitems != b->nitems || b2.delay != b->delay
        || b2.delay_kind != b->delay_kind)
    {
        abort();
    }

    for (i = 0; i < b->nitems; i++) {
        if (!same_str(b->items[i].instance_id, b2.items[i].instance_id)
            || !same_str(b->items[i].current_version,
                         b2.items[i].current_version))
        {
            abort();
        }
    }

    if (tg_batch_serialized_len(&b2) != len) {
        abort();
    }

    end = tg_batch_serialize(&b2, out2);
    if ((size_t) (end - out2) != len || memcmp(out, out2, len) != 0) {
        abort();
    }

    free(b2.scratch);
    free(out2);
    free(out);
}


static void
check_refused(tg_rc_t rc, const char *err, const uint8_t *body, size_t size)
{
    char        err2[TG_BATCH_ERR_SIZE];
    size_t      short_len, n;
    tg_rc_t     rc2;
    tg_batch_t  b;

    if (rc < TG_ERR_EMPTY_BODY || rc > TG_ERR_DELAY_VALUE) {
        abort();
    }

    if (memchr(err, '\0', TG_BATCH_ERR_SIZE) == NULL || err[0] == '\0') {
        abort();
    }

    /* again, with a short buffer: same result, a prefix of the message */

    short_len = 1 + size % 24;

    memset(&b, 0, sizeof(b));
    b.items = items2;
    b.max_items = FUZZ_MAX_ITEMS;
    b.scratch = malloc(size ? size : 1);
    b.scratch_size = size;

    if (b.scratch == NULL) {
        abort();
    }

    memset(err2, 'X', sizeof(err2));
    rc2 = tg_batch_parse(&b, body, size, err2, short_len);
    free(b.scratch);

    n = strlen(err2);

    if (rc2 != rc || n >= short_len || strncmp(err2, err, n) != 0
        || err2[short_len] != 'X')
    {
        abort();
    }
}


static int
same_str(tg_str_t a, tg_str_t z)
{
    return a.len == z.len && memcmp(a.data, z.data, a.len) == 0;
}


static void
check_hashed(const tg_batch_t *b, const unsigned char *out, size_t len)
{
    char            want[TG_SHA256_HEX_LEN + 1], got[TG_SHA256_HEX_LEN + 1];
    tg_out_t        o;
    tg_sha256_t     sha;
    unsigned char  *buf, md[TG_SHA256_LEN], window[7];

    if (tg_sha256_hex(out, len, want) != TG_OK) {
        abort();
    }

    buf = malloc(len);
    if (buf == NULL) {
        abort();
    }

    /* the whole body in the buffer, hashed as it is written */

    tg_sha256_init(&sha);
    tg_out_init(&o, buf, len);
    tg_out_hash(&o, &sha);
    tg_batch_write(b, &o);
    if (tg_out_sha256(&o, md) != TG_OK) {
        abort();
    }

    tg_sha256_hex_of(md, got);

    if (o.overflow || o.len != len || o.pos != len
        || memcmp(buf, out, len) != 0 || strcmp(got, want) != 0)
    {
        abort();
    }

    /* streamed through a window of 7 bytes: the same hash */

    tg_sha256_init(&sha);
    tg_out_init(&o, window, sizeof(window));
    tg_out_hash(&o, &sha);
    tg_batch_write(b, &o);
    if (tg_out_sha256(&o, md) != TG_OK) {
        abort();
    }

    tg_sha256_hex_of(md, got);

    if (o.overflow || o.len != len || strcmp(got, want) != 0) {
        abort();
    }

    free(buf);
}
