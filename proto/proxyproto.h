/* PROXY protocol v1 (text) and v2 (binary) header parser, as sent by a
 * front end (HAProxy send-proxy[-v2], nginx proxy_protocol) at the start of a
 * connection. Pure, zero-allocation, thread-safe; picohttpparser-style
 * contract: returns bytes consumed, -2 incomplete, -1 invalid. The caller
 * bounds the total length with its own head size limit and deadline. */
#ifndef RAPI_PROTO_PROXYPROTO_H
#define RAPI_PROTO_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXYPROTO_V1_MAX 107 /* spec: longest v1 line, CRLF included */
#define PROXYPROTO_V2_HDR 16  /* signature, ver/cmd, family, length */

struct proxyproto {
    int local;                   /* 1: v2 LOCAL or v1 UNKNOWN: keep the real peer address */
    struct sockaddr_storage src; /* client address when !local */
    socklen_t src_len;
};

/* Parse one header at buf[0..len). On success fills *out and returns the
 * header length; -2 if buf is a proper prefix of a possible header; -1 if it
 * cannot be one. Never reads past buf + len. */
int proxyproto_parse(const char *buf, size_t len, struct proxyproto *out);

/* Decimal port s[0..n) (0..65535, no sign, no leading zero). 0 or -1. */
int proxyproto_port(const char *s, size_t n, unsigned short *port);

#endif
