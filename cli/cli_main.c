/* rapi: expose a local TCP server through a relay, connect to one, make
 * keys. Subcommand dispatch, usage and keygen; the subcommands live in
 * cli_expose.c and cli_connect.c, their shared helpers in cli_util.c. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "auth/keys.h"
#include "cli/cli.h"

#define KEYFILE_TEXT_MAX 1024

/* ------------------------------------------------------------ keygen */

static void keygen_usage(FILE *f)
{
    fprintf(f, "usage: rapi keygen [-o FILE]\n"
               "  Print a new key file (server_key and client_key lines) to stdout,\n"
               "  or create FILE with mode 0600 (never overwrites).\n");
}

static int cli_keygen(int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    char text[KEYFILE_TEXT_MAX];
    const char *out = NULL;
    int c, n;

    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else
            return keygen_usage(c == 'h' ? stdout : stderr), c == 'h' ? 0 : 2;
    }
    if (optind < argc)
        return keygen_usage(stderr), 2;
    if (out) {
        n = keys_create_file(out);
        if (n < 0)
            fprintf(stderr, "rapi: keygen: %s: %s\n", out, strerror(-n));
        return n < 0 ? 1 : 0;
    }
    n = keys_generate_text(text, sizeof(text));
    if (n < 0) {
        fprintf(stderr, "rapi: keygen: %s\n", strerror(-n));
        return 1;
    }
    fwrite(text, 1, (size_t)n, stdout);
    explicit_bzero(text, sizeof(text));
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rapi COMMAND [OPTIONS]\n"
            "  rapi expose URL [URL...] --to HOST:PORT  remote a local TCP server (on every URL)\n"
            "  rapi connect URL [URL...] [--listen ADDR:PORT]\n"
            "                                           reach one (through one URL, failing\n"
            "                                           over; stdio without --listen)\n"
            "  rapi keygen [-o FILE]                    make a key file\n"
            "  rapi COMMAND -h                          help on a command\n"
            "Keys: --key-file FILE, else KEY@ in the URL, else $RAPI_KEY, else $RAPI_KEY_FILE.\n"
            "See rapi(1).\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* a closed peer shows up as EPIPE instead */
    if (argc < 2)
        return usage(stderr), 2;
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
        return usage(stdout), 0;
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        return printf("rapi %s\n", RAPI_VERSION), 0;
    if (strcmp(argv[1], "expose") == 0)
        return cli_expose(argc - 1, argv + 1);
    if (strcmp(argv[1], "connect") == 0)
        return cli_connect(argc - 1, argv + 1);
    if (strcmp(argv[1], "keygen") == 0)
        return cli_keygen(argc - 1, argv + 1);
    fprintf(stderr, "rapi: unknown command '%s'\n", argv[1]);
    return usage(stderr), 2;
}
