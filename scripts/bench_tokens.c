/* Per-token cost of keyed tokens (HMAC-SHA256 of a citizen ID, 32 hex characters) in C:
 * the hand-written SHA-256 the byte path used until commit b63833e (router/_sha256.h,
 * taken from git by scripts/bench_tokens.py) against libcrypto's, including the
 * byte path's router/_hmac.h. Built and run by scripts/bench_tokens.py (gcc, libssl-dev). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define sb_hmac_key old_hmac_key
#define sb_hmac_key_init old_hmac_key_init
#define sb_hmac_token old_hmac_token
#include "_sha256.h"
#undef sb_hmac_key
#undef sb_hmac_key_init
#undef sb_hmac_token
#include "_hmac.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void hexify(const unsigned char *d, char out[32]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
}

typedef struct { SHA256_CTX inner, outer; } kept_key;

static void kept_init(kept_key *k, const unsigned char *key, size_t n) {
    unsigned char block[64] = {0};
    memcpy(block, key, n); /* n <= 64 here */
    for (int i = 0; i < 64; i++) block[i] ^= 0x36;
    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, block, 64);
    for (int i = 0; i < 64; i++) block[i] ^= 0x36 ^ 0x5c;
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, block, 64);
}

static void kept_token(const kept_key *k, const unsigned char *t, size_t n, char out[32]) {
    SHA256_CTX s = k->inner;
    unsigned char d[32];
    SHA256_Update(&s, t, n);
    SHA256_Final(d, &s);
    s = k->outer;
    SHA256_Update(&s, d, 32);
    SHA256_Final(d, &s);
    hexify(d, out);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    const unsigned char secret[] = "secret-city.nanjing-0123456789";
    size_t ks = sizeof secret - 1;
    unsigned char text[18];
    memcpy(text, "32050819900307123X", 18);
    char out[32], ref[32];
    unsigned char d[32];
    unsigned int dl;
    volatile char sink = 0;
    double t0, best;

    old_hmac_key sb;
    old_hmac_key_init(&sb, secret, ks);
    sb_hmac_key now_key = {NULL};
    if (sb_hmac_key_init(&now_key, secret, ks)) return 4;
    kept_key kept;
    kept_init(&kept, secret, ks);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *keyed = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_init(keyed, secret, ks, params);

    /* every variant must give the same token */
    old_hmac_token(&sb, text, 18, ref);
    if (sb_hmac_token(&now_key, text, 18, out) || memcmp(out, ref, 32)) return 5;
    kept_token(&kept, text, 18, out);
    if (memcmp(out, ref, 32)) return 1;
    HMAC(EVP_sha256(), secret, ks, text, 18, d, &dl);
    hexify(d, out);
    if (memcmp(out, ref, 32)) return 2;

#define MEASURE(label, body)                                                  \
    best = 1e9;                                                               \
    for (int r = 0; r < 5; r++) {                                             \
        t0 = now();                                                           \
        for (long i = 0; i < n; i++) {                                        \
            text[17 - (i & 7)] ^= 1;                                          \
            body;                                                             \
            sink ^= out[0];                                                   \
        }                                                                     \
        double per = (now() - t0) / n * 1e9;                                  \
        if (per < best) best = per;                                           \
    }                                                                         \
    printf("{\"impl\": \"%s\", \"ns_per_token\": %.1f}\n", label, best);

    MEASURE("c: hand-written SHA-256, kept key states (router/_sha256.h until b63833e)",
            old_hmac_token(&sb, text, 18, out));
    MEASURE("c: router/_hmac.h now (libcrypto EVP_MAC, keyed context re-initialised)",
            sb_hmac_token(&now_key, text, 18, out));
    MEASURE("c: libcrypto SHA256 (SHA-NI), kept key states",
            kept_token(&kept, text, 18, out));
    MEASURE("c: libcrypto HMAC() one-shot",
            (HMAC(EVP_sha256(), secret, ks, text, 18, d, &dl), hexify(d, out)));
    size_t ol;
    MEASURE("c: libcrypto EVP_MAC, keyed context duplicated per token", ({
                EVP_MAC_CTX *c = EVP_MAC_CTX_dup(keyed);
                EVP_MAC_update(c, text, 18);
                EVP_MAC_final(c, d, &ol, sizeof d);
                EVP_MAC_CTX_free(c);
                hexify(d, out);
            }));
    EVP_MAC_CTX_free(keyed);
    sb_hmac_key_free(&now_key);
    EVP_MAC_free(mac);
    return sink == 127 ? 3 : 0;
}
