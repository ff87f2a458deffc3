/*
 * tg_out_t, the core's output writer: counting what does not fit,
 * hashing every byte once whether the buffer holds it all or is a
 * window, and escaping in one pass through either path.  The SHA-256
 * answers are FIPS 180-2's examples ("abc", and the 448-bit message).
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tg_escape.h"
#include "tg_out.h"
#include "tg_sign.h"


static void test_count(void);
static void test_hash(void);
static void test_json(void);
static void test_pause(void);
static void hash_through(const char *msg, size_t window, char *hex);


int
main(void)
{
    test_count();
    test_hash();
    test_json();
    test_pause();

    return done_testing();
}


static void
test_count(void)
{
    tg_out_t       o;
    unsigned char  buf[8];

    tg_out_init(&o, NULL, 0);
    tg_out_str(&o, "hello, ");
    tg_out_byte(&o, 'w');
    tg_out_put(&o, "orld", 4);
    is_int(o.len, 12, "NULL buffer: the length is counted");
    ok(o.overflow, "NULL buffer: overflow is set");

    memset(buf, 'X', sizeof(buf));
    tg_out_init(&o, buf, 5);
    tg_out_str(&o, "abc");
    ok(!o.overflow && o.len == 3 && o.pos == 3, "fits: no overflow");
    tg_out_str(&o, "defg");
    ok(o.overflow && o.len == 7 && o.pos == 5, "too long: counted, cut");
    ok(memcmp(buf, "abcdeXXX", 8) == 0, "nothing written past size");
}


static void
test_hash(void)
{
    size_t       w;
    char         hex[TG_SHA256_HEX_LEN + 1];
    const char  *long_msg;

    static const char  abc[] =
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char  abc448[] =
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";

    long_msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

    for (w = 0; w <= 9; w++) {
        hash_through("abc", w, hex);
        is_str(hex, abc, "\"abc\" through a window of %zu", w);

        hash_through(long_msg, w, hex);
        is_str(hex, abc448, "448-bit message through a window of %zu", w);
    }

    hash_through(long_msg, 4096, hex);
    is_str(hex, abc448, "448-bit message, whole in the buffer");
}


/* window 0: no buffer, every append goes to the hash */

static void
hash_through(const char *msg, size_t window, char *hex)
{
    size_t          i, n;
    tg_out_t        o;
    tg_sha256_t     sha;
    unsigned char   md[TG_SHA256_LEN], buf[4096];

    tg_sha256_init(&sha);
    tg_out_init(&o, window ? buf : NULL, window);
    tg_out_hash(&o, &sha);

    /* bytes one by one, then runs of three */

    for (i = 0; msg[i] != '\0' && i < 10; i++) {
        tg_out_byte(&o, (unsigned char) msg[i]);
    }

    while (msg[i] != '\0') {
        n = strlen(&msg[i]) < 3 ? strlen(&msg[i]) : 3;
        tg_out_put(&o, &msg[i], n);
        i += n;
    }

    if (tg_out_sha256(&o, md) != TG_OK) {
        hex[0] = '\0';
        return;
    }

    tg_sha256_hex_of(md, hex);

    if (o.overflow || o.len != strlen(msg)) {
        hex[0] = '\0';
    }
}


/*
 * tg_out_json() writes what tg_json_escape() writes, directly when the
 * buffer has room for the worst case and in chunks when it has not (a
 * window with a hash attached, or a NULL buffer that counts).  Inputs
 * are long runs of valid and broken UTF-8 around every chunk boundary.
 */

static void
test_json(void)
{
    int             bad;
    size_t          i, k, n, len, want_len;
    tg_out_t        o;
    tg_sha256_t     sha;
    unsigned char   in[300], want[6 * 300], got[6 * 300], win[13];
    unsigned char   md[TG_SHA256_LEN];
    char            hex1[TG_SHA256_HEX_LEN + 1], hex2[TG_SHA256_HEX_LEN + 1];

    static const char  *pieces[] = {
        "a", "\"", "\\", "\x01", "\x7f", "\xc3\xa9", "\xe2\x80\xa8",
        "\xf0\x9f\x98\x80", "\xc2\x85", "\xff", "\xe2\x82", "\x80",
        "\xed\xa0\x80", "\xf4\x90\x80\x80",
    };

    bad = 0;
    srand(20261204);

    for (i = 0; i < 2000; i++) {
        len = 0;

        while (len < 200 + (size_t) (rand() % 90)) {
            const char  *p = pieces[rand() % (sizeof(pieces)
                                              / sizeof(pieces[0]))];

            n = strlen(p);
            memcpy(&in[len], p, n);
            len += n;
        }

        want_len = (size_t) (tg_json_escape(want, in, len) - want);

        if (want_len != tg_json_escaped_len(in, len)) {
            bad++;
            continue;
        }

        /* room for the worst case: written directly */

        tg_out_init(&o, got, sizeof(got));
        tg_out_json(&o, in, len);
        bad += (o.len != want_len || memcmp(got, want, want_len) != 0);

        /* a buffer too short for 6x: chunks, same bytes */

        k = want_len + (size_t) (rand() % 5);
        tg_out_init(&o, got, k < 6 * len ? k : 6 * len - 1);
        tg_out_json(&o, in, len);
        bad += (o.overflow || o.len != want_len
                || memcmp(got, want, want_len) != 0);

        /* counting only */

        tg_out_init(&o, NULL, 0);
        tg_out_json(&o, in, len);
        bad += (o.len != want_len);

        /* a window with a hash: the hash of the escaped bytes */

        if (tg_sha256_hex(want, want_len, hex1) != TG_OK) {
            bad++;
        }

        tg_sha256_init(&sha);
        tg_out_init(&o, win, sizeof(win));
        tg_out_hash(&o, &sha);
        tg_out_json(&o, in, len);
        if (tg_out_sha256(&o, md) != TG_OK) {
            bad++;
            continue;
        }

        tg_sha256_hex_of(md, hex2);
        bad += (o.len != want_len || strcmp(hex1, hex2) != 0);
    }

    is_int(bad, 0, "tg_out_json == tg_json_escape, every path, 2000 inputs");

    /*
     * A plain run is copied as it is, then the rest escaped: into a
     * buffer of exactly the output's size (no room for 6x), with the
     * first byte to escape at every offset of 0..40, and the bytes
     * either side of the plain range.
     */

    {
        static const unsigned char  stops[] = {
            '"', '\\', 0x00, 0x1f, 0x7f, 0x80, 0xc3, 0xff, ' ', '~'
        };

        size_t  pos, x;

        bad = 0;

        for (len = 0; len <= 40; len++) {
            for (pos = 0; pos <= len; pos++) {
                for (x = 0; x < sizeof(stops); x++) {
                    for (i = 0; i < len; i++) {
                        in[i] = (unsigned char) ('a' + i % 26);
                    }

                    if (pos < len) {
                        in[pos] = stops[x];
                    }

                    want_len = (size_t) (tg_json_escape(want, in, len) - want);

                    memset(got, 0xa5, want_len + 1);
                    tg_out_init(&o, got, want_len);
                    tg_out_json(&o, in, len);
                    bad += (o.overflow || o.len != want_len
                            || o.pos != want_len || got[want_len] != 0xa5
                            || memcmp(got, want, want_len) != 0);

                    tg_out_init(&o, got, want_len > 0 ? want_len - 1 : 0);
                    tg_out_json(&o, in, len);
                    bad += (o.len != want_len
                            || (want_len > 0 && !o.overflow));
                }
            }
        }

        is_int(bad, 0, "plain run then escapes, in a buffer of exact size"
               " and one byte short");
    }
}


/*
 * Bytes appended between a pause and a resume are kept, not hashed:
 * "abc" and "def" around 20 others hash as "abcdef", through windows
 * that fill and are reused while paused, and with no window at all.
 */

static void
test_pause(void)
{
    size_t          w;
    tg_out_t        o;
    tg_sha256_t     sha;
    unsigned char   md[TG_SHA256_LEN], buf[64];
    char            hex[TG_SHA256_HEX_LEN + 1], want[TG_SHA256_HEX_LEN + 1];

    if (tg_sha256_hex((const unsigned char *) "abcdef", 6, want) != TG_OK) {
        want[0] = '\0';
    }

    for (w = 0; w <= 9; w++) {
        tg_sha256_init(&sha);
        tg_out_init(&o, w ? buf : NULL, w);
        tg_out_hash(&o, &sha);

        tg_out_str(&o, "abc");
        tg_out_hash_pause(&o);
        tg_out_str(&o, "0123456789");
        tg_out_byte(&o, 'x');
        tg_out_str(&o, "012345678");
        tg_out_hash_resume(&o);
        tg_out_str(&o, "def");

        hex[0] = '\0';
        if (tg_out_sha256(&o, md) == TG_OK) {
            tg_sha256_hex_of(md, hex);
        }

        is_str(hex, want, "paused for 20 bytes, window of %zu", w);
        is_int(o.len, 26, "paused, window of %zu: every byte counted", w);
    }

    /* a buffer of the whole output keeps the paused bytes */

    tg_sha256_init(&sha);
    tg_out_init(&o, buf, sizeof(buf));
    tg_out_hash(&o, &sha);
    tg_out_str(&o, "abc");
    tg_out_hash_pause(&o);
    tg_out_str(&o, "[kept]");
    tg_out_hash_resume(&o);
    tg_out_str(&o, "def");

    ok(o.pos == 12 && memcmp(buf, "abc[kept]def", 12) == 0,
       "paused bytes are written");

    hex[0] = '\0';
    if (tg_out_sha256(&o, md) == TG_OK) {
        tg_sha256_hex_of(md, hex);
    }

    is_str(hex, want, "and not hashed");
}
