/* What a work unit can and cannot reach: its args, stdin and input files, and files it
 * writes; not the clock, the host's files, sockets or the environment. Prints one line
 * per probe. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("argc %d argv1 %s\n", argc, argc > 1 ? argv[1] : "-");
    char line[256] = {0};
    if (fgets(line, sizeof line, stdin)) printf("stdin %s", line);
    FILE *in = fopen("in.txt", "r");
    FILE *out = fopen("out.txt", "w");
    if (in && out) {
        int c;
        while ((c = fgetc(in)) != EOF) fputc(toupper(c), out);
        fclose(in);
        fclose(out);
        printf("copied\n");
    } else {
        printf("files missing\n");
    }
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    printf("clock %d errno %d\n", r, r ? errno : 0);
    printf("time %lld\n", (long long)time(NULL));
    FILE *host = fopen("/etc/passwd", "r");
    printf("host file %s errno %d\n", host ? "OPEN" : "refused", host ? 0 : errno);
    FILE *up = fopen("../secret", "r");
    printf("parent %s\n", up ? "OPEN" : "refused");
    printf("env %s\n", getenv("HOME") ? getenv("HOME") : "none");
    unsigned char rnd[8];
    getentropy(rnd, sizeof rnd);
    printf("random %02x%02x%02x%02x\n", rnd[0], rnd[1], rnd[2], rnd[3]);
    char buf[4];
    int s = recv(3, buf, sizeof buf, 0);
    printf("socket %d errno %d\n", s, s < 0 ? errno : 0);
    return 3;
}
