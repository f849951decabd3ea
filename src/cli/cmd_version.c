/* parity version — prints the version and the build's features. */
#include <cblas.h>
#include <sodium.h>
#include <stdio.h>

#include "cli/cli.h"

const char cmd_version_summary[] = "print the version and the libraries it was built with";

int cmd_version(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: parity version\n\nPrints parity's version and the versions of its libraries.\n");
        return 0;
    }
    if (argc > 1) return cli_usage_error("version", "takes no arguments");
    printf("parity 0.1.0\nopenblas %s\nlibsodium %s\n", openblas_get_config(), sodium_version_string());
    return 0;
}
