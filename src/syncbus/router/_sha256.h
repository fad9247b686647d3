/* SHA-256 (FIPS 180-4) for the router's byte path: keyed tokens (HMAC-SHA256) of
 * short values, computed from the two hash states kept per subscriber secret, with
 * no Python object per token. tests/unit/test_bytepath.py compares every token with
 * Python's hmac module. */
#ifndef SYNCBUS_SHA256_H
#define SYNCBUS_SHA256_H

#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t h[8];
    uint64_t length;      /* bytes absorbed so far */
    unsigned char block[64];
    size_t used;          /* bytes waiting in block */
} sb_sha256;

static const uint32_t sb_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define SB_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sb_sha256_compress(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, hh, t1, t2;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
             | (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = SB_ROTR(w[i - 15], 7) ^ SB_ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = SB_ROTR(w[i - 2], 17) ^ SB_ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (i = 0; i < 64; i++) {
        t1 = hh + (SB_ROTR(e, 6) ^ SB_ROTR(e, 11) ^ SB_ROTR(e, 25)) + ((e & f) ^ (~e & g))
           + sb_k[i] + w[i];
        t2 = (SB_ROTR(a, 2) ^ SB_ROTR(a, 13) ^ SB_ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sb_sha256_init(sb_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->length = 0;
    s->used = 0;
}

static void sb_sha256_update(sb_sha256 *s, const unsigned char *p, size_t n) {
    s->length += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take; p += take; n -= take;
        if (s->used < 64) return;
        sb_sha256_compress(s->h, s->block);
        s->used = 0;
    }
    while (n >= 64) {
        sb_sha256_compress(s->h, p);
        p += 64; n -= 64;
    }
    memcpy(s->block, p, n);
    s->used = n;
}

static void sb_sha256_final(sb_sha256 *s, unsigned char out[32]) {
    uint64_t bits = s->length * 8;
    unsigned char pad = 0x80;
    unsigned char zero = 0;
    unsigned char len[8];
    int i;
    sb_sha256_update(s, &pad, 1);
    while (s->used != 56) sb_sha256_update(s, &zero, 1);
    for (i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sb_sha256_update(s, len, 8);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)s->h[i];
    }
}

/* HMAC (RFC 2104) keyed states: SHA-256 after the key padded with 0x36 and 0x5c. */
typedef struct {
    sb_sha256 inner, outer;
} sb_hmac_key;

static void sb_hmac_key_init(sb_hmac_key *k, const unsigned char *key, size_t n) {
    unsigned char block[64], digest[32];
    int i;
    if (n > 64) {
        sb_sha256 s;
        sb_sha256_init(&s);
        sb_sha256_update(&s, key, n);
        sb_sha256_final(&s, digest);
        key = digest;
        n = 32;
    }
    memset(block, 0, 64);
    memcpy(block, key, n);
    for (i = 0; i < 64; i++) block[i] ^= 0x36;
    sb_sha256_init(&k->inner);
    sb_sha256_update(&k->inner, block, 64);
    for (i = 0; i < 64; i++) block[i] ^= 0x36 ^ 0x5c;
    sb_sha256_init(&k->outer);
    sb_sha256_update(&k->outer, block, 64);
}

/* The first 16 bytes of HMAC-SHA256(key, text) as 32 lowercase hex characters. */
static void sb_hmac_token(const sb_hmac_key *k, const unsigned char *text, size_t n,
                          char out[32]) {
    static const char hex[] = "0123456789abcdef";
    sb_sha256 s = k->inner;
    unsigned char digest[32];
    int i;
    sb_sha256_update(&s, text, n);
    sb_sha256_final(&s, digest);
    s = k->outer;
    sb_sha256_update(&s, digest, 32);
    sb_sha256_final(&s, digest);
    for (i = 0; i < 16; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
}

#endif
