/*
 * libFuzzer target for the config loader: the whole of config_load(),
 * from libyaml through the schema walk, libcyaml and the checks of each
 * value, but for loading an L7 route's certificate and key, which reads
 * files the input names (config_load_no_files). The input is written to
 * a memfd and loaded by its /proc path.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    struct config *cfg;
    int fd = memfd_create("fuzz_config", MFD_CLOEXEC);

    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        cfg = config_load_no_files(path, ignore, NULL);
        config_free(cfg);
    }
    close(fd);
    return 0;
}
