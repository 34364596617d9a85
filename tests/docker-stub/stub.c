/*
 * berth-stub: the tiny static program every Docker test image is made of (test code only).
 *
 *   stub serve [--port N]   HTTP on N (default 8080): /health answers 200, or 500 when
 *                           STUB_UNHEALTHY is set or /tmp/unhealthy exists; anything else
 *                           answers 200 with the image's /etc/stub-version
 *   stub work               a worker: sleeps forever
 *   stub health --port N    exit 0 when http://127.0.0.1:N/health answers 200 (health checks)
 *   stub fail               exit 1 at once (a container that cannot start)
 *   stub client HOST PORT SECONDS
 *                           GET / on HOST:PORT in a loop for SECONDS (HOST resolved anew for
 *                           every request, so a network alias that moves is followed), then
 *                           print `ok=N failed=M` and exit 0: counts failed requests during
 *                           a rollout
 *
 * `serve` answers with STUB_SAY when set (a tenant can say its name), else the version and
 * the container's hostname (berth sets it to the container's name).
 *
 * SIGTERM/SIGINT end it at once, so `docker stop` does not wait for its timeout while the
 * stub runs as PID 1. Built with `gcc -static`, imported with `docker import`: no registry.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <time.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void bye(int sig) { (void)sig; _exit(0); }

static int port_arg(int argc, char **argv) {
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0) return atoi(argv[i + 1]);
    return 8080;
}

static int serve(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0) { perror("listen"); return 1; }
    char version[128] = "berth-stub";
    FILE *f = fopen("/etc/stub-version", "r");
    if (f) { if (!fgets(version, sizeof version, f)) strcpy(version, "berth-stub"); fclose(f); }
    version[strcspn(version, "\n")] = 0;
    const char *say = getenv("STUB_SAY");
    if (say && *say) { strncpy(version, say, sizeof version - 1); version[sizeof version - 1] = 0; }
    else {
        /* berth sets the container's hostname to its name: `<version> <container>`. */
        char host[64] = {0};
        if (gethostname(host, sizeof host - 1) == 0 && *host) {
            size_t used = strlen(version);
            snprintf(version + used, sizeof version - used, " %s", host);
        }
    }
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        char req[1024] = {0};
        ssize_t n = read(c, req, sizeof req - 1);
        (void)n;
        int health = strncmp(req, "GET /health", 11) == 0;
        int sick = health && (getenv("STUB_UNHEALTHY") || access("/tmp/unhealthy", F_OK) == 0);
        char out[512];
        const char *body = health ? (sick ? "unhealthy" : "ok") : version;
        int len = snprintf(out, sizeof out, "HTTP/1.0 %s\r\nContent-Length: %zu\r\n\r\n%s",
                           sick ? "500 Internal Server Error" : "200 OK", strlen(body), body);
        if (write(c, out, len) < 0) perror("write");
        close(c);
    }
}

static int health(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    const char *req = "GET /health HTTP/1.0\r\n\r\n";
    if (write(s, req, strlen(req)) < 0) return 1;
    char resp[64] = {0};
    if (read(s, resp, sizeof resp - 1) <= 0) return 1;
    return strstr(resp, " 200 ") ? 0 : 1;
}

static int request(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res = 0;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) return 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int ok = 0;
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect() too */
    if (connect(s, res->ai_addr, res->ai_addrlen) == 0) {
        const char *req = "GET / HTTP/1.0\r\n\r\n";
        char resp[64] = {0};
        if (write(s, req, strlen(req)) > 0 && read(s, resp, sizeof resp - 1) > 0)
            ok = strstr(resp, " 200 ") != 0;
    }
    close(s);
    freeaddrinfo(res);
    return ok;
}

static int client(const char *host, const char *port, int seconds) {
    long ok = 0, failed = 0;
    time_t end = time(0) + seconds;
    while (time(0) < end) {
        if (request(host, port)) ok++; else failed++;
        usleep(2000);
    }
    printf("ok=%ld failed=%ld\n", ok, failed);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGTERM, bye);
    signal(SIGINT, bye);
    /* Installed under other names in example images: a Postgres readiness check, a worker. */
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (strcmp(base, "pg_isready") == 0) return health(5432);
    if (strcmp(base, "worker") == 0) for (;;) pause();
    const char *mode = argc > 1 ? argv[1] : "serve";
    if (strcmp(mode, "serve") == 0) return serve(port_arg(argc, argv));
    if (strcmp(mode, "health") == 0) return health(port_arg(argc, argv));
    if (strcmp(mode, "work") == 0) for (;;) pause();
    if (strcmp(mode, "fail") == 0) return 1;
    if (strcmp(mode, "client") == 0 && argc > 4) return client(argv[2], argv[3], atoi(argv[4]));
    fprintf(stderr, "usage: stub serve|work|health|fail [--port N] | client HOST PORT SECONDS\n");
    return 2;
}
