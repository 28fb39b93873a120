/* Counts the primes in one slice of the integers: unit N covers [N*SPAN, (N+1)*SPAN).
 * Usage: primes N [SPAN]   (SPAN defaults to 100000). Prints "N count". */
#include <stdio.h>
#include <stdlib.h>

static int is_prime(unsigned long long n) {
    if (n < 2) return 0;
    if (n % 2 == 0) return n == 2;
    if (n % 3 == 0) return n == 3;
    for (unsigned long long d = 5; d * d <= n; d += 6)
        if (n % d == 0 || n % (d + 2) == 0) return 0;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: primes N [SPAN]\n");
        return 2;
    }
    unsigned long long n = strtoull(argv[1], 0, 10);
    unsigned long long span = argc > 2 ? strtoull(argv[2], 0, 10) : 100000;
    unsigned long long count = 0;
    for (unsigned long long k = n * span; k < (n + 1) * span; k++) count += is_prime(k);
    printf("%llu %llu\n", n, count);
    return 0;
}
