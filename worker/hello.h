/*
 * TLS ClientHello reader: finds the SNI and ALPN in the first bytes a
 * client sends, without consuming them (the caller keeps every byte and
 * replays it to the backend).
 *
 * hello_parse() is a pure function over the bytes received so far. It is
 * resumable: struct hello keeps how far the record walk got, so calling
 * it again after more bytes arrived costs only the new bytes. It
 * reassembles one handshake message split over any number of TLS records
 * and TCP segments (even inside the SNI), caps the message at
 * HELLO_MAX_MSG, and never allocates: a multi-record message is gathered
 * into a caller-provided scratch buffer.
 */
#ifndef MC_HELLO_H
#define MC_HELLO_H

#include <stddef.h>
#include <stdint.h>

#define HELLO_MAX_MSG  16384 /* handshake message body, like nginx/Envoy/BoringSSL */
#define HELLO_MAX_RAW  18432 /* raw bytes (records + headers) buffered for one hello */
#define HELLO_SNI_MAX  255
#define HELLO_ALPN_MAX 255

enum hello_result {
    HELLO_OK = 0,        /* complete ClientHello parsed; see sni_len / alpn_len */
    HELLO_NEED_MORE = 1, /* valid so far, call again with more bytes */
    HELLO_REJECT = 2,    /* see reject */
};

enum hello_reject {
    HELLO_REJECT_NONE = 0,
    HELLO_REJECT_NOT_TLS,   /* not a TLS handshake record, or malformed */
    HELLO_REJECT_TOO_LARGE, /* message over HELLO_MAX_MSG or raw over HELLO_MAX_RAW */
};

struct hello {
    /* resumable record-walk state; zero-initialise before the first call */
    uint32_t next_rec; /* raw offset of the next record header */
    uint32_t msg_have; /* handshake bytes seen in complete records */
    uint32_t msg_need; /* 4 + handshake length, once the header is in */
    uint8_t hs_hdr[4]; /* handshake header, which may itself be split */
    uint8_t hs_hdr_have;
    uint8_t one_record; /* message began and ended in the first record */

    /* results, valid after HELLO_OK */
    enum hello_reject reject;
    uint32_t hello_end; /* raw offset just past the record that completed the message */
    uint16_t sni_len;   /* 0: no server_name extension */
    uint16_t alpn_len;  /* bytes of the ALPN protocol_name_list (wire form, each length-prefixed); 0
                           if none */
    char
        sni[HELLO_SNI_MAX + 1]; /* raw host_name bytes as sent, NUL-terminated; may hold any byte */
    uint8_t alpn[HELLO_ALPN_MAX]; /* truncated copy when longer; alpn_len is then HELLO_ALPN_MAX */
};

/*
 * Parses buf[0..len), all the bytes received on the connection so far
 * (len only grows between calls; earlier bytes never change). scratch
 * must hold HELLO_MAX_MSG bytes; it is only used during the call.
 */
enum hello_result hello_parse(struct hello *h, const uint8_t *buf, size_t len, uint8_t *scratch);

#endif
