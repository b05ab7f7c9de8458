/* GeoIP country lookups over a sealed memfd copy of the database (geoip.h). */
#include <errno.h>
#include <fcntl.h>
#include <maxminddb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/geoip.h"

#define GEOIP_MAX_SIZE (1u << 30) /* City databases are ~100 MB; past this it is not one */

struct geoip {
    MMDB_s db;
};

/* Writes all of in to out; -1 with errno set. */
static int geoip_pump(int in, int out)
{
    char buf[65536];

    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return (int)n;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno != EINTR)
                return -1;
            off += w > 0 ? w : 0;
        }
    }
}

/* Copies the file at path into a new memfd and seals it against every change. */
static int geoip_copy(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd = -1, in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (in < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > GEOIP_MAX_SIZE) {
        snprintf(err, errlen, "%s: not a regular file of at most 1 GiB", path);
    } else if ((fd = memfd_create("mc-proxy-geoip", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0) {
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
    } else if (geoip_pump(in, fd) < 0) {
        snprintf(err, errlen, "copying %s: %s", path, strerror(errno));
    } else if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
               0) {
        snprintf(err, errlen, "sealing the copy of %s: %s", path, strerror(errno));
    } else {
        close(in);
        return fd;
    }
    if (fd >= 0)
        close(fd);
    close(in);
    return -1;
}

int geoip_load(const char *path, char *err, size_t errlen)
{
    int fd = geoip_copy(path, err, errlen);
    if (fd < 0)
        return -1;
    char why[256];
    struct geoip *g = geoip_open(fd, why, sizeof(why));
    if (g == NULL) {
        snprintf(err, errlen, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    geoip_close(g);
    return fd;
}

struct geoip *geoip_open(int fd, char *err, size_t errlen)
{
    char path[64];
    struct geoip *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int rc = MMDB_open(path, MMDB_MODE_MMAP, &g->db);
    if (rc != MMDB_SUCCESS) {
        snprintf(err, errlen, "not a MaxMind DB: %s", MMDB_strerror(rc));
        free(g);
        return NULL;
    }
    return g;
}

void geoip_close(struct geoip *g)
{
    if (g == NULL)
        return;
    MMDB_close(&g->db);
    free(g);
}

bool geoip_country(const struct geoip *g, const struct mc_addr *a, char cc[3])
{
    int mmdb_err;
    MMDB_entry_data_s d;

    MMDB_lookup_result_s r =
        MMDB_lookup_sockaddr(&g->db, (const struct sockaddr *)&a->ss, &mmdb_err);
    if (mmdb_err != MMDB_SUCCESS || !r.found_entry)
        return false;
    if (MMDB_get_value(&r.entry, &d, "country", "iso_code", NULL) != MMDB_SUCCESS || !d.has_data ||
        d.type != MMDB_DATA_TYPE_UTF8_STRING || d.data_size != 2)
        return false;
    memcpy(cc, d.utf8_string, 2);
    cc[2] = '\0';
    return true;
}
