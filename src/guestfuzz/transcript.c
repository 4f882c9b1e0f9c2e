/* SPDX-License-Identifier: MIT */
/* Transcript files: writer, reader, mutation lists (transcript.h). */
#include "guestfuzz/transcript.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The format is little-endian; vmbusd only builds for little-endian hosts
 * (x86-64 KVM), so the structs are written as they are in memory. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "transcripts are little-endian");
_Static_assert(sizeof(struct gf_rec_hdr) == 8, "record header is 8 bytes");

struct gf_tr_writer {
    FILE *f;
    pthread_mutex_t lock;
    int err;
    unsigned unflushed; /* records written since the last fflush */
};

/* Records buffered at most before a flush.  Mutations are flushed at once
 * (with everything before them): a run killed any time leaves a file that
 * replays every mutation it made, without a write per packet. */
#define FLUSH_EVERY 32

static void put_header(uint8_t out[GF_TR_HEADER_LEN], const struct gf_tr_header *h)
{
    memset(out, 0, GF_TR_HEADER_LEN);
    memcpy(out, GF_TR_MAGIC, 8);
    uint16_t v = GF_TR_VERSION, hl = GF_TR_HEADER_LEN;
    memcpy(out + 8, &v, 2);
    memcpy(out + 10, &hl, 2);
    memcpy(out + 12, &h->flags, 4);
    memcpy(out + 16, &h->seed, 8);
    memcpy(out + 24, &h->partition_id, 4);
}

static struct gf_tr_writer *create(const char *path, const struct gf_tr_header *h, bool excl)
{
    FILE *f = fopen(path, excl ? "wbxe" : "wbe");
    if (!f)
        return NULL;
    uint8_t hdr[GF_TR_HEADER_LEN];
    put_header(hdr, h);
    if (fwrite(hdr, sizeof(hdr), 1, f) != 1) {
        int e = errno;
        fclose(f);
        errno = e;
        return NULL;
    }
    struct gf_tr_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    w->f = f;
    pthread_mutex_init(&w->lock, NULL);
    return w;
}

struct gf_tr_writer *gf_tr_create(const char *path, const struct gf_tr_header *h)
{
    return create(path, h, false);
}

struct gf_tr_writer *gf_tr_create_excl(const char *path, const struct gf_tr_header *h)
{
    return create(path, h, true);
}

int gf_tr_write(struct gf_tr_writer *w, enum gf_rec_type type, const void *a, size_t alen,
                const void *b, size_t blen, const void *c, size_t clen)
{
    size_t len = alen + blen + clen;
    if (len > GF_REC_MAX_LEN)
        return -EMSGSIZE;
    struct gf_rec_hdr h = {.type = (uint8_t)type, .len = (uint32_t)len};
    pthread_mutex_lock(&w->lock);
    int ret = w->err;
    if (!ret) {
        if (fwrite(&h, sizeof(h), 1, w->f) != 1 || (alen && fwrite(a, alen, 1, w->f) != 1) ||
            (blen && fwrite(b, blen, 1, w->f) != 1) || (clen && fwrite(c, clen, 1, w->f) != 1))
            ret = w->err = -(errno ? errno : EIO);
        else if ((type == GF_REC_MUT || ++w->unflushed >= FLUSH_EVERY) && fflush(w->f) != 0)
            ret = w->err = -errno;
        else if (type == GF_REC_MUT || w->unflushed >= FLUSH_EVERY)
            w->unflushed = 0;
    }
    pthread_mutex_unlock(&w->lock);
    return ret;
}

/* Wire form of a mutation: key, gf_edit_wire, patches. */
static size_t mut_encode(const struct gf_mutation *m, uint8_t *out, size_t cap)
{
    struct gf_edit_wire e = {.op = m->op, .mutator = m->mutator, .npatch = m->npatch,
                             .new_len = m->new_len, .param = m->param};
    size_t n = 0;
    if (cap < sizeof(m->key) + sizeof(e))
        return 0;
    memcpy(out, &m->key, sizeof(m->key));
    n += sizeof(m->key);
    memcpy(out + n, &e, sizeof(e));
    n += sizeof(e);
    unsigned used = 0;
    for (unsigned i = 0; i < m->npatch && i < GF_MAX_PATCHES; i++) {
        const struct gf_patch *p = &m->patch[i];
        if (n + 4 + p->len > cap || used + p->len > GF_MAX_PATCH_BYTES)
            return 0;
        memcpy(out + n, &p->off, 2);
        memcpy(out + n + 2, &p->len, 2);
        memcpy(out + n + 4, m->bytes + used, p->len);
        n += 4u + p->len;
        used += p->len;
    }
    return n;
}

/* Parse the wire form; false when it is inconsistent. */
bool gf_tr_decode_mut(const uint8_t *in, size_t len, struct gf_mutation *m)
{
    struct gf_edit_wire e;
    memset(m, 0, sizeof(*m));
    if (len < sizeof(m->key) + sizeof(e))
        return false;
    memcpy(&m->key, in, sizeof(m->key));
    memcpy(&e, in + sizeof(m->key), sizeof(e));
    if (e.op >= GF_OP_COUNT || e.npatch > GF_MAX_PATCHES)
        return false;
    m->op = e.op;
    m->mutator = e.mutator;
    m->new_len = e.new_len;
    m->param = e.param;
    size_t n = sizeof(m->key) + sizeof(e);
    for (unsigned i = 0; i < e.npatch; i++) {
        uint16_t off, l;
        if (n + 4 > len)
            return false;
        memcpy(&off, in + n, 2);
        memcpy(&l, in + n + 2, 2);
        if (n + 4 + l > len || !gf_mut_add_patch(m, off, in + n + 4, l))
            return false;
        n += 4u + l;
    }
    return n == len;
}

int gf_tr_write_mut(struct gf_tr_writer *w, const struct gf_mutation *m)
{
    uint8_t buf[sizeof(struct gf_key) + sizeof(struct gf_edit_wire) + 4 * GF_MAX_PATCHES +
                GF_MAX_PATCH_BYTES];
    size_t n = mut_encode(m, buf, sizeof(buf));
    if (!n)
        return -EINVAL;
    return gf_tr_write(w, GF_REC_MUT, buf, n, NULL, 0, NULL, 0);
}

int gf_tr_close(struct gf_tr_writer *w)
{
    if (!w)
        return 0;
    int ret = w->err;
    if (fclose(w->f) != 0 && !ret)
        ret = -errno;
    pthread_mutex_destroy(&w->lock);
    free(w);
    return ret;
}

/* ------------------------------------------------------------------ */

struct gf_tr_reader {
    FILE *f;
    uint8_t *buf;
    size_t cap;
};

struct gf_tr_reader *gf_tr_open(const char *path, struct gf_tr_header *h)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL;
    uint8_t hdr[GF_TR_HEADER_LEN];
    uint16_t ver, hl;
    if (fread(hdr, sizeof(hdr), 1, f) != 1 || memcmp(hdr, GF_TR_MAGIC, 8) != 0)
        goto bad;
    memcpy(&ver, hdr + 8, 2);
    memcpy(&hl, hdr + 10, 2);
    if (ver != GF_TR_VERSION || hl < GF_TR_HEADER_LEN)
        goto bad;
    if (hl > GF_TR_HEADER_LEN && fseek(f, hl, SEEK_SET) != 0)
        goto bad;
    if (h) {
        memcpy(&h->flags, hdr + 12, 4);
        memcpy(&h->seed, hdr + 16, 8);
        memcpy(&h->partition_id, hdr + 24, 4);
    }
    struct gf_tr_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    r->f = f;
    return r;
bad:
    fclose(f);
    errno = EINVAL;
    return NULL;
}

int gf_tr_next(struct gf_tr_reader *r, struct gf_tr_record *rec)
{
    struct gf_rec_hdr h;
    if (fread(&h, sizeof(h), 1, r->f) != 1)
        return 0;
    if (h.len > GF_REC_MAX_LEN || h.type < GF_REC_VM || h.type > GF_REC_NOTE)
        return -EINVAL;
    if (h.len + 1 > r->cap) {
        uint8_t *nb = realloc(r->buf, h.len + 1);
        if (!nb)
            return -ENOMEM;
        r->buf = nb;
        r->cap = h.len + 1;
    }
    if (h.len && fread(r->buf, h.len, 1, r->f) != 1)
        return 0; /* truncated tail: the run was killed mid-record */
    r->buf[h.len] = 0;
    rec->type = h.type;
    rec->len = h.len;
    rec->data = r->buf;
    return 1;
}

void gf_tr_close_reader(struct gf_tr_reader *r)
{
    if (!r)
        return;
    fclose(r->f);
    free(r->buf);
    free(r);
}

int gf_tr_load_mutations(const char *path, struct gf_tr_header *h, struct gf_mutation **out)
{
    *out = NULL;
    struct gf_tr_reader *r = gf_tr_open(path, h);
    if (!r)
        return -errno;
    struct gf_mutation *v = NULL;
    size_t n = 0, cap = 0;
    struct gf_tr_record rec;
    int ret;
    while ((ret = gf_tr_next(r, &rec)) == 1) {
        if (rec.type != GF_REC_MUT)
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            struct gf_mutation *nv = realloc(v, nc * sizeof(*v));
            if (!nv) {
                ret = -ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!gf_tr_decode_mut(rec.data, rec.len, &v[n])) {
            ret = -EINVAL;
            break;
        }
        n++;
    }
    gf_tr_close_reader(r);
    if (ret < 0) {
        free(v);
        return ret;
    }
    *out = v;
    return (int)n;
}

int gf_tr_save_mutations(const char *path, const struct gf_tr_header *h,
                         const struct gf_mutation *m, size_t n)
{
    struct gf_tr_writer *w = gf_tr_create(path, h);
    if (!w)
        return -errno;
    char note[96];
    int l = snprintf(note, sizeof(note), "%zu mutations (seed 0x%016llx)", n,
                     (unsigned long long)h->seed);
    int ret = gf_tr_write(w, GF_REC_NOTE, note, (size_t)l, NULL, 0, NULL, 0);
    for (size_t i = 0; i < n && ret == 0; i++)
        ret = gf_tr_write_mut(w, &m[i]);
    int cret = gf_tr_close(w);
    return ret ? ret : cret;
}
