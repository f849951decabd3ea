/* replay_main.c — runs a libFuzzer target over every file in a corpus folder, so the fuzz
 * targets and their saved inputs (crashers included, once fixed) run in the normal test
 * suite without clang's libFuzzer. Usage: fuzz_X_replay DIR_OR_FILE... */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    char *buf;
    size_t len;
    pt_err err;
    if (pt_read_file(path, 64u << 20, &buf, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* Copy into an exact-size allocation so ASan sees reads past the end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) return 1;
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    int n = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: no such corpus\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]);
            n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char *p = pt_path_join(argv[i], de->d_name);
            bad |= run_file(p);
            free(p);
            n++;
        }
        if (d) closedir(d);
    }
    /* An empty corpus would make this test pass while testing nothing. */
    if (n == 0) {
        fprintf(stderr, "no corpus inputs found\n");
        return 1;
    }
    printf("replayed %d inputs\n", n);
    return bad;
}
