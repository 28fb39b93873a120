/* Energy minimisation of a Lennard-Jones cluster, the classic benchmark of molecular
 * structure search (LJ_N, reduced units: epsilon = sigma = 1). Each unit starts N atoms
 * at random in a sphere (seeded by the unit number, so it is reproducible anywhere),
 * relaxes them with FIRE (Bitzek et al., PRL 97, 170201) and prints the local minimum
 * it reached; the lowest over all units is the search's answer (LJ13's global minimum
 * is -44.326801).
 * Usage: lj SEED [N] [STEPS] [TOL]   (N defaults to 13, STEPS to 20000; it stops early
 * once the force is under TOL per atom, 1e-10 by default; 0 runs every step).
 * Prints "seed energy steps". */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXN 128

static double x[MAXN][3], v[MAXN][3], f[MAXN][3];
static int n;

static double forces(void) {
    double e = 0;
    for (int i = 0; i < n; i++) f[i][0] = f[i][1] = f[i][2] = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double d[3], r2 = 0;
            for (int k = 0; k < 3; k++) {
                d[k] = x[i][k] - x[j][k];
                r2 += d[k] * d[k];
            }
            double ir2 = 1.0 / r2, ir6 = ir2 * ir2 * ir2;
            e += 4.0 * (ir6 * ir6 - ir6);
            double g = 24.0 * ir2 * (2.0 * ir6 * ir6 - ir6);
            for (int k = 0; k < 3; k++) {
                f[i][k] += g * d[k];
                f[j][k] -= g * d[k];
            }
        }
    return e;
}

static uint64_t state;
static double uniform(void) { /* splitmix64 */
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (z >> 11) * 0x1.0p-53;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: lj SEED [N] [STEPS]\n");
        return 2;
    }
    state = strtoull(argv[1], 0, 10);
    n = argc > 2 ? atoi(argv[2]) : 13;
    int steps = argc > 3 ? atoi(argv[3]) : 20000;
    double tol = argc > 4 ? atof(argv[4]) : 1e-10;
    if (n < 2 || n > MAXN) {
        fprintf(stderr, "N must be 2..%d\n", MAXN);
        return 2;
    }
    double radius = cbrt((double)n) * 0.8;
    for (int i = 0; i < n; i++) {
        double p[3], r2;
        do {
            r2 = 0;
            for (int k = 0; k < 3; k++) {
                p[k] = (2 * uniform() - 1) * radius;
                r2 += p[k] * p[k];
            }
        } while (r2 > radius * radius);
        int ok = 1;
        for (int j = 0; j < i && ok; j++) {
            double d2 = 0;
            for (int k = 0; k < 3; k++) d2 += (p[k] - x[j][k]) * (p[k] - x[j][k]);
            ok = d2 > 0.64;
        }
        if (!ok) { i--; continue; }
        for (int k = 0; k < 3; k++) { x[i][k] = p[k]; v[i][k] = 0; }
    }
    /* FIRE */
    double dt = 0.002, dtmax = 0.02, alpha = 0.1, e = forces();
    int since = 0, step;
    for (step = 0; step < steps; step++) {
        double p = 0, vn = 0, fn = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 3; k++) {
                p += f[i][k] * v[i][k];
                vn += v[i][k] * v[i][k];
                fn += f[i][k] * f[i][k];
            }
        if (sqrt(fn) < tol * n) break;
        vn = sqrt(vn);
        fn = sqrt(fn);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 3; k++)
                v[i][k] = (1 - alpha) * v[i][k] + alpha * vn * f[i][k] / fn;
        if (p > 0) {
            if (++since > 5) {
                dt = fmin(dt * 1.1, dtmax);
                alpha *= 0.99;
            }
        } else {
            since = 0;
            dt *= 0.5;
            alpha = 0.1;
            for (int i = 0; i < n; i++) v[i][0] = v[i][1] = v[i][2] = 0;
        }
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 3; k++) {
                v[i][k] += dt * f[i][k];
                x[i][k] += dt * v[i][k];
            }
        e = forces();
    }
    printf("%s %.6f %d\n", argv[1], e, step);
    return 0;
}
