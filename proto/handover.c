/* The handover record codec: see proto/handover.h. */
#include "proto/handover.h"

#include <string.h>

/* nums, strs, fds per type, indexed by enum ho_type. */
static const uint8_t shapes[HO_R_NTYPES][3] = {
    [HO_R_HELLO] = {1, 0, 0},    [HO_R_LISTEN] = {2, 1, 1}, [HO_R_LISTEN_END] = {0, 0, 0},
    [HO_R_READY] = {0, 0, 0},    [HO_R_HEAD] = {2, 2, 1},   [HO_R_GRACE] = {1, 1, 0},
    [HO_R_LISTENER] = {5, 4, 1}, [HO_R_WAITER] = {7, 4, 1}, [HO_R_PARKED] = {2, 2, 1},
    [HO_R_LINK] = {6, 2, 2},     [HO_R_END] = {0, 0, 0},
};

int ho_shape(enum ho_type t, int *nnums, int *nstrs, int *nfds)
{
    if (t < HO_R_HELLO || t >= HO_R_NTYPES)
        return -1;
    *nnums = shapes[t][0];
    *nstrs = shapes[t][1];
    *nfds = shapes[t][2];
    return 0;
}

void ho_rec_init(struct ho_rec *r, enum ho_type t)
{
    int nfds;

    memset(r, 0, sizeof(*r));
    r->type = t;
    if (ho_shape(t, &r->nnums, &r->nstrs, &nfds) < 0)
        r->nnums = r->nstrs = -1; /* encodes to nothing */
}

/* n bytes little-endian (n: 4 or 8). */
static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Whether r has its type's shape and strings within their limit. */
static int rec_valid(const struct ho_rec *r)
{
    int nn, ns, nf;

    if (ho_shape(r->type, &nn, &ns, &nf) < 0 || r->nnums != nn || r->nstrs != ns)
        return 0;
    for (int i = 0; i < ns; i++)
        if (r->str[i].len > HO_STR_MAX || (r->str[i].len && !r->str[i].p))
            return 0;
    return 1;
}

long ho_encode(const struct ho_rec *r, uint8_t *buf, size_t cap)
{
    size_t need = HO_HDR_LEN + 2 + (size_t)r->nnums * 8, off;

    if (!rec_valid(r))
        return -1;
    for (int i = 0; i < r->nstrs; i++)
        need += 4 + r->str[i].len;
    if (need > cap)
        return -1;
    put_le(buf, HO_MAGIC, 4);
    buf[4] = (uint8_t)(HO_VERSION & 0xff);
    buf[5] = (uint8_t)(HO_VERSION >> 8);
    buf[6] = (uint8_t)(r->type & 0xff);
    buf[7] = (uint8_t)((unsigned)r->type >> 8);
    put_le(buf + 8, need - HO_HDR_LEN, 4);
    off = HO_HDR_LEN;
    buf[off++] = (uint8_t)r->nnums;
    for (int i = 0; i < r->nnums; i++, off += 8)
        put_le(buf + off, (uint64_t)r->num[i], 8);
    buf[off++] = (uint8_t)r->nstrs;
    for (int i = 0; i < r->nstrs; i++) {
        put_le(buf + off, r->str[i].len, 4);
        off += 4;
        if (r->str[i].len)
            memcpy(buf + off, r->str[i].p, r->str[i].len);
        off += r->str[i].len;
    }
    return (long)off;
}

/* The header: magic, version, a known type, a body length that is the
 * rest of the message. 0 or -1. */
static int decode_header(const uint8_t *buf, size_t len, struct ho_rec *r)
{
    unsigned version, type;
    int nfds;

    if (len < HO_HDR_LEN || get_le(buf, 4) != HO_MAGIC)
        return -1;
    version = buf[4] | (unsigned)buf[5] << 8;
    type = buf[6] | (unsigned)buf[7] << 8;
    if (version != HO_VERSION || get_le(buf + 8, 4) != len - HO_HDR_LEN)
        return -1;
    memset(r, 0, sizeof(*r));
    r->type = (enum ho_type)type;
    return ho_shape(r->type, &r->nnums, &r->nstrs, &nfds);
}

int ho_decode(const uint8_t *buf, size_t len, struct ho_rec *r)
{
    size_t off = HO_HDR_LEN;

    if (decode_header(buf, len, r) < 0)
        return -1;
    if (len - off < 1 || buf[off++] != r->nnums || len - off < (size_t)r->nnums * 8)
        return -1;
    for (int i = 0; i < r->nnums; i++, off += 8)
        r->num[i] = (int64_t)get_le(buf + off, 8);
    if (len - off < 1 || buf[off++] != r->nstrs)
        return -1;
    for (int i = 0; i < r->nstrs; i++) {
        size_t n;

        if (len - off < 4)
            return -1;
        n = get_le(buf + off, 4);
        off += 4;
        if (n > HO_STR_MAX || n > len - off)
            return -1;
        r->str[i].p = (const char *)buf + off;
        r->str[i].len = n;
        off += n;
    }
    return off == len ? 0 : -1;
}
