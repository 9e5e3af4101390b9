/* touch: a target for the snapshot benchmark.
 *
 * Usage: touch MIB
 *
 * Allocates MIB MiB of heap in 64 KiB malloc chunks (below glibc's mmap
 * threshold, so it is one big brk heap, as a long-running server's would
 * be) and writes every page with non-zero data. A ticker thread wakes
 * every millisecond and remembers the longest gap between two wake-ups:
 * that is how long the process was stopped, seen from inside, the same
 * way for leaktrail and for gcore.
 *
 * stdout "ready PID" once touched; then on stdin:
 *   'r'  reset the longest gap, answer "reset"
 *   'g'  answer "gap NS" (longest gap since the last reset, minus the tick)
 *   'q'  exit
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 1000000LL

static _Atomic long long longest;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *ticker(void *arg)
{
    (void)arg;
    long long last = now_ns();
    struct timespec tick = {0, TICK_NS};
    for (;;) {
        nanosleep(&tick, NULL);
        long long t = now_ns();
        long long gap = t - last - TICK_NS;
        if (gap > atomic_load(&longest))
            atomic_store(&longest, gap);
        last = t;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 100;
    size_t chunk = 64 << 10;
    size_t n = (size_t)mib * (1 << 20) / chunk;
    unsigned char **chunks = malloc(n * sizeof *chunks);
    if (!chunks)
        return 1;
    for (size_t i = 0; i < n; i++) {
        chunks[i] = malloc(chunk);
        if (!chunks[i])
            return 1;
        memset(chunks[i], (int)(i % 251) + 1, chunk);
    }
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char c;
    while (read(0, &c, 1) == 1) {
        if (c == 'r') {
            atomic_store(&longest, 0);
            printf("reset\n");
        } else if (c == 'g') {
            printf("gap %lld\n", atomic_load(&longest));
        } else if (c == 'q') {
            break;
        }
        fflush(stdout);
    }
    return 0;
}
