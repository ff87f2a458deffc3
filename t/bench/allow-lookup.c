
/*
 * allow-lookup FILE COUNT: the allow-list table's lookup cost, outside
 * nginx.  FILE (as t/bench/gen-allow.pl writes it) is parsed into a
 * table, then COUNT lookups alternate between listed pairs, taken from
 * the file's own statements, and pairs that are absent (a listed
 * project with an unknown instance).
 *
 * Run under `valgrind --tool=callgrind --collect-atstart=no
 * --toggle-collect=tg_allow_contains` the counted instructions divided
 * by COUNT are those of one lookup; alone it prints the wall time per
 * lookup, which a shared machine makes noisy.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tg_allow.h"


#define TG_LOOKUP_KEYS  4096


typedef struct {
    const unsigned char  *project;
    const unsigned char  *instance;
    size_t                ilen;
} tg_lookup_key_t;


static unsigned char *read_all(const char *name, size_t *len);


int
main(int argc, char **argv)
{
    int                   hits;
    size_t                i, k, n, len, count, stride;
    tg_rc_t               rc;
    double                ns;
    tg_allow_t           *a;
    unsigned char        *text, absent[36];
    struct timespec       t0, t1;
    tg_allow_parse_t      ps;
    const unsigned char  *p, *end, *w, *project;
    static tg_lookup_key_t  keys[TG_LOOKUP_KEYS];

    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE COUNT\n", argv[0]);
        return 2;
    }

    count = (size_t) strtoul(argv[2], NULL, 10);

    text = read_all(argv[1], &len);
    if (text == NULL) {
        return 1;
    }

    a = tg_allow_create(0);
    if (a == NULL) {
        return 1;
    }

    memset(&ps, 0, sizeof(tg_allow_parse_t));
    ps.text = text;
    ps.len = len;

    while (ps.pos < ps.len) {
        rc = tg_allow_parse(a, &ps);
        if (rc != TG_OK || ps.include.data != NULL) {
            fprintf(stderr, "%s:%zu: %s\n", argv[1], ps.line,
                    ps.what ? ps.what : tg_strerror(rc));
            return 1;
        }
    }

    /* every stride-th pair of the file's "project instance ...;" */

    stride = tg_allow_count(a) / TG_LOOKUP_KEYS + 1;
    p = text;
    end = text + len;
    n = 0;
    k = 0;

    while (p < end && n < TG_LOOKUP_KEYS) {
        project = p;
        p += TG_PROJECT_ID_LEN;

        while (p < end && *p == ' ') {
            w = ++p;

            while (p < end && *p != ' ' && *p != ';') {
                p++;
            }

            if (k++ % stride == 0 && n < TG_LOOKUP_KEYS) {
                keys[n].project = project;
                keys[n].instance = w;
                keys[n].ilen = (size_t) (p - w);
                n++;
            }
        }

        while (p < end && *p++ != '\n') {
            /* void */
        }
    }

    if (n == 0) {
        fprintf(stderr, "%s: no statements\n", argv[1]);
        return 1;
    }

    memset(absent, 'z', sizeof(absent));

    hits = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < count; i++) {
        if (i & 1) {
            hits -= tg_allow_contains(a, keys[i % n].project, 32,
                                      absent, sizeof(absent));

        } else {
            hits += tg_allow_contains(a, keys[i % n].project, 32,
                                      keys[i % n].instance, keys[i % n].ilen);
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    ns = (double) (t1.tv_sec - t0.tv_sec) * 1e9
         + (double) (t1.tv_nsec - t0.tv_nsec);

    printf("%zu pairs, %zu lookups, %d found, %.1f ns a lookup\n",
           tg_allow_count(a), count, hits, count ? ns / (double) count : 0);

    tg_allow_destroy(a);
    free(text);

    return (hits == (int) ((count + 1) / 2)) ? 0 : 1;
}


static unsigned char *
read_all(const char *name, size_t *len)
{
    long            size;
    FILE           *f;
    unsigned char  *text;

    f = fopen(name, "rb");
    if (f == NULL) {
        perror(name);
        return NULL;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(name);
        fclose(f);
        return NULL;
    }

    text = malloc((size_t) size + 1);
    if (text == NULL
        || fread(text, 1, (size_t) size, f) != (size_t) size)
    {
        perror(name);
        free(text);
        fclose(f);
        return NULL;
    }

    fclose(f);
    *len = (size_t) size;

    return text;
}
