/* Relay answers mapped to named error codes (sdk/sdkerr.c). */
#include <criterion/criterion.h>
#include <errno.h>

#include "sdk/sdkerr.c"

Test(sdkerr, protocol_errorcodes)
{
    static const struct {
        int status;
        const char *errorcode;
        int code;
        int err;
    } t[] = {
        {403, "invalid_missing_apikey", RAPI_E_APIKEY, -EACCES},
        {502, "missing_destination", RAPI_E_NO_LISTENER, -ECONNREFUSED},
        {504, "listener_timeout", RAPI_E_LISTENER_TIMEOUT, -ETIMEDOUT},
        {409, "path_in_use", RAPI_E_PATH_IN_USE, -EADDRINUSE},
        {400, "path_in_use", RAPI_E_PATH_IN_USE, -EADDRINUSE}, /* the original's status */
        {409, "duplicate_id", RAPI_E_DUPLICATE_ID, -EPROTO},
        {404, "unknown_route", RAPI_E_UNKNOWN_ROUTE, -ECONNREFUSED},
        {426, "version_not_supported", RAPI_E_VERSION, -EPROTO},
        {400, "invalid_request", RAPI_E_BAD_REQUEST, -EPROTO},
        {405, "method_not_allowed", RAPI_E_METHOD, -EPROTO},
    };
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int code = rapi_code_from_http(t[i].status, t[i].errorcode);
        cr_expect_eq(code, t[i].code, "%d %s -> %s", t[i].status, t[i].errorcode,
                     rapi_code_name(code));
        cr_expect_eq(err_errno(code, 0), t[i].err, "%s errno", t[i].errorcode);
    }
}

Test(sdkerr, status_fallback_without_errorcode)
{
    cr_expect_eq(rapi_code_from_http(403, NULL), RAPI_E_APIKEY);
    cr_expect_eq(rapi_code_from_http(502, ""), RAPI_E_NO_LISTENER);
    cr_expect_eq(rapi_code_from_http(504, "something_new"), RAPI_E_LISTENER_TIMEOUT);
    cr_expect_eq(rapi_code_from_http(431, NULL), RAPI_E_TOO_LARGE);
    cr_expect_eq(rapi_code_from_http(418, NULL), RAPI_E_HTTP);
    cr_expect_eq(rapi_code_from_http(200, NULL), RAPI_E_HTTP);
}

Test(sdkerr, names)
{
    cr_expect_str_eq(rapi_code_name(RAPI_E_NO_LISTENER), "RAPI_E_NO_LISTENER");
    cr_expect_str_eq(rapi_code_name(RAPI_E_NONE), "RAPI_E_NONE");
    cr_expect_str_eq(rapi_code_name(RAPI_E_HTTP), "RAPI_E_HTTP");
    cr_expect_str_eq(rapi_code_name(-1), "RAPI_E_?");
    cr_expect_str_eq(rapi_code_name(RAPI_E_TLS), "RAPI_E_TLS");
    cr_expect_str_eq(rapi_code_name(RAPI_E_TLS + 1), "RAPI_E_?");
}

Test(sdkerr, answer_fills_status_errorcode_and_text)
{
    static const char body[] = "{\"success\":false,\"error\":\"No listener on this "
                               "path\",\"errorcode\":\"missing_destination\"}";
    struct rapi_error e;

    cr_assert_eq(err_from_answer(&e, 502, body, sizeof(body) - 1), -ECONNREFUSED);
    cr_expect_eq(e.code, RAPI_E_NO_LISTENER);
    cr_expect_eq(e.status, 502);
    cr_expect_str_eq(e.errorcode, "missing_destination");
    cr_expect(strstr(e.message, "502 missing_destination: No listener on this path") != NULL, "%s",
              e.message);
}

Test(sdkerr, answer_without_body)
{
    struct rapi_error e;

    cr_assert_eq(err_from_answer(&e, 403, "", 0), -EACCES);
    cr_expect_eq(e.code, RAPI_E_APIKEY);
    cr_expect_str_eq(e.errorcode, "");
    cr_expect_str_eq(e.message, "relay answered 403");
    cr_expect_eq(err_from_answer(NULL, 500, "x", 1), -EPROTO);
}

Test(sdkerr, system_codes_carry_errno)
{
    cr_expect_eq(err_errno(RAPI_E_CONNECT, ECONNREFUSED), -ECONNREFUSED);
    cr_expect_eq(err_errno(RAPI_E_SYSTEM, 0), -EIO);
    cr_expect_eq(err_errno(RAPI_E_URL, 0), -EINVAL);
    cr_expect_eq(err_errno(RAPI_E_UNSUPPORTED, 0), -EPROTONOSUPPORT);
    cr_expect_eq(err_errno(RAPI_E_TIMEOUT, 0), -ETIMEDOUT);
    cr_expect_eq(err_errno(RAPI_E_NONE, 0), 0);
}
