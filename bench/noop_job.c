/* noop_job.c - the benchmark's job binary: does nothing, as fast as possible.
 *
 *   noop_job config REF...   prints a JobConfigureResponse (one config per ref)
 *   noop_job exec ARGS...    exits 0 at once
 *
 * Refs shape a two-level fan-in graph (TAG keeps runs apart, W x H its size):
 *   noop/TAG/top/WxH          inputs noop/TAG/mid/WxH/K        for K < W
 *   noop/TAG/mid/WxH/K        inputs noop/TAG/leaf/WxH/K/J     for J < H
 *   anything else             no inputs
 * so noop/TAG/top/WxH is a graph of 1 + W + W*H partitions, one task each.
 * With NOOP_CONFIG_LOG set, each `config` appends one line "<number of refs>"
 * to that file (O_APPEND), so the benchmark can count configure spawns.
 * Refs are expected to be plain (no quotes or backslashes): none are escaped.
 * Built by bench/run_build.sh with the C compiler alone (no libraries), so
 * that spawning it costs as little as a process can.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put_ref(const char *ref)
{
    printf("{\"partition_ref\":{\"str\":\"%s\"},\"dep_type_code\":1}", ref);
}

/* "noop/TAG/<kind>/WxH..." -> pointer to kind, W, H, and the rest after WxH. */
static int parse(const char *ref, const char **kind, size_t *tag_len, int *w, int *h,
                 const char **rest)
{
    if (strncmp(ref, "noop/", 5) != 0) return -1;
    const char *tag = ref + 5, *slash = strchr(tag, '/');
    if (!slash) return -1;
    *tag_len = (size_t)(slash - tag);
    *kind = slash + 1;
    const char *dims = strchr(*kind, '/');
    if (!dims) return -1;
    char *end;
    *w = (int)strtol(dims + 1, &end, 10);
    if (*end != 'x') return -1;
    *h = (int)strtol(end + 1, &end, 10);
    *rest = end;
    return 0;
}

static void config_one(const char *ref)
{
    printf("{\"outputs\":[{\"str\":\"%s\"}],\"args\":[\"run\"],\"inputs\":[", ref);
    const char *kind, *rest;
    size_t tl;
    int w, h;
    if (parse(ref, &kind, &tl, &w, &h, &rest) == 0) {
        const char *tag = ref + 5;
        char buf[512];
        if (strncmp(kind, "top/", 4) == 0) {
            for (int k = 0; k < w; k++) {
                snprintf(buf, sizeof buf, "noop/%.*s/mid/%dx%d/%d", (int)tl, tag, w, h, k);
                if (k) putchar(',');
                put_ref(buf);
            }
        } else if (strncmp(kind, "mid/", 4) == 0 && rest[0] == '/') {
            int k = atoi(rest + 1);
            for (int j = 0; j < h; j++) {
                snprintf(buf, sizeof buf, "noop/%.*s/leaf/%dx%d/%d/%d", (int)tl, tag, w, h, k, j);
                if (j) putchar(',');
                put_ref(buf);
            }
        }
    }
    printf("]}");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "exec") == 0) return 0;
    if (argc < 3 || strcmp(argv[1], "config") != 0) {
        fprintf(stderr, "usage: noop_job config REF... | exec ARGS...\n");
        return 2;
    }
    static char out[1 << 16];
    setvbuf(stdout, out, _IOFBF, sizeof out);
    printf("{\"configs\":[");
    for (int i = 2; i < argc; i++) {
        if (i > 2) putchar(',');
        config_one(argv[i]);
    }
    printf("]}\n");
    const char *log = getenv("NOOP_CONFIG_LOG");
    if (log && *log) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            char line[32];
            int n = snprintf(line, sizeof line, "%d\n", argc - 2);
            if (write(fd, line, (size_t)n) < 0) { /* best effort */
            }
            close(fd);
        }
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
