/*
 * hello_parse() fed incrementally must agree with one call over the whole
 * input. Input: byte 0 is the largest chunk (1..256), byte 1 seeds the
 * chunk sizes, the rest is the connection's bytes. Each call sees a buffer
 * whose bytes past len are ASan-poisoned (fuzz_chunks.h), so any read past
 * len is caught.
 */
#include "worker/hello.h"

#include "fuzz/fuzz_chunks.h"
#include "t/unit/hello_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t scratch[HELLO_MAX_MSG];
    struct hello whole = {0}, inc = {0};
    enum hello_result rw, ri = HELLO_NEED_MORE;
    struct fuzz_chunks c;
    size_t len;

    if (size < 3)
        return 0;
    len = size - 2;

    rw = hello_parse(&whole, data + 2, len, scratch);
    if (!hello_check_sane(&whole, rw, len))
        __builtin_trap();

    if (!fuzz_chunks_init(&c, data + 2, len, (size_t)data[0] + 1, data[1]))
        return 0;
    while (ri == HELLO_NEED_MORE && fuzz_chunks_next(&c) > 0)
        ri = hello_parse(&inc, c.buf, c.have, scratch);
    fuzz_chunks_free(&c);

    if (!hello_check_same(&whole, rw, &inc, ri))
        __builtin_trap();
    return 0;
}
