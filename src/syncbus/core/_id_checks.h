/* The check digits of citizen IDs (GB 11643) and USCCs (GB 32100) on ASCII bytes,
 * shared by core/_formats.pyx (the validator's fast checks, given a str's UTF-8)
 * and router/_bytepath.pyx (the router's byte path). An 18-character code is 18
 * bytes of UTF-8 exactly when it is ASCII, so both answer what validation's Python
 * versions answer; tests/unit/test_validation_fast.py compares them. */
#ifndef SYNCBUS_ID_CHECKS_H
#define SYNCBUS_ID_CHECKS_H

#include <stddef.h>

/* 1 when s is an 18-character USCC whose check digit is right, else 0. */
static int sb_uscc_ok(const unsigned char *s, size_t n) {
    static const char alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    static signed char value[256];  /* a byte's place in the alphabet, or -1 */
    static int ready = 0;
    int p, d, total = 0, weight = 1;
    if (!ready) {
        for (p = 0; p < 256; p++) value[p] = -1;
        for (p = 0; p < 31; p++) value[(unsigned char)alphabet[p]] = (signed char)p;
        ready = 1;
    }
    if (n != 18) return 0;
    for (p = 0; p < 17; p++) {
        d = value[s[p]];
        if (d < 0 || (p < 8 && d > 9)) return 0;
        total = (total + d * weight) % 31;
        weight = weight * 3 % 31;
    }
    return s[17] == (unsigned char)alphabet[(31 - total) % 31];
}

/* The digits, check digit and birth date of an 18-character citizen ID. Returns
 * the birth place to ask about, region * 10000 + year (always > 0), or 0 when the
 * ID is already refused; the birth place verdict is the caller's (stdnum's). */
static long long sb_citizen_id_place(const unsigned char *s, size_t n) {
    static const int days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int p, d, acc = 0, region = 0, y = 0, m = 0, day = 0, last;
    if (n != 18) return 0;
    for (p = 0; p < 17; p++) {
        if (s[p] < '0' || s[p] > '9') return 0;
        d = s[p] - '0';
        acc = (acc * 13 + d) % 11;
        if (p < 6) region = region * 10 + d;
        else if (p < 10) y = y * 10 + d;
        else if (p < 12) m = m * 10 + d;
        else if (p < 14) day = day * 10 + d;
    }
    if (s[17] != (unsigned char)"0123456789X"[((1 - 2 * acc) % 11 + 11) % 11]) return 0;
    if (y < 1 || m < 1 || m > 12 || day < 1) return 0;
    last = (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : days[m];
    if (day > last) return 0;
    return (long long)region * 10000 + y;
}

#endif
