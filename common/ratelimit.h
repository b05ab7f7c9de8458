/* TEMP stub */
#ifndef MC_RATELIMIT_H
#define MC_RATELIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
size_t ratelimit_region_size(void);
int ratelimit_create(void **region);
int ratelimit_attach(int fd, void **region);
void ratelimit_key(int family, const uint8_t *ip, uint8_t key[16]);
bool ratelimit_admit(void *region, const uint8_t key[16], uint64_t now_ms, uint32_t limit, uint64_t window_ms);
void ratelimit_reap(void *region, int32_t pid);
#endif
