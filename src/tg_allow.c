/*
 * The allow-list: open addressing with linear probing over power-of-two
 * tables of 16-byte slots; the ID bytes live once in one growable arena
 * addressed by offsets, so growing it (realloc) never invalidates a slot.
 *
 * Two tables share the arena: the projects (each 32-byte project ID
 * stored once) and the pairs, whose slots point at their project's copy
 * and at their own instance ID (a length byte, then the bytes).  Both
 * grow by doubling and rehashing from the stored hashes when they would
 * pass half full.  One million pairs take about 32 MB of pair slots and
 * 37 MB of arena (both at most doubled while growing).
 *
 * The table is built from trusted configuration, so a fast
 * non-cryptographic hash is enough; lookups compare the full bytes after
 * a hash match.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tg_allow.h"


#define TG_ALLOW_MIN_SLOTS  16


typedef struct {
    uint64_t             hash;
    uint32_t             ioff;      /* pairs: instance; projects: unused */
    uint32_t             poff;      /* the project's copy; 0: empty slot */
} tg_allow_slot_t;


typedef struct {
    tg_allow_slot_t     *slots;
    size_t               mask;      /* number of slots - 1 */
    size_t               used;
} tg_allow_table_t;


struct tg_allow_s {
    tg_allow_table_t     pairs;
    tg_allow_table_t     projects;
    unsigned char       *arena;
    size_t               arena_len;     /* offset 0 is never used */
    size_t               arena_size;
};


static int tg_id_chars_ok(const unsigned char *p, size_t len);
static uint64_t tg_allow_hash(const unsigned char *project, size_t plen,
    const unsigned char *instance, size_t ilen);
static uint64_t tg_allow_mix(uint64_t h, const unsigned char *p,
    size_t len);
static tg_rc_t tg_allow_table_init(tg_allow_table_t *t, size_t hint);
static tg_rc_t tg_allow_table_grow(tg_allow_table_t *t);
static void tg_allow_table_put(tg_allow_table_t *t,
    const tg_allow_slot_t *s);
static size_t tg_allow_find_project(const tg_allow_t *a,
    const unsigned char *project, uint64_t hash);
static size_t tg_allow_find_pair(const tg_allow_t *a,
    const unsigned char *project, const unsigned char *instance,
    size_t ilen, uint64_t hash);
static tg_rc_t tg_allow_arena_reserve(tg_allow_t *a, size_t need);
static uint32_t tg_allow_arena_put(tg_allow_t *a, const unsigned char *p,
    size_t len, int with_len);
static int tg_allow_cmp(const void *x, const void *y);


/* a digest line, pointing into the arena */
typedef struct {
    const unsigned char *project;
    const unsigned char *instance;
    size_t               ilen;
} tg_allow_line_t;


tg_rc_t
tg_project_id_check(const unsigned char *p, size_t len)
{
    if (p == NULL || len != TG_PROJECT_ID_LEN || !tg_id_chars_ok(p, len)) {
        return TG_ERR_BAD_PROJECT_ID;
    }

    return TG_OK;
}


tg_rc_t
tg_instance_id_check(const unsigned char *p, size_t len)
{
    if (p == NULL
        || len < TG_INSTANCE_ID_MIN_LEN
        || len > TG_INSTANCE_ID_MAX_LEN
        || !tg_id_chars_ok(p, len))
    {
        return TG_ERR_BAD_INSTANCE_ID;
    }

    return TG_OK;
}


static int
tg_id_chars_ok(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9')
              || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= 'A' && p[i] <= 'Z')))
        {
            return 0;
        }
    }

    return 1;
}


tg_allow_t *
tg_allow_create(size_t hint)
{
    tg_allow_t  *a;

    a = calloc(1, sizeof(tg_allow_t));
    if (a == NULL) {
        return NULL;
    }

    if (hint > SIZE_MAX / 4 / sizeof(tg_allow_slot_t)) {
        goto failed;
    }

    if (tg_allow_table_init(&a->pairs, hint) != TG_OK
        || tg_allow_table_init(&a->projects, 0) != TG_OK)
    {
        goto failed;
    }

    a->arena_size = 4096;
    a->arena = malloc(a->arena_size);
    if (a->arena == NULL) {
        goto failed;
    }

    /* offset 0 marks an empty slot */
    a->arena[0] = 0;
    a->arena_len = 1;

    return a;

failed:

    tg_allow_destroy(a);
    return NULL;
}


void
tg_allow_destroy(tg_allow_t *a)
{
    if (a == NULL) {
        return;
    }

    free(a->pairs.slots);
    free(a->projects.slots);
    free(a->arena);
    free(a);
}


tg_rc_t
tg_allow_add(tg_allow_t *a, const unsigned char *project, size_t plen,
    const unsigned char *instance, size_t ilen)
{
    size_t           i;
    tg_rc_t          rc;
    uint64_t         ph, h;
    tg_allow_slot_t  s;

    if (a == NULL) {
        return TG_ERR_ARG;
    }

    rc = tg_project_id_check(project, plen);
    if (rc != TG_OK) {
        return rc;
    }

    rc = tg_instance_id_check(instance, ilen);
    if (rc != TG_OK) {
        return rc;
    }

    h = tg_allow_hash(project, plen, instance, ilen);

    if (tg_allow_find_pair(a, project, instance, ilen, h) != (size_t) -1) {
        return TG_ERR_DUP_ENTRY;
    }

    /* make room first: no partial entry is left behind on TG_ERR_NOMEM */

    if ((a->pairs.used + 1) * 2 > a->pairs.mask + 1) {
        rc = tg_allow_table_grow(&a->pairs);
        if (rc != TG_OK) {
            return rc;
        }
    }

    rc = tg_allow_arena_reserve(a, plen + 1 + ilen);
    if (rc != TG_OK) {
        return rc;
    }

    ph = tg_allow_hash(project, plen, NULL, 0);

    i = tg_allow_find_project(a, project, ph);

    if (i == (size_t) -1) {

        if ((a->projects.used + 1) * 2 > a->projects.mask + 1) {
            rc = tg_allow_table_grow(&a->projects);
            if (rc != TG_OK) {
                return rc;
            }
        }

        s.hash = ph;
        s.ioff = 0;

        s.poff = tg_allow_arena_put(a, project, plen, 0);

        tg_allow_table_put(&a->projects, &s);

    } else {
        s.poff = a->projects.slots[i].poff;
    }

    s.hash = h;

    s.ioff = tg_allow_arena_put(a, instance, ilen, 1);

    tg_allow_table_put(&a->pairs, &s);

    return TG_OK;
}


int
tg_allow_contains(const tg_allow_t *a, const unsigned char *project,
    size_t plen, const unsigned char *instance, size_t ilen)
{
    uint64_t  h;

    if (a == NULL
        || project == NULL
        || instance == NULL
        || plen != TG_PROJECT_ID_LEN
        || ilen < TG_INSTANCE_ID_MIN_LEN
        || ilen > TG_INSTANCE_ID_MAX_LEN)
    {
        return 0;
    }

    h = tg_allow_hash(project, plen, instance, ilen);

    return tg_allow_find_pair(a, project, instance, ilen, h) != (size_t) -1;
}


size_t
tg_allow_count(const tg_allow_t *a)
{
    return (a == NULL) ? 0 : a->pairs.used;
}


size_t
tg_allow_project_count(const tg_allow_t *a)
{
    return (a == NULL) ? 0 : a->projects.used;
}


tg_rc_t
tg_allow_digest(const tg_allow_t *a, char hex[65])
{
    size_t            i, n;
    tg_rc_t           rc;
    EVP_MD_CTX       *ctx;
    unsigned int      mdlen;
    unsigned char     line[TG_PROJECT_ID_LEN + TG_INSTANCE_ID_MAX_LEN + 2];
    unsigned char     md[EVP_MAX_MD_SIZE];
    tg_allow_line_t  *lines;

    static const char  digits[] = "0123456789abcdef";

    if (a == NULL || hex == NULL) {
        return TG_ERR_ARG;
    }

    ctx = NULL;

    lines = malloc((a->pairs.used ? a->pairs.used : 1)
                   * sizeof(tg_allow_line_t));
    if (lines == NULL) {
        return TG_ERR_NOMEM;
    }

    n = 0;

    for (i = 0; i <= a->pairs.mask; i++) {
        const tg_allow_slot_t  *s = &a->pairs.slots[i];

        if (s->poff != 0) {
            lines[n].project = a->arena + s->poff;
            lines[n].instance = a->arena + s->ioff + 1;
            lines[n].ilen = a->arena[s->ioff];
            n++;
        }
    }

    qsort(lines, n, sizeof(tg_allow_line_t), tg_allow_cmp);

    rc = TG_ERR_CRYPTO;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        goto done;
    }

    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        goto done;
    }

    /* "project_id instance_id\n" */

    for (i = 0; i < n; i++) {
        memcpy(line, lines[i].project, TG_PROJECT_ID_LEN);
        line[TG_PROJECT_ID_LEN] = ' ';
        memcpy(line + TG_PROJECT_ID_LEN + 1, lines[i].instance,
               lines[i].ilen);
        line[TG_PROJECT_ID_LEN + 1 + lines[i].ilen] = '\n';

        if (EVP_DigestUpdate(ctx, line, TG_PROJECT_ID_LEN + lines[i].ilen + 2)
            != 1)
        {
            goto done;
        }
    }

    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        goto done;
    }

    for (i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }

    hex[64] = '\0';

    rc = TG_OK;

done:

    EVP_MD_CTX_free(ctx);
    free(lines);

    return rc;
}


/*
 * The order of `LC_ALL=C sort` over "project instance" lines: project IDs
 * all have the same length, so compare them, then the instance IDs
 * bytewise with a shorter prefix first.
 */
static int
tg_allow_cmp(const void *x, const void *y)
{
    int                     r;
    const tg_allow_line_t  *lx = x;
    const tg_allow_line_t  *ly = y;

    if (lx->project != ly->project) {
        r = memcmp(lx->project, ly->project, TG_PROJECT_ID_LEN);
        if (r != 0) {
            return r;
        }
    }

    r = memcmp(lx->instance, ly->instance,
               lx->ilen < ly->ilen ? lx->ilen : ly->ilen);
    if (r != 0) {
        return r;
    }

    return (lx->ilen > ly->ilen) - (lx->ilen < ly->ilen);
}


/*
 * Eight bytes at a time: each word is folded in with a multiply and a
 * rotation, the length closes the input (a project alone, instance NULL,
 * is a different input from any pair: pairs are longer), and the
 * splitmix64 finalizer spreads the bits, since the table index is taken
 * from the low ones.
 */
static uint64_t
tg_allow_hash(const unsigned char *project, size_t plen,
    const unsigned char *instance, size_t ilen)
{
    uint64_t  h;

    h = tg_allow_mix(0x243f6a8885a308d3ULL, project, plen);

    if (instance != NULL) {
        h = tg_allow_mix(h, instance, ilen);
    }

    h ^= (uint64_t) (plen + ilen);

    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;

    return h;
}


static uint64_t
tg_allow_mix(uint64_t h, const unsigned char *p, size_t len)
{
    uint64_t  w;

    while (len >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h = (h << 27) | (h >> 37);
        p += 8;
        len -= 8;
    }

    if (len > 0) {
        w = 0;
        memcpy(&w, p, len);
        h = (h ^ w ^ ((uint64_t) len << 56)) * 0x9e3779b97f4a7c15ULL;
        h = (h << 27) | (h >> 37);
    }

    return h;
}


static tg_rc_t
tg_allow_table_init(tg_allow_table_t *t, size_t hint)
{
    size_t  n;

    n = TG_ALLOW_MIN_SLOTS;

    while (n < hint * 2) {
        n *= 2;
    }

    t->slots = calloc(n, sizeof(tg_allow_slot_t));
    if (t->slots == NULL) {
        return TG_ERR_NOMEM;
    }

    t->mask = n - 1;
    t->used = 0;

    return TG_OK;
}


static tg_rc_t
tg_allow_table_grow(tg_allow_table_t *t)
{
    size_t            i, n;
    tg_allow_table_t  nt;

    n = (t->mask + 1) * 2;

    if (n > SIZE_MAX / sizeof(tg_allow_slot_t)) {
        return TG_ERR_NOMEM;
    }

    nt.slots = calloc(n, sizeof(tg_allow_slot_t));
    if (nt.slots == NULL) {
        return TG_ERR_NOMEM;
    }

    nt.mask = n - 1;
    nt.used = 0;

    for (i = 0; i <= t->mask; i++) {
        if (t->slots[i].poff != 0) {
            tg_allow_table_put(&nt, &t->slots[i]);
        }
    }

    free(t->slots);
    *t = nt;

    return TG_OK;
}


/* the caller has made sure there is a free slot */
static void
tg_allow_table_put(tg_allow_table_t *t, const tg_allow_slot_t *s)
{
    size_t  i;

    i = (size_t) s->hash & t->mask;

    while (t->slots[i].poff != 0) {
        i = (i + 1) & t->mask;
    }

    t->slots[i] = *s;
    t->used++;
}


static size_t
tg_allow_find_project(const tg_allow_t *a, const unsigned char *project,
    uint64_t hash)
{
    size_t                  i;
    const tg_allow_slot_t  *s;

    i = (size_t) hash & a->projects.mask;

    for ( ;; ) {
        s = &a->projects.slots[i];

        if (s->poff == 0) {
            return (size_t) -1;
        }

        if (s->hash == hash
            && memcmp(a->arena + s->poff, project, TG_PROJECT_ID_LEN) == 0)
        {
            return i;
        }

        i = (i + 1) & a->projects.mask;
    }
}


static size_t
tg_allow_find_pair(const tg_allow_t *a, const unsigned char *project,
    const unsigned char *instance, size_t ilen, uint64_t hash)
{
    size_t                  i;
    const tg_allow_slot_t  *s;

    i = (size_t) hash & a->pairs.mask;

    for ( ;; ) {
        s = &a->pairs.slots[i];

        if (s->poff == 0) {
            return (size_t) -1;
        }

        if (s->hash == hash
            && a->arena[s->ioff] == ilen
            && memcmp(a->arena + s->ioff + 1, instance, ilen) == 0
            && memcmp(a->arena + s->poff, project, TG_PROJECT_ID_LEN) == 0)
        {
            return i;
        }

        i = (i + 1) & a->pairs.mask;
    }
}


static tg_rc_t
tg_allow_arena_reserve(tg_allow_t *a, size_t need)
{
    size_t          size;
    unsigned char  *arena;

    /* offsets are 32-bit: 4 GB of IDs is far beyond any allow-list */
    if (need > UINT32_MAX - a->arena_len) {
        return TG_ERR_NOMEM;
    }

    if (a->arena_len + need <= a->arena_size) {
        return TG_OK;
    }

    size = a->arena_size;

    while (size < a->arena_len + need) {
        size *= 2;
    }

    arena = realloc(a->arena, size);
    if (arena == NULL) {
        return TG_ERR_NOMEM;
    }

    a->arena = arena;
    a->arena_size = size;

    return TG_OK;
}


/* appends [a length byte and] the bytes, in room reserved before */
static uint32_t
tg_allow_arena_put(tg_allow_t *a, const unsigned char *p, size_t len,
    int with_len)
{
    uint32_t  off;

    off = (uint32_t) a->arena_len;

    if (with_len) {
        a->arena[a->arena_len++] = (unsigned char) len;
    }

    memcpy(a->arena + a->arena_len, p, len);
    a->arena_len += len;

    return off;
}
