/* The CLI's TLS pump: a relay connection with a TLS session (rwss://,
 * rwrs://) is pumped straight from the session to the local socket or
 * stdio (sdktls_pump_run), with no socketpair and no second thread. */
#include "cli/cli.h"
#include "sdk/sdktls.h"

int pump_run_tls(int a_rd, int a_wr, struct tls_conn *b, bool stop_on_b_eof, struct pump_stats *st)
{
    struct sdktls_stats ts = {0};
    int rc = sdktls_pump_run(b, a_rd, a_wr, stop_on_b_eof, &ts);

    st->a_to_b = ts.up;
    st->b_to_a = ts.down;
    st->reset = ts.reset;
    return rc;
}
