/*
 * libFuzzer target for the config loader: the whole of config_load(),
 * from libyaml through the schema walk, the typed load and the checks of
 * each value, but for loading an L7 route's certificate and key, which
 * reads files the input names (config_load_no_files). The input is
 * written to a memfd and loaded by its /proc path.
 *
 * Leading lines "#env NAME=VALUE" (YAML comments, so the file is the
 * same with or without them) set MCPROXY_NAME for the load, which
 * reaches the environment overrides; they are unset afterwards.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VARS 8
#define VAR_MAX  64

static void ignore(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* A variable name the loader could read: upper case, digits, '_'. */
static bool var_name_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return n > 0;
}

/* Sets the variables of the leading "#env" lines; their names go to vars. */
static size_t set_vars(const uint8_t *data, size_t size, char vars[MAX_VARS][VAR_MAX])
{
    size_t n = 0, pos = 0;

    while (n < MAX_VARS && size - pos > 5 && memcmp(data + pos, "#env ", 5) == 0) {
        const char *text = (const char *)data + pos + 5;
        const char *nl = memchr(text, '\n', size - pos - 5);
        size_t len = nl != NULL ? (size_t)(nl - text) : size - pos - 5;
        const char *eq = memchr(text, '=', len);
        char name[VAR_MAX], value[128];

        if (eq != NULL && var_name_ok(text, (size_t)(eq - text)) &&
            (size_t)(eq - text) < sizeof(name) - 8 && len - (size_t)(eq - text) <= sizeof(value) &&
            memchr(text, '\0', len) == NULL) {
            snprintf(name, sizeof(name), "MCPROXY_%.*s", (int)(eq - text), text);
            snprintf(value, sizeof(value), "%.*s", (int)(len - (size_t)(eq - text) - 1), eq + 1);
            if (setenv(name, value, 1) == 0)
                strcpy(vars[n++], name);
        }
        pos += 5 + len + (nl != NULL);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], vars[MAX_VARS][VAR_MAX];
    struct config *cfg;
    size_t nvars = set_vars(data, size, vars);
    int fd = memfd_create("fuzz_config", MFD_CLOEXEC);

    if (fd >= 0 && write(fd, data, size) == (ssize_t)size) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        cfg = config_load_no_files(path, ignore, NULL);
        config_free(cfg);
    }
    if (fd >= 0)
        close(fd);
    while (nvars > 0)
        unsetenv(vars[--nvars]);
    return 0;
}
