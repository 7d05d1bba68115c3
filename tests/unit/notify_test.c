/* The notifier's decisions with fake clocks and a recording send function:
 * READY/STOPPING/STATUS/RELOADING, and the watchdog that pings only while
 * every event loop turns. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/notify.h"
#include "engine/shard.h"

#define SENT_MAX 64
#define WD_MS 1000 /* watchdog interval in the tests */
#define NSHARDS 2

static char sent[SENT_MAX][NOTIFY_STATUS_MAX];
static int nsent;
static struct notify n;
static struct wheel w;
static struct relay relay;
static struct shard shard_mem[NSHARDS];
static struct shard *shard_ptr[NSHARDS];

static int record(const char *state)
{
    cr_assert_lt(nsent, SENT_MAX);
    snprintf(sent[nsent++], sizeof(sent[0]), "%s", state);
    return 0;
}

static int count(const char *prefix)
{
    int c = 0;

    for (int i = 0; i < nsent; i++)
        c += strncmp(sent[i], prefix, strlen(prefix)) == 0;
    return c;
}

static void setup(uint64_t watchdog_us)
{
    nsent = 0;
    memset(&relay, 0, sizeof(relay));
    memset(shard_mem, 0, sizeof(shard_mem));
    for (int i = 0; i < NSHARDS; i++)
        shard_ptr[i] = &shard_mem[i];
    relay.nshards = NSHARDS;
    relay.shards = shard_ptr;
    wheel_init(&w, 0);
    notify_setup(&n, record, watchdog_us, &relay);
}

/* Every loop stamps at now, then the acceptor turns. */
static void all_turn(uint64_t now)
{
    for (int i = 0; i <= NSHARDS; i++)
        notify_loop_wait(&n, i, now, -1);
    notify_turn(&n, &w, now);
}

Test(notify, off_without_send_function)
{
    setup(0);
    notify_setup(&n, NULL, (uint64_t)WD_MS * 1000, &relay);
    cr_assert_eq(n.watchdog_ms, 0, "no watchdog without a notify socket");
    cr_assert_eq(notify_loop_wait(&n, 1, 100, -1), -1, "wait not capped");
    notify_turn(&n, &w, 100);
    notify_reloading(&n);
    notify_reloaded(&n);
    cr_assert_eq(nsent, 0);
    cr_assert_not(timer_armed(&n.timer), "no timer, no wake-ups");
}

Test(notify, ready_once_then_status_periodically)
{
    setup(0);
    STAT_SET(shard_mem[0].stats.listeners, 3);
    STAT_SET(shard_mem[1].stats.listeners, 2);
    STAT_SET(shard_mem[1].stats.waiting, 4);
    STAT_SET(shard_mem[0].stats.links, 7);
    notify_turn(&n, &w, 1000);
    cr_assert_str_eq(sent[0], "READY=1");
    cr_assert_str_eq(sent[1], "STATUS=5 listeners, 4 waiting, 7 linked pairs");
    cr_assert_eq(notify_loop_wait(&n, 1, 1000, -1), -1, "no watchdog: no cap");
    cr_assert(timer_armed(&n.timer));
    cr_assert_eq(n.timer.expires, 1000 + NOTIFY_STATUS_MS, "woken for the next STATUS");
    notify_turn(&n, &w, 1000 + NOTIFY_STATUS_MS - 1);
    cr_assert_eq(nsent, 2, "nothing due yet");
    notify_turn(&n, &w, 1000 + NOTIFY_STATUS_MS);
    cr_assert_eq(count("READY=1"), 1);
    cr_assert_eq(count("STATUS="), 2);
    cr_assert_eq(count("WATCHDOG=1"), 0);
}

Test(notify, stopping_once_when_draining)
{
    setup(0);
    notify_turn(&n, &w, 10);
    atomic_store(&relay.draining, 1);
    notify_turn(&n, &w, 20);
    notify_turn(&n, &w, 30);
    cr_assert_eq(count("STOPPING=1"), 1);
    notify_turn(&n, &w, 10 + NOTIFY_STATUS_MS);
    cr_assert_eq(strncmp(sent[nsent - 1], "STATUS=draining: ", 17), 0, "%s", sent[nsent - 1]);
}

Test(notify, reload_sends_reloading_with_monotonic_time_then_ready)
{
    setup(0);
    notify_reloading(&n);
    notify_reloaded(&n);
    cr_assert_eq(nsent, 2);
    cr_assert_eq(strncmp(sent[0], "RELOADING=1\nMONOTONIC_USEC=", 27), 0, "%s", sent[0]);
    cr_assert_gt(strtoull(sent[0] + 27, NULL, 10), 0);
    cr_assert_str_eq(sent[1], "READY=1");
}

Test(notify, idle_loops_wait_at_most_a_quarter_interval)
{
    setup((uint64_t)WD_MS * 1000);
    cr_assert_eq(n.watchdog_ms, WD_MS);
    cr_assert_eq(notify_loop_wait(&n, 1, 5, -1), WD_MS / NOTIFY_WAIT_DIVISOR);
    cr_assert_eq(notify_loop_wait(&n, 1, 5, 10000), WD_MS / NOTIFY_WAIT_DIVISOR);
    cr_assert_eq(notify_loop_wait(&n, 1, 5, 7), 7);
    cr_assert_eq(notify_loop_wait(&n, NOTIFY_MAX_LOOPS, 5, -1), -1, "out of range: ignored");
}

Test(notify, pings_at_half_interval_while_every_loop_turns)
{
    setup((uint64_t)WD_MS * 1000);
    for (uint64_t t = 1000; t <= 1000 + 4 * WD_MS; t += TIMER_TICK_MS)
        all_turn(t);
    /* at 1000, 1500, ..., 5000 */
    cr_assert_eq(count("WATCHDOG=1"), 9);
    cr_assert_eq(n.timer.expires, n.next_ping < n.next_status ? n.next_ping : n.next_status);
}

Test(notify, a_wedged_shard_stops_the_pings_and_its_return_resumes_them)
{
    uint64_t t = 1000;
    int before;

    setup((uint64_t)WD_MS * 1000);
    for (; t < 3000; t += TIMER_TICK_MS)
        all_turn(t);
    before = count("WATCHDOG=1");
    cr_assert_gt(before, 0);
    /* Shard 1 (loop 2) stops turning at 2950; the others go on. */
    for (; t <= 2950 + WD_MS; t += TIMER_TICK_MS) {
        notify_loop_wait(&n, 1, t, -1);
        notify_turn(&n, &w, t);
    }
    cr_assert(notify_alive(&n, NSHARDS, 2950 + WD_MS), "stale only past the interval");
    cr_assert_not(notify_alive(&n, NSHARDS, 2950 + WD_MS + 1));
    before = count("WATCHDOG=1");
    for (; t < 8000; t += TIMER_TICK_MS) {
        notify_loop_wait(&n, 1, t, -1);
        notify_turn(&n, &w, t);
    }
    cr_assert_eq(count("WATCHDOG=1"), before, "no ping while a shard is wedged");
    all_turn(t);
    t += WD_MS / 2;
    all_turn(t);
    cr_assert_gt(count("WATCHDOG=1"), before, "pings again once it turns");
}

Test(notify, a_loop_that_never_turned_counts_from_ready)
{
    setup((uint64_t)WD_MS * 1000);
    cr_assert_not(notify_alive(&n, NSHARDS, 100), "never stamped: not alive");
    notify_turn(&n, &w, 100); /* READY: every loop starts its interval now */
    cr_assert_eq(count("WATCHDOG=1"), 1);
    notify_turn(&n, &w, 100 + WD_MS / 2);
    cr_assert_eq(count("WATCHDOG=1"), 2);
    notify_turn(&n, &w, 100 + WD_MS + WD_MS / 2);
    cr_assert_eq(count("WATCHDOG=1"), 2, "the shards never turned");
}

Test(notify, stopped_sends_stopping_unless_a_turn_did)
{
    setup(0);
    notify_turn(&n, &w, 10);
    notify_stopped(&n);
    notify_stopped(&n);
    cr_assert_eq(count("STOPPING=1"), 1);
    setup(0);
    notify_setup(&n, NULL, 0, &relay);
    notify_stopped(&n);
    cr_assert_eq(nsent, 0);
}

Test(notify, while_draining_finished_shards_do_not_stop_the_pings)
{
    setup((uint64_t)WD_MS * 1000);
    all_turn(100);
    atomic_store(&relay.draining, 1);
    notify_turn(&n, &w, 200); /* STOPPING=1; the shards end and never stamp again */
    notify_turn(&n, &w, 100 + 3 * WD_MS);
    cr_assert_eq(count("STOPPING=1"), 1);
    cr_assert_eq(count("WATCHDOG=1"), 2);
}

/* The environment, read as sd_watchdog_enabled(3) reads it: WATCHDOG_PID,
 * when set, must name this process. */
Test(notify, watchdog_from_env_only_for_this_pid)
{
    char pid[32];

    setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
    setenv("WATCHDOG_USEC", "3000000", 1);
    unsetenv("WATCHDOG_PID");
    notify_from_env(NULL);
    cr_assert_eq(notify_main.watchdog_ms, 3000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    notify_from_env(NULL);
    cr_assert_eq(notify_main.watchdog_ms, 0);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    notify_from_env(NULL);
    cr_assert_eq(notify_main.watchdog_ms, 3000);
    setenv("WATCHDOG_USEC", "12x", 1);
    notify_from_env(NULL);
    cr_assert_eq(notify_main.watchdog_ms, 0);
    unsetenv("NOTIFY_SOCKET");
    notify_from_env(NULL);
    cr_assert_null(notify_main.send);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

/* The datagram goes to an abstract socket when NOTIFY_SOCKET starts with '@'. */
Test(notify, sends_a_datagram_to_an_abstract_socket)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char name[64], got[64];
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ssize_t k;

    cr_assert_geq(fd, 0);
    snprintf(name, sizeof(name), "@rapi-notify-test-%d", (int)getpid());
    memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))),
                 0);
    setenv("NOTIFY_SOCKET", name, 1);
    notify_from_env(NULL);
    cr_assert_not_null(notify_main.send);
    cr_assert_eq(notify_main.send("READY=1"), 0);
    k = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
    cr_assert_eq(k, 7);
    got[k] = '\0';
    cr_assert_str_eq(got, "READY=1");
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    notify_from_env(NULL);
    cr_assert_lt(notify_main.send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}
