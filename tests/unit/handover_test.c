/* proto/handover.c: the upgrade's record codec. Round trips of every type,
 * every truncation and every bad count or length refused, input against a
 * guard page; and engine/upgrade.c's channel: a record and its fds across a
 * real SEQPACKET socketpair, wrong fd counts refused with the fds closed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/upgrade.h"
#include "guard.h"
#include "proto/handover.h"

/* The decoded strings point into the guarded copy: it lives until the
 * next decode (or the end of the test process). */
static struct guard g;

static int decode(const uint8_t *buf, size_t len, struct ho_rec *r)
{
    guard_free(&g);
    return ho_decode((const uint8_t *)guard_put(&g, buf, len), len, r);
}

/* A WAITER record with every field set. */
static void waiter(struct ho_rec *r)
{
    ho_rec_init(r, HO_R_WAITER);
    for (int i = 0; i < r->nnums; i++)
        r->num[i] = (int64_t)0x0102030405060708LL * (i + 1) - i;
    r->num[HO_W_DEADLINE] = -1;
    r->str[HO_W_PATH] = (struct ho_str){"/a/b", 4};
    r->str[HO_W_ID] = (struct ho_str){"abc", 3};
    r->str[HO_W_PEER] = (struct ho_str){"127.0.0.1:5", 11};
    r->str[HO_W_EARLY] = (struct ho_str){NULL, 0};
}

Test(handover, round_trip_every_type)
{
    static uint8_t buf[HO_REC_MAX];

    for (int t = HO_R_HELLO; t < HO_R_NTYPES; t++) {
        struct ho_rec r, d;
        long n;

        ho_rec_init(&r, (enum ho_type)t);
        for (int i = 0; i < r.nnums; i++)
            r.num[i] = -1000 * t - i;
        for (int i = 0; i < r.nstrs; i++)
            r.str[i] = (struct ho_str){"xyz", (size_t)i};
        n = ho_encode(&r, buf, sizeof(buf));
        cr_assert_gt(n, HO_HDR_LEN, "type %d", t);
        cr_assert_eq(decode(buf, (size_t)n, &d), 0, "type %d", t);
        cr_assert_eq((int)d.type, t);
        cr_assert_eq(d.nnums, r.nnums);
        cr_assert_eq(d.nstrs, r.nstrs);
        for (int i = 0; i < r.nnums; i++)
            cr_assert_eq(d.num[i], r.num[i]);
        for (int i = 0; i < r.nstrs; i++)
            cr_assert(d.str[i].len == r.str[i].len && !memcmp(d.str[i].p, "xyz", d.str[i].len));
    }
}

Test(handover, every_truncation_and_extension_refused)
{
    uint8_t buf[512];
    struct ho_rec r, d;
    long n;

    waiter(&r);
    n = ho_encode(&r, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    for (long k = 0; k < n; k++)
        cr_assert_eq(decode(buf, (size_t)k, &d), -1, "prefix of %ld bytes", k);
    buf[n] = 0;
    cr_assert_eq(decode(buf, (size_t)n + 1, &d), -1, "a trailing byte");
    cr_assert_eq(decode(buf, (size_t)n, &d), 0);
    cr_assert_eq(d.num[HO_W_DEADLINE], -1);
    cr_assert(d.str[HO_W_ID].len == 3 && !memcmp(d.str[HO_W_ID].p, "abc", 3));
}

Test(handover, header_checked)
{
    uint8_t buf[512], bad[512];
    struct ho_rec r, d;
    long n;

    waiter(&r);
    n = ho_encode(&r, buf, sizeof(buf));
    /* magic, version, type (unknown, or another shape), body length */
    for (size_t i = 0; i < HO_HDR_LEN; i++) {
        memcpy(bad, buf, (size_t)n);
        bad[i] ^= 0x40;
        cr_assert_eq(decode(bad, (size_t)n, &d), -1, "header byte %zu", i);
    }
    memcpy(bad, buf, (size_t)n);
    bad[6] = HO_R_LINK; /* a valid type with another shape */
    cr_assert_eq(decode(bad, (size_t)n, &d), -1);
    memcpy(bad, buf, (size_t)n);
    bad[6] = 0;
    cr_assert_eq(decode(bad, (size_t)n, &d), -1, "type 0");
}

Test(handover, counts_and_lengths_checked)
{
    uint8_t buf[512], bad[512];
    struct ho_rec r, d;
    size_t strs = HO_HDR_LEN + 1 + 7 * 8; /* the byte holding nstrs */
    long n;

    waiter(&r);
    n = ho_encode(&r, buf, sizeof(buf));
    memcpy(bad, buf, (size_t)n);
    bad[HO_HDR_LEN] = 6; /* nnums */
    cr_assert_eq(decode(bad, (size_t)n, &d), -1);
    memcpy(bad, buf, (size_t)n);
    bad[strs] = 3;
    cr_assert_eq(decode(bad, (size_t)n, &d), -1);
    memcpy(bad, buf, (size_t)n);
    bad[strs + 1] = 5; /* the path's length: past its bytes, off by one */
    cr_assert_eq(decode(bad, (size_t)n, &d), -1);
    memcpy(bad, buf, (size_t)n);
    bad[strs + 4] = 0xff; /* the path's length: 4 GiB */
    cr_assert_eq(decode(bad, (size_t)n, &d), -1);
}

Test(handover, encode_refuses_bad_records)
{
    uint8_t buf[64];
    static uint8_t big[HO_REC_MAX];
    static char s[HO_STR_MAX + 1];
    struct ho_rec r;

    waiter(&r);
    cr_assert_eq(ho_encode(&r, buf, sizeof(buf)), -1, "does not fit");
    r.nstrs = 3;
    cr_assert_eq(ho_encode(&r, big, sizeof(big)), -1, "wrong shape");
    waiter(&r);
    r.str[HO_W_EARLY] = (struct ho_str){s, sizeof(s)};
    cr_assert_eq(ho_encode(&r, big, sizeof(big)), -1, "string over HO_STR_MAX");
    r.str[HO_W_EARLY] = (struct ho_str){NULL, 3};
    cr_assert_eq(ho_encode(&r, big, sizeof(big)), -1, "no bytes");
    ho_rec_init(&r, (enum ho_type)HO_R_NTYPES);
    cr_assert_eq(ho_encode(&r, big, sizeof(big)), -1, "unknown type");
    r.str[HO_W_EARLY].len = HO_STR_MAX;
    waiter(&r);
    r.str[HO_W_EARLY] = (struct ho_str){s, HO_STR_MAX};
    cr_assert_gt(ho_encode(&r, big, sizeof(big)), HO_STR_MAX, "the largest string fits");
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

Test(handover, channel_carries_records_and_fds)
{
    static uint8_t buf[HO_REC_MAX];
    int sv[2], p[2], fds[HO_FDS_MAX];
    struct ho_rec r, d;

    cr_assert_eq(upg_channel(sv, 1), 0);
    cr_assert_eq(pipe(p), 0);
    ho_rec_init(&r, HO_R_LINK);
    r.num[HO_LK_BYTES1] = 42;
    r.str[HO_LK_PATH] = (struct ho_str){"/p", 2};
    r.str[HO_LK_PEER] = (struct ho_str){"x", 1};
    cr_assert_eq(upg_send(sv[0], &r, p, 2), 0);
    cr_assert_gt(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 0), 0);
    cr_assert_eq(d.type, HO_R_LINK);
    cr_assert_eq(d.num[HO_LK_BYTES1], 42);
    cr_assert(write(p[1], "z", 1) == 1);
    char c = 0;
    cr_assert(read(fds[0], &c, 1) == 1 && c == 'z', "the received fd is the pipe");
    cr_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    close(fds[0]);
    close(fds[1]);
    /* A LINK with one fd: refused, and the fd that came is closed. */
    cr_assert_eq(upg_send(sv[0], &r, p, 1), 0);
    cr_assert_eq(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 0), -EPROTO);
    cr_assert_eq(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 1), -EAGAIN);
    cr_assert_eq(upg_send_type(sv[0], HO_R_END), 0);
    cr_assert_gt(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 0), 0);
    cr_assert_eq(d.type, HO_R_END);
    close(sv[0]);
    cr_assert_eq(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 0), -EPIPE);
    cr_assert(fd_open(p[0]) && fd_open(p[1]));
    close(sv[1]);
    close(p[0]);
    close(p[1]);
}

Test(handover, receive_is_bounded)
{
    uint8_t buf[64];
    int sv[2], fds[HO_FDS_MAX];
    struct ho_rec d;

    cr_assert_eq(upg_channel(sv, 1), 0);
    cr_assert_eq(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 0), -ETIMEDOUT);
    cr_assert(send(sv[0], "garbage", 7, 0) == 7);
    cr_assert_eq(upg_recv(sv[1], buf, sizeof(buf), &d, fds, 0), -EPROTO);
    close(sv[0]);
    close(sv[1]);
}
