"""P-HEAD-4: the number of header lines in a request head is limited by
`max_headers` (64 by default); a head with more is answered
`431 header_too_large` as soon as the extra line starts, not at the header
timeout."""

import time

from relay import SLOW, build_request, expect_error, random_token, webroute_headers

# Far beyond every bound below: a relay that waits for it has not answered.
HEADER_TIMEOUT = 30
QUICK = 3.0 * SLOW


def padded(key, total):
    """A client-arrival head with exactly total header lines."""
    base = webroute_headers(key, random_token(16))
    return base + [("X-Pad-%d" % i, "v") for i in range(total - len(base))]


def test_65_headers_431_by_default(start_relay):
    relay = start_relay(header_timeout=HEADER_TIMEOUT)
    expect_error(relay.request(build_request("/none/", padded(relay.client_key, 64))), 502,
                 "missing_destination")
    t0 = time.monotonic()
    expect_error(relay.request(build_request("/none/", padded(relay.client_key, 65))), 431,
                 "header_too_large", timeout=QUICK)
    assert time.monotonic() - t0 < QUICK


def test_too_many_headers_answered_before_the_blank_line(start_relay):
    """The relay does not wait for the end of a head that is already over."""
    relay = start_relay(header_timeout=HEADER_TIMEOUT)
    head = build_request("/none/", padded(relay.client_key, 65))
    c = relay.connect()
    c.send(head[:-2])  # no blank line: the head is not complete
    expect_error(c, 431, "header_too_large", timeout=QUICK)


def test_max_headers_configurable(start_relay):
    relay = start_relay(max_headers=100, header_timeout=HEADER_TIMEOUT)
    lst = relay.register("/many/")
    c = relay.request(build_request("/many/", padded(relay.client_key, 65)))
    lst.notification()
    c.close()
    expect_error(relay.request(build_request("/none/", padded(relay.client_key, 100))), 502,
                 "missing_destination")
    expect_error(relay.request(build_request("/none/", padded(relay.client_key, 101))), 431,
                 "header_too_large", timeout=QUICK)


def test_small_max_headers(start_relay):
    """A client arrival has 6 header lines: max_headers 5 refuses it."""
    relay = start_relay(max_headers=5, header_timeout=HEADER_TIMEOUT)
    head = webroute_headers(relay.client_key, random_token(16))
    assert len(head) == 6
    expect_error(relay.request(build_request("/none/", head)), 431, "header_too_large",
                 timeout=QUICK)
