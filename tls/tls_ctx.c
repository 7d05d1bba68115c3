/* Server and client contexts: building, reference counting, SNI choice. */
#include "tls/tls_ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/tls_int.h"
#include "tls/tls_keycheck.h"
#include "proto/errbuf.h"

#include <wolfssl/wolfcrypt/ecc.h>

#define KEY_FILE_TOO_OPEN (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result = -EIO;
static pthread_key_t thread_key;
static _Thread_local bool thread_marked;

/* wolfSSL's FP_ECC keeps a fixed-point cache per thread (megabytes once a
 * thread has run handshakes), freed only by wc_ecc_fp_free() on that
 * thread: a thread-exit destructor does it. */
static void thread_exit(void *unused)
{
    (void)unused;
    wc_ecc_fp_free();
}

static void do_init(void)
{
    if (wolfSSL_Init() != WOLFSSL_SUCCESS || pthread_key_create(&thread_key, thread_exit) != 0)
        return;
    init_result = 0;
}

int tls_global_init(void)
{
    if (pthread_once(&init_once, do_init) != 0)
        return -EAGAIN;
    return init_result;
}

void tls_thread_mark(void)
{
    if (!thread_marked && init_result == 0) {
        thread_marked = pthread_setspecific(thread_key, &thread_marked) == 0;
    }
}

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    errbuf_vset(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Read a private key file into buf (wiped by the caller), refusing one that
 * group or others may read or write, or that is not a regular file. The
 * mode is checked on the descriptor that is read (no race). */
static int read_key_file(const char *path, unsigned char *buf, size_t cap, size_t *len, char *err,
                         size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), rc = 0;
    ssize_t n;

    if (fd == -1)
        return set_err(err, errlen, -errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        rc = set_err(err, errlen, -EINVAL, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_mode & KEY_FILE_TOO_OPEN) {
        rc = set_err(err, errlen, -EPERM, "%s: mode %04o lets group or others at it; use 0600",
                     path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (st.st_size < 0 || (size_t)st.st_size >= cap) {
        rc = set_err(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, cap);
        goto out;
    }
    do
        n = read(fd, buf, cap);
    while (n == -1 && errno == EINTR);
    if (n == -1)
        rc = set_err(err, errlen, -errno, "%s: %s", path, strerror(errno));
    else
        *len = (size_t)n;
out:
    close(fd);
    return rc;
}

static int load_key(WOLFSSL_CTX *ctx, const char *path, const char *cert, char *err, size_t errlen)
{
    unsigned char *buf = malloc(TLS_KEY_FILE_MAX);
    size_t len = 0;
    int rc, m = 0;

    if (!buf)
        return set_err(err, errlen, -ENOMEM, "out of memory");
    rc = read_key_file(path, buf, TLS_KEY_FILE_MAX, &len, err, errlen);
    if (rc == 0 && wolfSSL_CTX_use_PrivateKey_buffer(ctx, buf, (long)len, WOLFSSL_FILETYPE_PEM) !=
                       WOLFSSL_SUCCESS)
        rc = set_err(err, errlen, -EINVAL, "%s: not a usable PEM private key", path);
    if (rc == 0)
        m = tls_key_matches(cert, buf, len);
    if (rc == 0 && m == -ENOTSUP)
        rc = set_err(err, errlen, -ENOTSUP,
                     "cannot check %s against %s: OpenSSL 3's libcrypto not found", path, cert);
    else if (rc == 0 && m != 1)
        rc = set_err(err, errlen, -EINVAL, "%s does not match %s", path, cert);
    explicit_bzero(buf, TLS_KEY_FILE_MAX);
    free(buf);
    return rc;
}

/* The wolfSSL method for a version range: fixed when min == max, else
 * the negotiating one (the floor is set by ctx_common). NULL if invalid. */
static WOLFSSL_METHOD *method_for(bool server, int min_version, int max_version)
{
    int lo = min_version ? min_version : TLS_V12, hi = max_version ? max_version : TLS_V13;

    if ((lo != TLS_V12 && lo != TLS_V13) || (hi != TLS_V12 && hi != TLS_V13) || lo > hi)
        return NULL;
    if (hi == TLS_V12)
        return server ? wolfTLSv1_2_server_method() : wolfTLSv1_2_client_method();
    if (lo == TLS_V13)
        return server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method();
    return server ? wolfSSLv23_server_method() : wolfSSLv23_client_method();
}

static WOLFSSL_CTX *ctx_new(bool server, int min_version, int max_version, char *err, size_t errlen)
{
    WOLFSSL_METHOD *m = method_for(server, min_version, max_version);
    WOLFSSL_CTX *ctx = m ? wolfSSL_CTX_new(m) : NULL;

    if (!m)
        set_err(err, errlen, -EINVAL, "TLS versions must be 1.2 or 1.3, minimum <= maximum");
    else if (!ctx)
        set_err(err, errlen, -ENOMEM, "out of memory");
    return ctx;
}

/* Key exchange groups, preferred first: X25519 (wolfSSL's curve25519 code
 * is ~Nx faster here than its generic-math P-256, see bench/NOTES.md "TLS"),
 * then the NIST curves. A client sends its key share for the first. */
#define TLS_NGROUPS 3
static const int tls_groups[TLS_NGROUPS] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1,
                                            WOLFSSL_ECC_SECP384R1};

/* What servers and clients share: version floor, ciphers, sockets, device. */
static int ctx_common(WOLFSSL_CTX *ctx, int min_version, const char *ciphers, bool accel, char *err,
                      size_t errlen)
{
    int v = min_version == 0 ? TLS_V12 : min_version;

    if (v != TLS_V12 && v != TLS_V13)
        return set_err(err, errlen, -EINVAL, "minimum TLS version must be 1.2 or 1.3");
    if (wolfSSL_CTX_SetMinVersion(ctx, v == TLS_V13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2) !=
        WOLFSSL_SUCCESS)
        return set_err(err, errlen, -EINVAL, "cannot set the minimum TLS version");
    if (wolfSSL_CTX_set_cipher_list(ctx, ciphers ? ciphers : TLS_DEFAULT_CIPHERS) !=
        WOLFSSL_SUCCESS)
        return set_err(err, errlen, -EINVAL, "cipher list not understood: %s",
                       ciphers ? ciphers : TLS_DEFAULT_CIPHERS);
    /* TLS 1.3 key shares; refused (and not needed) by a TLS 1.2-only context */
    (void)wolfSSL_CTX_set_groups(ctx, (int *)tls_groups, TLS_NGROUPS);
    wolfSSL_CTX_SetIORecv(ctx, tls_io_recv);
    wolfSSL_CTX_SetIOSend(ctx, tls_io_send);
    if (accel && aead_accel_cpu_ok() && aead_accel_register() == 0 &&
        wolfSSL_CTX_SetDevId(ctx, AEAD_ACCEL_DEVID) != WOLFSSL_SUCCESS)
        return set_err(err, errlen, -EINVAL, "cannot attach the AES-GCM device");
    return 0;
}

static bool method_allows13(const struct tls_server_conf *conf)
{
    return conf->max_version != TLS_V12;
}

static int pair_load(struct tls_server *s, size_t i, const struct tls_server_conf *conf, char *err,
                     size_t errlen)
{
    const struct tls_pair *p = &conf->pairs[i];
    WOLFSSL_CTX *ctx = ctx_new(true, conf->min_version, conf->max_version, err, errlen);
    int rc;

    if (!ctx)
        return -EINVAL;
    s->ctx[i] = ctx;
    rc = ctx_common(ctx, conf->min_version, conf->ciphers, conf->accel, err, errlen);
    if (rc)
        return rc;
    if (!p->cert_file || !p->key_file)
        return set_err(err, errlen, -EINVAL, "certificate pair %zu lacks a file", i);
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, p->cert_file) != WOLFSSL_SUCCESS)
        return set_err(err, errlen, access(p->cert_file, R_OK) ? -ENOENT : -EINVAL,
                       "%s: no usable PEM certificate chain", p->cert_file);
    if ((rc = load_key(ctx, p->key_file, p->cert_file, err, errlen)) != 0)
        return rc;
    s->leaf[i] = wolfSSL_X509_load_certificate_file(p->cert_file, WOLFSSL_FILETYPE_PEM);
    if (!s->leaf[i])
        return set_err(err, errlen, -EINVAL, "%s: cannot read the leaf certificate", p->cert_file);
    if (conf->no_tickets) {
        if (wolfSSL_CTX_NoTicketTLSv12(ctx) != WOLFSSL_SUCCESS ||
            (method_allows13(conf) && wolfSSL_CTX_no_ticket_TLSv13(ctx) != 0)) /* 0: done */
            return set_err(err, errlen, -EINVAL, "cannot disable session tickets");
        return 0;
    }
    if (wolfSSL_CTX_set_TicketEncCb(ctx, tls_ticket_cb) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketHint(ctx, TLS_TICKET_ROTATE_SEC) != WOLFSSL_SUCCESS)
        return set_err(err, errlen, -EINVAL, "cannot enable session tickets");
    return 0;
}

static void server_free(struct tls_server *s)
{
    for (size_t i = 0; i < TLS_MAX_PAIRS; i++) {
        if (s->ctx[i])
            wolfSSL_CTX_free(s->ctx[i]);
        if (s->leaf[i])
            wolfSSL_X509_free(s->leaf[i]);
    }
    free(s);
}

int tls_server_new(const struct tls_server_conf *conf, struct tls_server **out, char *err,
                   size_t errlen)
{
    struct tls_server *s;
    int rc;

    *out = NULL;
    if ((rc = tls_global_init()) != 0)
        return set_err(err, errlen, rc, "wolfSSL failed to start");
    if (conf->n_pairs == 0 || conf->n_pairs > TLS_MAX_PAIRS)
        return set_err(err, errlen, -EINVAL, "1 to %d certificate/key pairs", TLS_MAX_PAIRS);
    if (!(s = calloc(1, sizeof(*s))))
        return set_err(err, errlen, -ENOMEM, "out of memory");
    atomic_init(&s->refs, 1);
    s->n_pairs = conf->n_pairs;
    for (size_t i = 0; i < conf->n_pairs; i++)
        if ((rc = pair_load(s, i, conf, err, errlen)) != 0)
            goto fail;
    wolfSSL_CTX_set_servername_callback(s->ctx[0], tls_sni_cb);
    if (wolfSSL_CTX_set_servername_arg(s->ctx[0], s) != WOLFSSL_SUCCESS) {
        rc = set_err(err, errlen, -EINVAL, "cannot set the SNI callback");
        goto fail;
    }
    *out = s;
    return set_err(err, errlen, 0, "%s", "");
fail:
    server_free(s);
    return rc;
}

struct tls_server *tls_server_ref(struct tls_server *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void tls_server_unref(struct tls_server *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        server_free(s);
}

static bool names_host(WOLFSSL_X509 *leaf, const char *name)
{
    return wolfSSL_X509_check_host(leaf, name, strlen(name), 0, NULL) == WOLFSSL_SUCCESS;
}

/* Choose the pair whose leaf certificate names the requested host; none
 * matching keeps the default (like a default server, no alert). */
int tls_sni_cb(WOLFSSL *ssl, int *alert, void *arg)
{
    struct tls_server *s = arg;
    struct tls_conn *c = wolfSSL_get_ex_data(ssl, 0);
    const char *name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);

    (void)alert;
    if (!name || !*name || names_host(s->leaf[0], name))
        return 0;
    for (size_t i = 1; i < s->n_pairs; i++) {
        if (!names_host(s->leaf[i], name))
            continue;
        if (wolfSSL_set_SSL_CTX(ssl, s->ctx[i]) && c)
            c->pair = (int)i;
        break;
    }
    return 0;
}

static int client_ca(WOLFSSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
    const char *path = ca_file ? ca_file : TLS_SYSTEM_CA;
    /* The system bundle may hold a certificate wolfSSL cannot parse: skip
     * it. A pinned CA file must load whole. */
    unsigned flags = ca_file ? 0 : WOLFSSL_LOAD_FLAG_IGNORE_ERR;

    if (wolfSSL_CTX_load_verify_locations_ex(ctx, path, NULL, flags) != WOLFSSL_SUCCESS)
        return set_err(err, errlen, access(path, R_OK) ? -ENOENT : -EINVAL,
                       "%s: no usable PEM CA certificate", path);
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
    return 0;
}

int tls_client_new(const struct tls_client_conf *conf, struct tls_client **out, char *err,
                   size_t errlen)
{
    struct tls_client *c;
    int rc;

    *out = NULL;
    if ((rc = tls_global_init()) != 0)
        return set_err(err, errlen, rc, "wolfSSL failed to start");
    if (!(c = calloc(1, sizeof(*c))))
        return set_err(err, errlen, -ENOMEM, "out of memory");
    atomic_init(&c->refs, 1);
    if (!(c->ctx = ctx_new(false, conf->min_version, conf->max_version, err, errlen))) {
        rc = -EINVAL;
        goto fail;
    }
    if ((rc = ctx_common(c->ctx, conf->min_version, conf->ciphers, conf->accel, err, errlen)) ||
        (rc = client_ca(c->ctx, conf->ca_file, err, errlen)))
        goto fail;
    if (wolfSSL_CTX_UseSessionTicket(c->ctx) != WOLFSSL_SUCCESS) {
        rc = set_err(err, errlen, -EINVAL, "cannot enable session tickets");
        goto fail;
    }
    *out = c;
    return set_err(err, errlen, 0, "%s", "");
fail:
    tls_client_unref(c);
    return rc;
}

struct tls_client *tls_client_ref(struct tls_client *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void tls_client_unref(struct tls_client *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->ctx)
        wolfSSL_CTX_free(c->ctx);
    free(c);
}
