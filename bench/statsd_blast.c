/* statsd_blast.c - send single-metric StatsD datagrams ("NAME:1|c") at a fixed rate.
 *
 * Usage: statsd_blast --port P [--host H] [--rate PPS] [--duration S] [--name NAME]
 * Paced like netbench udp-blast (absolute schedule, no catching up beyond the schedule);
 * --rate 0 sends as fast as possible. Prints one final line:
 *   statsd-blast rate=.. duration=.. sent=.. pps=.. errors=..
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *name = "bench.blast";
    int port = 8125;
    double rate = 100000, duration = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration")) duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--name")) name = argv[i + 1];
        else { fprintf(stderr, "usage: statsd_blast --port P [--host H] [--rate PPS] [--duration S] [--name NAME]\n"); return 2; }
    }
    char msg[256];
    int len = snprintf(msg, sizeof msg, "%s:1|c", name);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("socket"); return 1; }
    unsigned long long sent = 0, errors = 0;
    double t0 = now(), tend = t0 + duration, t;
    while ((t = now()) < tend) {
        if (rate > 0) {
            double ahead = (sent + errors + 1) / rate - (t - t0);
            if (ahead > 0) {
                if (ahead > 100e-6) { struct timespec ts = {0, (long)(ahead * 1e9)}; nanosleep(&ts, NULL); }
                continue;
            }
        }
        if (send(fd, msg, len, 0) < 0) errors++;
        else sent++;
    }
    double el = now() - t0;
    printf("statsd-blast rate=%.0f duration=%.2f sent=%llu pps=%.0f errors=%llu\n", rate, el, sent, sent / el, errors);
    close(fd);
    return 0;
}
