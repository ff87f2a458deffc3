/*
 * JSON string escaping.
 *
 * Hex digits are lowercase: a control byte 0x1f becomes \u001f.  Every
 * byte below 0x20 and 0x7f takes the \u00XX form (no \n or \t shorthand),
 * so one rule covers them all.  A byte that does not start a valid UTF-8
 * sequence (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF, no truncated sequence) is written as \u00XX of its own value
 * and the scan resumes at the next byte.  Valid multi-byte sequences are
 * copied as they are, but for the C1 controls (U+0080..U+009F), U+2028
 * and U+2029, which are written as \u0080..\u009f, \u2028 and \u2029.
 */

#include <string.h>

#include "tg_escape.h"




static inline uint64_t tg_json_stops(const unsigned char *p);
static int tg_json_line_breaker(const unsigned char *p, size_t n);
static unsigned char *tg_json_escape_cp(unsigned char *dst,
    const unsigned char *p, size_t n);


static const unsigned char  tg_hex[] = "0123456789abcdef";


/* printable ASCII but '"' and '\\': copied as it is */

static const unsigned char  tg_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};



size_t
tg_utf8_seq_len(const unsigned char *p, size_t n)
{
    size_t         len, i;
    unsigned char  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;

        if (c == 0xe0) {
            lo = 0xa0;                  /* overlong below U+0800 */

        } else if (c == 0xed) {
            hi = 0x9f;                  /* U+D800..U+DFFF */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;

        if (c == 0xf0) {
            lo = 0x90;                  /* overlong below U+10000 */

        } else if (c == 0xf4) {
            hi = 0x8f;                  /* above U+10FFFF */
        }

    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    if (p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return len;
}


/*
 * Runs of printable ASCII other than '"' and '\\' are most of every
 * string: they are measured eight bytes at a time.  tg_json_stops() sets
 * the high bit of each byte of a word that is below 0x20 or above 0x7e,
 * or is '"' or '\\': a byte x of a plain run has none of x, x - 0x20,
 * x + 1, (x ^ '"') - 1 and (x ^ '\\') - 1 at 0x80 or above, while any
 * other byte has one of them there (bytes from 0x80 up have x itself).
 * Borrows and carries between the bytes of the word only start at a
 * byte that stops the run and only run towards the more significant
 * ones, so the least significant flag is exact: on a little-endian
 * machine its bit index over 8 is the offset of the first byte that
 * stops the run, and no byte of that word is looked at again.  (Inline:
 * configure's bare -O, which the module gets from an nginx built without
 * --with-cc-opt, inlines only what is marked so.)
 */

#define TG_ONES   0x0101010101010101ULL
#define TG_HIGHS  0x8080808080808080ULL

#if (defined(__GNUC__) || defined(__clang__))                                 \
    && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define tg_json_first_stop(m)  ((size_t) __builtin_ctzll(m) >> 3)
#endif


static inline uint64_t
tg_json_stops(const unsigned char *p)
{
    uint64_t  w, q, b;

    memcpy(&w, p, 8);

    q = w ^ (TG_ONES * '"');
    b = w ^ (TG_ONES * '\\');

    return (w | (w - TG_ONES * 0x20) | (w + TG_ONES) | (q - TG_ONES)
            | (b - TG_ONES))
           & TG_HIGHS;
}


size_t
tg_json_plain_len(const unsigned char *src, size_t len)
{
    size_t    i;
    uint64_t  m;

    i = 0;

    while (len - i >= 8) {
        m = tg_json_stops(&src[i]);

        if (m != 0) {
#ifdef tg_json_first_stop
            return i + tg_json_first_stop(m);
#else
            break;
#endif
        }

        i += 8;
    }

#ifdef tg_json_first_stop

    /*
     * The last bytes of a long string: the word that ends with them, its
     * first bytes already known to be plain.
     */

    if (i < len && len >= 8) {
        m = tg_json_stops(&src[len - 8]);

        return (m != 0) ? len - 8 + tg_json_first_stop(m) : len;
    }

#endif

    while (i < len && tg_json_plain[src[i]]) {
        i++;
    }

    return i;
}


size_t
tg_json_escaped_len(const unsigned char *src, size_t len)
{
    size_t         i, n, size;
    unsigned char  c;

    size = 0;
    i = 0;

    while (i < len) {
        n = tg_json_plain_len(&src[i], len - i);
        size += n;
        i += n;

        if (i == len) {
            break;
        }

        c = src[i];

        if (c == '"' || c == '\\') {
            size += 2;
            i++;

        } else if (c < 0x80) {
            /* a control byte */
            size += 6;
            i++;

        } else {
            n = tg_utf8_seq_len(&src[i], len - i);

            if (n == 0) {
                size += 6;
                i++;

            } else {
                size += tg_json_line_breaker(&src[i], n) ? 6 : n;
                i += n;
            }
        }
    }

    return size;
}


unsigned char *
tg_json_escape(unsigned char *dst, const unsigned char *src, size_t len)
{
    size_t         i, n;
    unsigned char  c;

    i = 0;

    while (i < len) {
        n = tg_json_plain_len(&src[i], len - i);
        memcpy(dst, &src[i], n);
        dst += n;
        i += n;

        if (i == len) {
            break;
        }

        c = src[i];

        if (c == '"' || c == '\\') {
            *dst++ = '\\';
            *dst++ = c;
            i++;
            continue;
        }

        if (c >= 0x80) {
            n = tg_utf8_seq_len(&src[i], len - i);

            if (n != 0 && tg_json_line_breaker(&src[i], n)) {
                /* C1 controls, U+2028, U+2029: \u00XX, \u2028, \u2029 */
                dst = tg_json_escape_cp(dst, &src[i], n);
                i += n;
                continue;
            }

            if (n != 0) {
                memcpy(dst, &src[i], n);
                dst += n;
                i += n;
                continue;
            }
        }

        /* a control byte, or a byte outside any valid UTF-8 sequence */

        *dst++ = '\\';
        *dst++ = 'u';
        *dst++ = '0';
        *dst++ = '0';
        *dst++ = tg_hex[c >> 4];
        *dst++ = tg_hex[c & 0x0f];
        i++;
    }

    return dst;
}


/*
 * A valid sequence of n bytes that readers may take for a line break or
 * a control: U+0080..U+009F (C1), U+2028, U+2029.
 */

static int
tg_json_line_breaker(const unsigned char *p, size_t n)
{
    return (n == 2 && p[0] == 0xc2 && p[1] <= 0x9f)
           || (n == 3 && p[0] == 0xe2 && p[1] == 0x80
               && (p[2] == 0xa8 || p[2] == 0xa9));
}


static unsigned char *
tg_json_escape_cp(unsigned char *dst, const unsigned char *p, size_t n)
{
    unsigned  cp;

    cp = (n == 2) ? (unsigned) (p[1] & 0x3f) | 0x80
                  : 0x2000u | ((unsigned) (p[1] & 0x3f) << 6)
                    | (p[2] & 0x3f);

    *dst++ = '\\';
    *dst++ = 'u';
    *dst++ = tg_hex[(cp >> 12) & 0xf];
    *dst++ = tg_hex[(cp >> 8) & 0xf];
    *dst++ = tg_hex[(cp >> 4) & 0xf];
    *dst++ = tg_hex[cp & 0xf];

    return dst;
}


tg_rc_t
tg_json_unescape(const unsigned char *p, const unsigned char *end,
    unsigned *u, size_t *n)
{
    unsigned  lo;

    *n = 2;

    switch (p[1]) {

    case '"':
    case '\\':
    case '/':
        *u = p[1];
        return TG_OK;

    case 'b':
        *u = '\b';
        return TG_OK;

    case 'f':
        *u = '\f';
        return TG_OK;

    case 'n':
        *u = '\n';
        return TG_OK;

    case 'r':
        *u = '\r';
        return TG_OK;

    case 't':
        *u = '\t';
        return TG_OK;

    case 'u':
        break;

    default:
        return TG_ERR_SYNTAX;
    }

    if (end - p < 6 || !tg_json_hex4(p + 2, u)) {
        return TG_ERR_SYNTAX;
    }

    *n = 6;

    if (*u >= 0xdc00 && *u <= 0xdfff) {
        return TG_ERR_UTF8;
    }

    if (*u < 0xd800 || *u > 0xdbff) {
        return TG_OK;
    }

    /* a high surrogate: a low one must follow */

    if (end - p < 12 || p[6] != '\\' || p[7] != 'u'
        || !tg_json_hex4(p + 8, &lo)
        || lo < 0xdc00 || lo > 0xdfff)
    {
        return TG_ERR_UTF8;
    }

    *u = 0x10000 + ((*u - 0xd800) << 10) + (lo - 0xdc00);
    *n = 12;

    return TG_OK;
}


int
tg_json_hex4(const unsigned char *p, unsigned *v)
{
    size_t    i;
    unsigned  u, c;

    u = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if (c >= 'a' && c <= 'f') {
            c -= 'a' - 10;

        } else if (c >= 'A' && c <= 'F') {
            c -= 'A' - 10;

        } else {
            return 0;
        }

        u = (u << 4) | c;
    }

    *v = u;

    return 1;
}


size_t
tg_utf8_put(unsigned u, unsigned char buf[4])
{
    if (u < 0x80) {
        buf[0] = (unsigned char) u;
        return 1;
    }

    if (u < 0x800) {
        buf[0] = (unsigned char) (0xc0 | (u >> 6));
        buf[1] = (unsigned char) (0x80 | (u & 0x3f));
        return 2;
    }

    if (u < 0x10000) {
        buf[0] = (unsigned char) (0xe0 | (u >> 12));
        buf[1] = (unsigned char) (0x80 | ((u >> 6) & 0x3f));
        buf[2] = (unsigned char) (0x80 | (u & 0x3f));
        return 3;
    }

    buf[0] = (unsigned char) (0xf0 | (u >> 18));
    buf[1] = (unsigned char) (0x80 | ((u >> 12) & 0x3f));
    buf[2] = (unsigned char) (0x80 | ((u >> 6) & 0x3f));
    buf[3] = (unsigned char) (0x80 | (u & 0x3f));
    return 4;
}


size_t
tg_json_number_len(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *start, *digits;

    start = p;

    if (p < end && *p == '-') {
        p++;
    }

    if (p < end && *p == '0') {
        p++;

    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

    } else {
        return 0;
    }

    if (p < end && *p == '.') {
        digits = ++p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return 0;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        digits = p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return 0;
        }
    }

    return (size_t) (p - start);
}
