/* A Monte Carlo estimate of pi: SAMPLES points in the unit square, counting those in
 * the quarter circle. The generator is seeded from getentropy(), which the sandbox
 * answers with the unit's own seeded stream, so every volunteer draws the same points.
 * Usage: pi [SAMPLES]   (default 1000000). Prints "hits samples". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t s[2];

static uint64_t next(void) { /* xorshift128+ */
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

int main(int argc, char **argv) {
    uint64_t samples = argc > 1 ? strtoull(argv[1], 0, 10) : 1000000;
    if (getentropy(s, sizeof s) != 0) {
        fprintf(stderr, "no entropy\n");
        return 1;
    }
    uint64_t hits = 0;
    for (uint64_t i = 0; i < samples; i++) {
        double x = (next() >> 11) * 0x1.0p-53, y = (next() >> 11) * 0x1.0p-53;
        hits += x * x + y * y < 1.0;
    }
    printf("%llu %llu\n", (unsigned long long)hits, (unsigned long long)samples);
    return 0;
}
