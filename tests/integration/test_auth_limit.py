"""P-KEY-5: failed authentications are limited per source address (token
bucket: auth_fail_burst at once, auth_fail_rate per second regained); a
source over it is answered 429 too_many_auth_failures with Retry-After,
whatever key it sends, and other sources are not affected. P-KEY-6: a key
shorter than keygen's is warned about at start and on reload, without the
key."""

import signal
import socket
import time

from relay import (SLOW, Conn, build_request, expect_error, random_token, wait_until,
                   webroute_headers, write_key_file)

DEFAULT_BURST = 20  # rapi-server.conf(5)


def connect_from(relay, src):
    """A tracked connection to the relay from source address src."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(5.0)
    s.connect(relay.addr)
    c = Conn(s, keys=relay.secrets())
    relay.conns.append(c)
    return c


def client_head(key):
    return build_request("/none/", webroute_headers(key, random_token(16)))


def send_from(relay, src, key):
    c = connect_from(relay, src)
    c.send(client_head(key))
    return c


def throttled(relay, src, key):
    resp = expect_error(send_from(relay, src, key), 429, "too_many_auth_failures")
    wait = resp.header("Retry-After")
    assert wait is not None and wait.isdigit() and int(wait) >= 1, resp
    return int(wait)


def test_wrong_keys_throttled_after_burst(relay):
    wrong = random_token(64)
    for _ in range(DEFAULT_BURST):
        expect_error(send_from(relay, "127.0.0.1", wrong), 403, "invalid_missing_apikey")
    throttled(relay, "127.0.0.1", wrong)
    # The source is throttled before its key is looked at: the right key
    # gets 429 too (else 429 against 403 would still tell a guesser).
    throttled(relay, "127.0.0.1", relay.client_key)
    # Another source is not affected, with the right key or a wrong one.
    expect_error(send_from(relay, "127.0.0.2", relay.client_key), 502, "missing_destination")
    expect_error(send_from(relay, "127.0.0.2", wrong), 403, "invalid_missing_apikey")
    assert "429 too_many_auth_failures" in relay.stderr()


def test_missing_key_counts_and_right_key_does_not(start_relay):
    relay = start_relay(auth_fail_burst=3)
    for _ in range(10):  # right keys never count
        expect_error(send_from(relay, "127.0.0.1", relay.client_key), 502, "missing_destination")
    h = [hd for hd in webroute_headers("x", random_token(16)) if hd[0] != "X-Remoted-APIKey"]
    for _ in range(3):
        c = connect_from(relay, "127.0.0.1")
        c.send(build_request("/none/", h))
        expect_error(c, 403, "invalid_missing_apikey")
    throttled(relay, "127.0.0.1", relay.client_key)


def test_throttle_ends_after_retry_after(start_relay):
    relay = start_relay(auth_fail_burst=5, auth_fail_rate=20)
    for _ in range(5):
        expect_error(send_from(relay, "127.0.0.1", random_token(64)), 403,
                     "invalid_missing_apikey")
    wait = throttled(relay, "127.0.0.1", relay.client_key)
    assert wait == 1  # 50 ms owed, rounded up to a second
    time.sleep(wait)
    expect_error(send_from(relay, "127.0.0.1", relay.client_key), 502, "missing_destination")


def test_burst_0_turns_the_limit_off(start_relay):
    relay = start_relay(auth_fail_burst=0)
    for _ in range(DEFAULT_BURST + 10):
        expect_error(send_from(relay, "127.0.0.1", random_token(64)), 403,
                     "invalid_missing_apikey")
    expect_error(send_from(relay, "127.0.0.1", relay.client_key), 502, "missing_destination")


def test_short_key_warned_at_start_and_reload(start_relay, tmp_path):
    keys = str(tmp_path / "shortkeys")
    server, client = write_key_file(keys, random_token(20), random_token(64))
    relay = start_relay(key_file=keys)
    text = relay.stderr()
    assert "server key is shorter than the 64 characters" in text, text
    assert "client key is shorter" not in text, text
    relay.set_keys(random_token(64), random_token(32))
    relay.signal(signal.SIGHUP)
    wait_until(lambda: "client key is shorter than the 64 characters" in relay.stderr(),
               5 * SLOW, what="the short client key warning after SIGHUP")
    # The fixture also fails the test if a key shows in stderr.
    for k in (server, client) + tuple(relay.secrets()):
        assert k not in relay.stderr()


def test_keygen_keys_not_warned(relay):
    assert "key is shorter" not in relay.stderr()


def test_throttled_answers_counted_in_metrics(start_relay):
    from test_admin import admin_addr, metrics

    relay = start_relay(admin="127.0.0.1:0", auth_fail_burst=2)
    wrong = random_token(64)
    for _ in range(2):
        expect_error(send_from(relay, "127.0.0.1", wrong), 403, "invalid_missing_apikey")
    throttled(relay, "127.0.0.1", wrong)
    m = metrics(admin_addr(relay))
    assert m['rapi_error_answers_total{status="429"}'] == 1, m
    assert m['rapi_error_answers_total{status="403"}'] == 2, m
