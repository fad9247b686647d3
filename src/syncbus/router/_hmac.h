/* Keyed tokens for the router's byte path: libcrypto's HMAC-SHA256 (OpenSSL 3 EVP_MAC),
 * the same HMAC that Python's hmac module runs for the Python path. One keyed context
 * per subscriber secret, re-initialised per token with the key it keeps, so a token
 * costs no allocation (scripts/bench_tokens.py measures it against the alternatives).
 * tests/unit/test_bytepath.py compares every token with core.masking.token. */
#ifndef SYNCBUS_HMAC_H
#define SYNCBUS_HMAC_H

#include <openssl/evp.h>
#include <openssl/params.h>

typedef struct {
    EVP_MAC_CTX *ctx; /* NULL until sb_hmac_key_init */
} sb_hmac_key;

static void sb_hmac_key_free(sb_hmac_key *k) {
    EVP_MAC_CTX_free(k->ctx);
    k->ctx = NULL;
}

/* 0, or -1 when libcrypto could not make the keyed context. */
static int sb_hmac_key_init(sb_hmac_key *k, const unsigned char *key, size_t n) {
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    sb_hmac_key_free(k);
    if (mac == NULL) return -1;
    k->ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (k->ctx == NULL || !EVP_MAC_init(k->ctx, key, n, params)) {
        sb_hmac_key_free(k);
        return -1;
    }
    return 0;
}

/* The first 16 bytes of HMAC-SHA256(key, text) as 32 lowercase hex characters; 0, or
 * -1 when libcrypto failed (then ``out`` must not be used). */
static int sb_hmac_token(sb_hmac_key *k, const unsigned char *text, size_t n, char out[32]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[EVP_MAX_MD_SIZE];
    size_t length = 0;
    int i;
    if (k->ctx == NULL || !EVP_MAC_init(k->ctx, NULL, 0, NULL)
        || !EVP_MAC_update(k->ctx, text, n)
        || !EVP_MAC_final(k->ctx, digest, &length, sizeof digest) || length != 32)
        return -1;
    for (i = 0; i < 16; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    return 0;
}

#endif
