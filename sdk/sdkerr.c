/* Error codes: the relay's status + errorcode mapped to enum rapi_code.
 * Pure, thread-safe. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/json.h"
#include "sdk/sdk_int.h"

#define HTTP_BAD_GATEWAY 502
#define HTTP_UNAVAILABLE 503

static const char *const code_names[] = {
    [RAPI_E_NONE] = "RAPI_E_NONE",
    [RAPI_E_SYSTEM] = "RAPI_E_SYSTEM",
    [RAPI_E_URL] = "RAPI_E_URL",
    [RAPI_E_KEY] = "RAPI_E_KEY",
    [RAPI_E_UNSUPPORTED] = "RAPI_E_UNSUPPORTED",
    [RAPI_E_TIMEOUT] = "RAPI_E_TIMEOUT",
    [RAPI_E_CONNECT] = "RAPI_E_CONNECT",
    [RAPI_E_CLOSED] = "RAPI_E_CLOSED",
    [RAPI_E_PROTOCOL] = "RAPI_E_PROTOCOL",
    [RAPI_E_APIKEY] = "RAPI_E_APIKEY",
    [RAPI_E_NO_LISTENER] = "RAPI_E_NO_LISTENER",
    [RAPI_E_LISTENER_TIMEOUT] = "RAPI_E_LISTENER_TIMEOUT",
    [RAPI_E_PATH_IN_USE] = "RAPI_E_PATH_IN_USE",
    [RAPI_E_DUPLICATE_ID] = "RAPI_E_DUPLICATE_ID",
    [RAPI_E_UNKNOWN_ROUTE] = "RAPI_E_UNKNOWN_ROUTE",
    [RAPI_E_VERSION] = "RAPI_E_VERSION",
    [RAPI_E_BAD_REQUEST] = "RAPI_E_BAD_REQUEST",
    [RAPI_E_METHOD] = "RAPI_E_METHOD",
    [RAPI_E_TOO_LARGE] = "RAPI_E_TOO_LARGE",
    [RAPI_E_HTTP] = "RAPI_E_HTTP",
    [RAPI_E_TLS] = "RAPI_E_TLS",
};

RAPI_API const char *rapi_code_name(int code)
{
    if (code < 0 || (size_t)code >= sizeof(code_names) / sizeof(code_names[0]) ||
        code_names[code] == NULL)
        return "RAPI_E_?";
    return code_names[code];
}

static const struct {
    const char *errorcode;
    int code;
} by_errorcode[] = {
    {"invalid_missing_apikey", RAPI_E_APIKEY},     {"missing_destination", RAPI_E_NO_LISTENER},
    {"listener_timeout", RAPI_E_LISTENER_TIMEOUT}, {"path_in_use", RAPI_E_PATH_IN_USE},
    {"duplicate_id", RAPI_E_DUPLICATE_ID},         {"unknown_route", RAPI_E_UNKNOWN_ROUTE},
    {"version_not_supported", RAPI_E_VERSION},     {"invalid_request", RAPI_E_BAD_REQUEST},
    {"method_not_allowed", RAPI_E_METHOD},
};

static const struct {
    int status;
    int code;
} by_status[] = {
    {403, RAPI_E_APIKEY},        {502, RAPI_E_NO_LISTENER}, {504, RAPI_E_LISTENER_TIMEOUT},
    {404, RAPI_E_UNKNOWN_ROUTE}, {426, RAPI_E_VERSION},     {400, RAPI_E_BAD_REQUEST},
    {405, RAPI_E_METHOD},        {431, RAPI_E_TOO_LARGE},
};

/* The errorcode wins over the status: the original relay answered some
 * conditions with other statuses (path in use was a 400). */
RAPI_API int rapi_code_from_http(int status, const char *errorcode)
{
    size_t i;

    if (errorcode != NULL)
        for (i = 0; i < sizeof(by_errorcode) / sizeof(by_errorcode[0]); i++)
            if (strcmp(errorcode, by_errorcode[i].errorcode) == 0)
                return by_errorcode[i].code;
    for (i = 0; i < sizeof(by_status) / sizeof(by_status[0]); i++)
        if (status == by_status[i].status)
            return by_status[i].code;
    return RAPI_E_HTTP;
}

int err_errno(int code, int sys_errno)
{
    switch (code) {
    case RAPI_E_NONE:
        return 0;
    case RAPI_E_SYSTEM:
    case RAPI_E_CONNECT:
    case RAPI_E_CLOSED:
        return sys_errno > 0 ? -sys_errno : -EIO;
    case RAPI_E_URL:
    case RAPI_E_KEY:
        return -EINVAL;
    case RAPI_E_UNSUPPORTED:
        return -EPROTONOSUPPORT;
    case RAPI_E_TIMEOUT:
        return -ETIMEDOUT;
    case RAPI_E_APIKEY:
        return -EACCES;
    case RAPI_E_NO_LISTENER:
    case RAPI_E_UNKNOWN_ROUTE:
        return -ECONNREFUSED;
    case RAPI_E_LISTENER_TIMEOUT:
        return -ETIMEDOUT;
    case RAPI_E_PATH_IN_USE:
        return -EADDRINUSE;
    default:
        return -EPROTO;
    }
}

bool err_failover(const struct rapi_error *e)
{
    switch (e->code) {
    case RAPI_E_CONNECT:
    case RAPI_E_TIMEOUT:
    case RAPI_E_CLOSED:
    case RAPI_E_NO_LISTENER: /* missing_destination, whatever the status */
        return true;
    default:
        /* 502/503 from a front end carry no errorcode of ours */
        return e->status == HTTP_BAD_GATEWAY || e->status == HTTP_UNAVAILABLE;
    }
}

void err_set(struct rapi_error *err, int code, int sys_errno, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    memset(err, 0, sizeof(*err));
    err->code = code;
    err->sys_errno = sys_errno;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

int err_from_answer(struct rapi_error *err, int status, const char *body, size_t body_len)
{
    char ec[64] = "";
    char msg[128] = "";
    int code;

    if (json_get_string(body, body_len, "errorcode", ec, sizeof(ec)) < 0)
        ec[0] = '\0';
    if (json_get_string(body, body_len, "error", msg, sizeof(msg)) < 0)
        msg[0] = '\0';
    code = rapi_code_from_http(status, ec);
    if (err != NULL) {
        err_set(err, code, 0, "relay answered %d%s%s%s%s", status, ec[0] ? " " : "", ec,
                msg[0] ? ": " : "", msg);
        err->status = status;
        snprintf(err->errorcode, sizeof(err->errorcode), "%s", ec);
    }
    return err_errno(code, 0);
}
