/* main.c — the `parity` command: dispatches to src/cli/cmd_*.c. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define PARITY_COMMAND(n) int cmd_##n(int argc, char **argv); extern const char cmd_##n##_summary[];
#include "commands.inc"
#undef PARITY_COMMAND

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command commands[] = {
#define PARITY_COMMAND(n) {#n, cmd_##n, cmd_##n##_summary},
#include "commands.inc"
#undef PARITY_COMMAND
};
static const size_t n_commands = sizeof commands / sizeof commands[0];

int cli_fail(const pt_err *err) {
    fprintf(stderr, "parity: %s\n", err && err->msg[0] ? err->msg : pt_strerror(err ? err->code : -1));
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "parity %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'parity %s --help')\n", cmd);
    va_end(ap);
    return 2;
}

/* A lock-free atomic: safe to store from a signal handler (C11 7.14.1.1) and to read from
 * other threads. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free for the signal handler");
static atomic_int stop_flag;
static void on_stop_signal(int sig) {
    (void)sig;
    atomic_store(&stop_flag, 1);
}

atomic_int *cli_stop_flag(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return &stop_flag;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: parity COMMAND [ARGS...]\n\n"
               "parity serves language models to outside researchers under a published access\n"
               "policy whose every revision is recorded in a verifiable transparency log.\n\ncommands:\n");
    for (size_t i = 0; i < n_commands; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'parity COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[1], "help")) {
            char *h[] = {argv[2], "--help", NULL};
            for (size_t i = 0; i < n_commands; i++)
                if (!strcmp(commands[i].name, argv[2])) return commands[i].fn(2, h);
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("parity 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < n_commands; i++)
        if (!strcmp(commands[i].name, argv[1])) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "parity: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
