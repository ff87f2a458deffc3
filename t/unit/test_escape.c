/*
 * tg_json_escape(): known answers, then properties over every input of
 * one and two bytes and many of three and four, checked against glibc's
 * iconv as an independent UTF-8 decoder (it refuses overlongs, encoded
 * surrogates and code points above U+10FFFF, as RFC 3629 asks).
 */

#include <iconv.h>
#include <stdlib.h>

#include "tap.h"
#include "tg_escape.h"


typedef struct {
    const char  *name;
    const char  *in;
    size_t       len;
    const char  *out;
} vec_t;


#define V(name, in, out)  { name, in, sizeof(in) - 1, out }


static const vec_t  vectors[] = {
    V("empty", "", ""),
    V("plain ASCII", "2.0.48.231200", "2.0.48.231200"),
    V("double quote", "a\"b", "a\\\"b"),
    V("backslash", "a\\b", "a\\\\b"),
    V("slash kept", "a/b", "a/b"),
    V("newline as \\u000a", "a\nb", "a\\u000ab"),
    V("tab as \\u0009", "\t", "\\u0009"),
    V("NUL inside", "a\0b", "a\\u0000b"),
    V("DEL", "\x7f", "\\u007f"),

    /* valid UTF-8 (RFC 3629 section 3 table, boundaries) kept raw */
    V("2-byte U+0080, a C1 control", "\xc2\x80", "\\u0080"),
    V("U+009F, the last C1 control", "\xc2\x9f", "\\u009f"),
    V("U+00A0 kept", "\xc2\xa0", "\xc2\xa0"),
    V("U+2028 line separator", "\xe2\x80\xa8", "\\u2028"),
    V("U+2029 paragraph separator", "a\xe2\x80\xa9" "b", "a\\u2029b"),
    V("U+2027 kept", "\xe2\x80\xa7", "\xe2\x80\xa7"),
    V("2-byte e acute", "\xc3\xa9", "\xc3\xa9"),
    V("2-byte U+07FF", "\xdf\xbf", "\xdf\xbf"),
    V("3-byte U+0800", "\xe0\xa0\x80", "\xe0\xa0\x80"),
    V("3-byte euro", "\xe2\x82\xac", "\xe2\x82\xac"),
    V("3-byte U+D7FF", "\xed\x9f\xbf", "\xed\x9f\xbf"),
    V("3-byte U+E000", "\xee\x80\x80", "\xee\x80\x80"),
    V("3-byte U+FFFF", "\xef\xbf\xbf", "\xef\xbf\xbf"),
    V("4-byte U+10000", "\xf0\x90\x80\x80", "\xf0\x90\x80\x80"),
    V("4-byte U+1F600", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"),
    V("4-byte U+10FFFF", "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"),

    /* invalid bytes, each as \u00XX of its value */
    V("lone continuation", "\x80", "\\u0080"),
    V("lone continuation BF", "a\xbf" "b", "a\\u00bfb"),
    V("overlong C0 80", "\xc0\x80", "\\u00c0\\u0080"),
    V("overlong C1 BF", "\xc1\xbf", "\\u00c1\\u00bf"),
    V("overlong E0 80 80", "\xe0\x80\x80", "\\u00e0\\u0080\\u0080"),
    V("overlong F0 80 80 80", "\xf0\x80\x80\x80",
      "\\u00f0\\u0080\\u0080\\u0080"),
    V("truncated 2-byte at end", "a\xc3", "a\\u00c3"),
    V("truncated 3-byte at end", "\xe2\x82", "\\u00e2\\u0082"),
    V("truncated 4-byte at end", "\xf0\x9f\x98", "\\u00f0\\u009f\\u0098"),
    V("lead then ASCII", "\xc3" "a", "\\u00c3a"),
    V("surrogate ED A0 80", "\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"),
    V("surrogate ED BF BF", "\xed\xbf\xbf", "\\u00ed\\u00bf\\u00bf"),
    V("above U+10FFFF F4 90", "\xf4\x90\x80\x80",
      "\\u00f4\\u0090\\u0080\\u0080"),
    V("F5 lead", "\xf5\x80\x80\x80", "\\u00f5\\u0080\\u0080\\u0080"),
    V("F8 lead", "\xf8", "\\u00f8"),
    V("FE", "\xfe", "\\u00fe"),
    V("FF", "\xff", "\\u00ff"),
    V("valid after invalid", "\x80\xc3\xa9", "\\u0080\xc3\xa9"),
    V("invalid between valid", "\xc3\xa9\xff\xe2\x82\xac",
      "\xc3\xa9\\u00ff\xe2\x82\xac"),
};


static iconv_t  utf8;


/* glibc's opinion: is s valid UTF-8 from end to end? */

static int
iconv_valid(const unsigned char *s, size_t n)
{
    char    out[4 * 64];
    char   *in, *o;
    size_t  left, room, r;

    if (n > 64) {
        return -1;
    }

    iconv(utf8, NULL, NULL, NULL, NULL);

    in = (char *) s;
    left = n;
    o = out;
    room = sizeof(out);

    r = iconv(utf8, &in, &left, &o, &room);

    return r != (size_t) -1 && left == 0;
}


/*
 * One input: the length matches what is written, nothing is written past
 * it, the output is valid UTF-8 with no raw control byte, and valid input
 * without '"', '\\' or control bytes comes out unchanged.
 */

static int
check_one(const unsigned char *in, size_t n)
{
    int             plain;
    size_t          len, i;
    unsigned char   buf[6 * 64 + 1];
    unsigned char  *end;

    len = tg_json_escaped_len(in, n);
    memset(buf, 0xa5, sizeof(buf));
    end = tg_json_escape(buf, in, n);

    if ((size_t) (end - buf) != len || buf[len] != 0xa5) {
        return 0;
    }

    plain = 1;

    for (i = 0; i < len; i++) {
        if (buf[i] < 0x20 || buf[i] == 0x7f) {
            return 0;
        }
    }

    for (i = 0; i < n; i++) {
        if (in[i] < 0x20 || in[i] == 0x7f || in[i] == '"' || in[i] == '\\') {
            plain = 0;
        }

        /* C1 controls, U+2028 and U+2029 are escaped too */
        if ((in[i] == 0xc2 && i + 1 < n && in[i + 1] >= 0x80
             && in[i + 1] <= 0x9f)
            || (in[i] == 0xe2 && i + 2 < n && in[i + 1] == 0x80
                && (in[i + 2] == 0xa8 || in[i + 2] == 0xa9)))
        {
            plain = 0;
        }
    }

    if (iconv_valid(buf, len) != 1) {
        return 0;
    }

    if (plain && iconv_valid(in, n) == 1) {
        return len == n && memcmp(buf, in, n) == 0;
    }

    /* escaping never loses a byte: invalid input only grows */
    return len > n || !plain;
}


/* the length of the plain run at s, a byte at a time */

static size_t
plain_ref(const unsigned char *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') {
            break;
        }
    }

    return i;
}


/*
 * tg_json_plain_len() reads words: every byte value at every offset of
 * strings that span 0 to 4 words and a partial one, at every alignment,
 * alone and with a second stop after it (a borrow from the first must not
 * hide or fake anything), and each such string escaped as a whole.
 */

static void
plain_len_words(void)
{
    size_t          len, pos, align, i, bad, esc;
    unsigned        c;
    unsigned char   buf[8 + 40], *in;

    bad = 0;
    esc = 0;

    for (len = 0; len <= 40; len++) {
        for (align = 0; align < 8; align++) {
            in = buf + align;

            for (i = 0; i < len; i++) {
                in[i] = (unsigned char) ('a' + i % 26);
            }

            if (plain_ref(in, len) != len) {
                bad++;
            }

            bad += (tg_json_plain_len(in, len) != len);

            for (pos = 0; pos < len; pos++) {
                for (c = 0; c < 256; c++) {
                    in[pos] = (unsigned char) c;

                    bad += (tg_json_plain_len(in, len) != plain_ref(in, len));

                    if (pos + 1 < len) {
                        in[len - 1] = '"';
                        bad += (tg_json_plain_len(in, len)
                                != plain_ref(in, len));
                        in[len - 1] = (unsigned char) ('a' + (len - 1) % 26);
                    }

                    if (align == 0 && (c < 0x21 || c > 0x7d || c == '"'
                                       || c == '\\'))
                    {
                        esc += !check_one(in, len);
                    }

                    in[pos] = (unsigned char) ('a' + pos % 26);
                }
            }
        }
    }

    is_int(bad, 0, "plain_len agrees with a byte-wise scan at every offset,"
           " alignment and byte value");
    is_int(esc, 0, "a byte to escape at every offset of 0..40 bytes");
}


int
main(void)
{
    char            want[16];
    size_t          i, len, bad;
    unsigned        a, c, d;
    const vec_t    *v;
    unsigned char   in[4], out[6 * 64 + 1], *end;

    utf8 = iconv_open("UTF-32LE", "UTF-8");
    if (utf8 == (iconv_t) -1) {
        printf("Bail out! iconv_open(UTF-8) failed\n");
        return 1;
    }

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        v = &vectors[i];

        len = tg_json_escaped_len((const unsigned char *) v->in, v->len);
        end = tg_json_escape(out, (const unsigned char *) v->in, v->len);
        *end = '\0';

        is_str((char *) out, v->out, "%s", v->name);
        is_int(len, end - out, "%s: escaped_len equals what is written",
               v->name);
    }

    /* every control byte, alone, as lowercase \u00XX */

    bad = 0;

    for (c = 0; c < 0x80; c++) {
        if (c >= 0x20 && c != 0x7f) {
            continue;
        }

        in[0] = (unsigned char) c;
        len = tg_json_escaped_len(in, 1);
        end = tg_json_escape(out, in, 1);
        *end = '\0';
        snprintf(want, sizeof(want), "\\u%04x", c);

        if (len != 6 || strcmp((char *) out, want) != 0) {
            printf("# byte 0x%02x gave '%s'\n", c, out);
            bad++;
        }
    }

    ok(bad == 0, "0x00..0x1f and 0x7f all escaped as \\u00XX");

    /*
     * A valid sequence cut short by the length, the byte after the cut
     * a continuation byte that is in memory but not in the string: no
     * sequence, each byte escaped alone, nothing read past the length.
     */

    {
        static const char  *seqs[] = { "\xc3\xa9", "\xe2\x82\xac",
                                       "\xf0\x9f\x98\x80" };

        size_t  n, k;

        bad = 0;

        for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
            n = strlen(seqs[i]);

            for (k = 1; k < n; k++) {
                bad += (tg_utf8_seq_len((const unsigned char *) seqs[i], k)
                        != 0);

                len = tg_json_escaped_len((const unsigned char *) seqs[i], k);
                end = tg_json_escape(out, (const unsigned char *) seqs[i], k);
                bad += (len != 6 * k || (size_t) (end - out) != len);
            }

            bad += (tg_utf8_seq_len((const unsigned char *) seqs[i], n) != n);
        }

        is_int(bad, 0, "sequences cut short by the length: none, and each"
               " byte escaped");
    }

    plain_len_words();

    /* printable ASCII other than '"' and '\\' passes through */

    bad = 0;

    for (c = 0x20; c < 0x7f; c++) {
        in[0] = (unsigned char) c;
        len = tg_json_escaped_len(in, 1);
        end = tg_json_escape(out, in, 1);

        if (c == '"' || c == '\\') {
            bad += (len != 2 || out[0] != '\\' || out[1] != c);

        } else {
            bad += (len != 1 || out[0] != c);
        }
    }

    is_int(bad, 0, "printable ASCII kept, '\"' and '\\\\' backslashed");

    /* properties over every 1- and 2-byte input */

    bad = 0;

    for (a = 0; a < 256; a++) {
        in[0] = (unsigned char) a;
        bad += !check_one(in, 1);

        for (c = 0; c < 256; c++) {
            in[1] = (unsigned char) c;
            bad += !check_one(in, 2);
        }
    }

    is_int(bad, 0, "all 65792 inputs of 1 and 2 bytes agree with iconv");

    /* every 3-byte input with a multi-byte lead */

    bad = 0;

    for (a = 0xc0; a < 256; a++) {
        in[0] = (unsigned char) a;

        for (c = 0; c < 256; c++) {
            in[1] = (unsigned char) c;

            for (d = 0; d < 256; d++) {
                in[2] = (unsigned char) d;
                bad += !check_one(in, 3);
            }
        }
    }

    is_int(bad, 0, "all 3-byte inputs with lead C0..FF agree with iconv");

    /* 4-byte leads against every second byte and edge continuations */

    {
        static const unsigned char  edge[] = {
            0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
            0xc3, 0xff
        };

        size_t  x, y;

        bad = 0;

        for (a = 0xf0; a < 256; a++) {
            in[0] = (unsigned char) a;

            for (c = 0; c < 256; c++) {
                in[1] = (unsigned char) c;

                for (x = 0; x < sizeof(edge); x++) {
                    in[2] = edge[x];

                    for (y = 0; y < sizeof(edge); y++) {
                        in[3] = edge[y];
                        bad += !check_one(in, 4);
                    }
                }
            }
        }

        is_int(bad, 0, "4-byte inputs with lead F0..FF agree with iconv");
    }

    iconv_close(utf8);

    return done_testing();
}
