/* tls-speed: what AEAD and TLS cost here, one core.
 *
 *   tls-speed aead [--runs N] [--secs S] [--rec B]
 *       16 KiB records (or B bytes) sealed by wolfSSL's software, by wolfSSL through the
 *       aead_accel device, and by libcrypto alone: AES-128-GCM, AES-256-GCM,
 *       ChaCha20-Poly1305. MB/s of CPU time (1 MB = 10^6 bytes).
 *   tls-speed tls [--runs N] [--mib M] [--cpu C]
 *       a TLS 1.3 and a TLS 1.2 connection over TCP loopback, wolfSSL both
 *       ends, moving M MiB (default 1024) client -> server with each cipher,
 *       with and without the device; both threads pinned to CPU C (default
 *       0). Wall MB/s and MB per CPU-second of each end. --dev 0|1 keeps
 *       only the configurations without / with the device.
 *
 * Each figure is the median of N runs (default 5). Certificates (EC P-256)
 * are made with the openssl CLI in a temporary directory, removed at exit. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include <openssl/evp.h>

#include "tls/aead_accel.h"
#include "tls/tls_ctx.h"

#define REC 16384  /* TLS record payload */
#define AAD_LEN 13 /* TLS 1.2 style additional data */
#define MAX_RUNS 15
#define POLL_MS 10000 /* a stalled transfer gives up */

enum impl { IMPL_WOLF, IMPL_DEV, IMPL_OSSL, IMPL_N };
enum aead { AEAD_A128, AEAD_A256, AEAD_CHACHA, AEAD_N };

static const char *const impl_name[IMPL_N] = {"wolfSSL software", "wolfSSL + aead_accel",
                                              "libcrypto alone"};
static const char *const aead_name[AEAD_N] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};

static int opt_runs = 5, opt_cpu = 0;
static double opt_secs = 0.4;
static size_t opt_mib = 1024;
static int opt_rec = REC; /* --rec: AEAD record size, 1..REC */
static int opt_dev = -1;  /* --dev 0|1: only configurations without/with the device */
static char certdir[64];

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        fprintf(stderr, "tls-speed: cannot pin to CPU %d (%s); unpinned\n", cpu, strerror(errno));
}

/* ------------------------------------------------------------- AEAD */

struct rec {
    unsigned char key[32], iv[12], aad[AAD_LEN], tag[16];
    unsigned char in[REC], out[REC];
};

/* One sealed record; nonzero on failure. */
static int seal_wolf(Aes *aes, enum aead a, struct rec *r)
{
    if (a == AEAD_CHACHA)
        return wc_ChaCha20Poly1305_Encrypt(r->key, r->iv, r->aad, AAD_LEN, r->in, (word32)opt_rec,
                                           r->out, r->tag);
    return wc_AesGcmEncrypt(aes, r->out, r->in, (word32)opt_rec, r->iv, 12, r->tag, 16, r->aad,
                            AAD_LEN);
}

static int seal_ossl(EVP_CIPHER_CTX *x, struct rec *r)
{
    int n;

    return EVP_EncryptInit_ex(x, NULL, NULL, NULL, r->iv) != 1 ||
           EVP_EncryptUpdate(x, NULL, &n, r->aad, AAD_LEN) != 1 ||
           EVP_EncryptUpdate(x, r->out, &n, r->in, opt_rec) != 1 ||
           EVP_EncryptFinal_ex(x, r->out + n, &n) != 1 ||
           EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, r->tag) != 1;
}

static const EVP_CIPHER *ossl_cipher(enum aead a)
{
    return a == AEAD_A128   ? EVP_aes_128_gcm()
           : a == AEAD_A256 ? EVP_aes_256_gcm()
                            : EVP_chacha20_poly1305();
}

/* MB/s of CPU time for one implementation; -1 when it does not apply. */
static double aead_run(enum impl im, enum aead a, struct rec *r)
{
    EVP_CIPHER_CTX *x;
    Aes aes;
    double t0, t1, bytes = 0;
    int bad = 0;

    if (im == IMPL_DEV && a == AEAD_CHACHA)
        return -1; /* wolfSSL 5.5.4's callbacks have no ChaCha20-Poly1305 */
    if (!(x = EVP_CIPHER_CTX_new()))
        return -2;
    wc_AesInit(&aes, NULL, im == IMPL_DEV ? AEAD_ACCEL_DEVID : INVALID_DEVID);
    wc_AesGcmSetKey(&aes, r->key, a == AEAD_A128 ? 16 : 32);
    EVP_EncryptInit_ex(x, ossl_cipher(a), NULL, r->key, NULL);
    t0 = t1 = cpu_now();
    while (!bad && t1 - t0 < opt_secs) {
        for (int i = 0; i < 16; i++, bytes += opt_rec) {
            r->iv[11]++;
            bad |= im == IMPL_OSSL ? seal_ossl(x, r) : seal_wolf(&aes, a, r);
        }
        t1 = cpu_now();
    }
    wc_AesFree(&aes);
    EVP_CIPHER_CTX_free(x);
    return bad ? -2 : bytes / (t1 - t0) / 1e6;
}

static int cmd_aead(void)
{
    struct rec *r = calloc(1, sizeof(*r));
    double v[MAX_RUNS] = {0};

    if (!r)
        return 1;
    pin(opt_cpu);
    printf("| AEAD, %d-byte records, MB/s (CPU) | %s | %s | %s |\n| --- | ---: | ---: | ---: |\n",
           opt_rec, impl_name[0], impl_name[1], impl_name[2]);
    for (int a = 0; a < AEAD_N; a++) {
        printf("| %s |", aead_name[a]);
        for (int im = 0; im < IMPL_N; im++) {
            for (int k = 0; k < opt_runs; k++)
                v[k] = aead_run((enum impl)im, (enum aead)a, r);
            double m = median(v, opt_runs);
            if (m == -1)
                printf(" n/a (no callback) |");
            else if (m < 0)
                printf(" FAILED |");
            else
                printf(" %.0f |", m);
            fflush(stdout);
        }
        printf("\n");
    }
    free(r);
    return 0;
}

/* ------------------------------------------------------------- TLS */

static int make_certs(void)
{
    FILE *f;

    strcpy(certdir, "/tmp/tls-speed-XXXXXX");
    if (!mkdtemp(certdir) || !(f = popen("sh -s", "w")))
        return -1;
    fprintf(f,
            "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            "-keyout k.pem -out c.pem -subj /CN=localhost -addext "
            "subjectAltName=DNS:localhost -days 1 >log 2>&1 && chmod 600 k.pem\n",
            certdir);
    return pclose(f) == 0 ? 0 : -1;
}

static void rm_certs(void)
{
    char cmd[128];

    if (!certdir[0])
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certdir);
    if (system(cmd) != 0)
        fprintf(stderr, "tls-speed: could not remove %s\n", certdir);
}

struct end {
    struct tls_conn *c;
    bool send;
    size_t bytes;
    double cpu;
    int rc;
};

static int wait_fd(int fd, unsigned want)
{
    struct pollfd p = {
        fd, (short)((want & TLS_WANT_IN ? POLLIN : 0) | (want & TLS_WANT_OUT ? POLLOUT : 0)), 0};
    return poll(&p, 1, POLL_MS) == 1 ? 0 : -ETIMEDOUT;
}

static int handshake(struct tls_conn *c)
{
    unsigned w = 0;
    int rc;

    while ((rc = tls_conn_handshake(c, &w)) == -EAGAIN)
        if (wait_fd(tls_conn_fd(c), w))
            return -ETIMEDOUT;
    if (rc)
        fprintf(stderr, "tls-speed: handshake: %s\n", tls_conn_reason(c));
    return rc;
}

/* One end's thread: handshake, then write (e->send) or read opt_mib MiB
 * in 16 KiB calls, timing its own CPU. */
static void *transfer(void *arg)
{
    struct end *e = arg;
    unsigned char *buf = calloc(1, REC);
    unsigned w = 0;
    double t0;

    if (!buf || (e->rc = handshake(e->c)) != 0)
        goto out;
    t0 = cpu_now();
    while (e->bytes < opt_mib << 20) {
        ssize_t n =
            e->send ? tls_conn_write(e->c, buf, REC, &w) : tls_conn_read(e->c, buf, REC, &w);
        if (n == -EAGAIN && wait_fd(tls_conn_fd(e->c), w) == 0)
            continue;
        if (n <= 0) {
            e->rc = n ? (int)n : -EPIPE;
            break;
        }
        e->bytes += (size_t)n;
    }
    e->cpu = cpu_now() - t0;
out:
    free(buf);
    return NULL;
}

static void *pinned(void *arg)
{
    pin(opt_cpu);
    return transfer(arg);
}

/* A connected, non-blocking TCP pair on loopback: fd[0] accepted, fd[1]. */
static int tcp_pair(int fd[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1, rc = -1;

    if (l == -1 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        goto out;
    fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd[1] == -1 || (connect(fd[1], (struct sockaddr *)&a, len) && errno != EINPROGRESS))
        goto out;
    if ((fd[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK)) == -1)
        goto out;
    setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rc = 0;
out:
    if (l != -1)
        close(l);
    return rc;
}

struct tls_fig {
    double wall, snd_cpu, rcv_cpu; /* MB/s */
};

static int tls_once(struct tls_server *s, struct tls_client *c, struct tls_fig *f)
{
    struct end snd = {.send = true}, rcv = {.send = false};
    pthread_t ts, tr;
    int fd[2] = {-1, -1};
    double t0;

    if (tcp_pair(fd) || tls_conn_server(s, fd[0], &rcv.c) ||
        tls_conn_client(c, fd[1], "localhost", &snd.c))
        return -1;
    t0 = mono();
    pthread_create(&tr, NULL, pinned, &rcv);
    pthread_create(&ts, NULL, pinned, &snd);
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    f->wall = (double)rcv.bytes / (mono() - t0) / 1e6;
    f->snd_cpu = (double)snd.bytes / snd.cpu / 1e6;
    f->rcv_cpu = (double)rcv.bytes / rcv.cpu / 1e6;
    tls_conn_free(snd.c);
    tls_conn_free(rcv.c);
    close(fd[0]);
    close(fd[1]);
    return snd.rc || rcv.rc ? -1 : 0;
}

static const char *const suite13[AEAD_N] = {"TLS13-AES128-GCM-SHA256", "TLS13-AES256-GCM-SHA384",
                                            "TLS13-CHACHA20-POLY1305-SHA256"};
static const char *const suite12[AEAD_N] = {"ECDHE-ECDSA-AES128-GCM-SHA256",
                                            "ECDHE-ECDSA-AES256-GCM-SHA384",
                                            "ECDHE-ECDSA-CHACHA20-POLY1305"};

static int tls_config(int ver, enum aead a, bool dev, struct tls_fig *med)
{
    char kp[96], cp[96], err[TLS_ERR_MAX];
    struct tls_pair pair = {cp, kp};
    const char *suite = ver == TLS_V13 ? suite13[a] : suite12[a];
    struct tls_server_conf sc = {&pair, 1, ver, ver, suite, dev, false};
    struct tls_client_conf cc = {cp, ver, ver, suite, dev};
    struct tls_server *s;
    struct tls_client *c;
    double w[MAX_RUNS] = {0}, sc_[MAX_RUNS] = {0}, rc_[MAX_RUNS] = {0};
    struct tls_fig f = {0};
    int rc = 0;

    snprintf(kp, sizeof(kp), "%s/k.pem", certdir);
    snprintf(cp, sizeof(cp), "%s/c.pem", certdir);
    if (tls_server_new(&sc, &s, err, sizeof(err)) || tls_client_new(&cc, &c, err, sizeof(err))) {
        fprintf(stderr, "tls-speed: %s\n", err);
        return -1;
    }
    for (int k = 0; k < opt_runs && rc == 0; k++) {
        rc = tls_once(s, c, &f);
        w[k] = f.wall, sc_[k] = f.snd_cpu, rc_[k] = f.rcv_cpu;
    }
    med->wall = median(w, opt_runs);
    med->snd_cpu = median(sc_, opt_runs);
    med->rcv_cpu = median(rc_, opt_runs);
    tls_client_unref(c);
    tls_server_unref(s);
    return rc;
}

static int cmd_tls(void)
{
    static const int vers[2] = {TLS_V13, TLS_V12};

    if (make_certs()) {
        fprintf(stderr, "tls-speed: openssl could not make a certificate\n");
        return 1;
    }
    printf("| TLS over loopback, %zu MiB, MB/s | device | wall | sender CPU | receiver CPU |\n"
           "| --- | --- | ---: | ---: | ---: |\n",
           opt_mib);
    for (int v = 0; v < 2; v++)
        for (int a = 0; a < AEAD_N; a++)
            for (int dev = 0; dev < 2; dev++) {
                struct tls_fig f;
                if ((dev && a == AEAD_CHACHA) || (opt_dev >= 0 && dev != opt_dev))
                    continue; /* the device does not take ChaCha */
                if (tls_config(vers[v], (enum aead)a, dev, &f)) {
                    printf("| TLS 1.%d %s | %s | FAILED | | |\n", vers[v] - 10, aead_name[a],
                           dev ? "yes" : "no");
                    continue;
                }
                printf("| TLS 1.%d %s | %s | %.0f | %.0f | %.0f |\n", vers[v] - 10, aead_name[a],
                       dev ? "yes" : "no", f.wall, f.snd_cpu, f.rcv_cpu);
                fflush(stdout);
            }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: tls-speed aead|tls [--runs N] [--secs S] [--mib M] [--cpu C] [--dev "
                    "0|1] [--rec B]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int rc;

    if (argc < 2)
        return usage();
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--runs"))
            opt_runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--secs"))
            opt_secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--mib"))
            opt_mib = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--rec"))
            opt_rec = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dev"))
            opt_dev = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cpu"))
            opt_cpu = atoi(argv[i + 1]);
        else
            return usage();
    }
    if (opt_runs < 1 || opt_runs > MAX_RUNS || opt_secs <= 0 || opt_mib < 1 || opt_rec < 1 ||
        opt_rec > REC)
        return usage();
    if (aead_accel_register() != 0 || !aead_accel_cpu_ok())
        fprintf(stderr, "tls-speed: the AES-GCM device is not available here\n");
    if (!strcmp(argv[1], "aead"))
        return cmd_aead();
    if (strcmp(argv[1], "tls") != 0)
        return usage();
    rc = cmd_tls();
    rm_certs();
    return rc;
}
