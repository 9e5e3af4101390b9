/* touch: a target for the snapshot benchmark.
 *
 * Usage: touch MIB [write|still [PCT [small|huge [WINDOW_MIB]]]]
 *
 * Allocates MIB MiB of heap in 64 KiB malloc chunks (below glibc's mmap
 * threshold, so it is one big brk heap, as a long-running server's would
 * be) and writes every page with non-zero data. A ticker thread wakes
 * every millisecond and remembers the longest gap between two wake-ups:
 * that is how long the process was stopped, seen from inside, the same
 * way for leaktrail and for gcore.
 *
 * With "write", the ticker also writes one byte into each of the next 64
 * pages of the heap at every tick (round the heap, without end), so the
 * process keeps dirtying memory while, and after, it is snapshotted: what
 * a copy-on-write capture pays for in page copies. With WINDOW_MIB it
 * writes round the first WINDOW_MIB MiB only: a big process whose pages
 * are mostly unchanged during the copy (copy-on-write then copies at most
 * the window).
 *
 * With "huge", the chunks are carved from one mapping advised
 * MADV_HUGEPAGE instead of malloc'd: a heap on transparent huge pages, whose
 * page tables a fork copies 512 times faster.
 *
 * stdout "ready PID" once touched; then on stdin:
 *   'r'  reset the longest gap, answer "reset"
 *   'd'  write one byte into each page of the next PCT percent of the heap
 *        (argv[3], default 5), answer "dirtied"
 *   'g'  answer "gap NS" (longest gap since the last reset, minus the tick)
 *   'f'  fork once, the child exiting at once, and answer "fork NS": how
 *        long the kernel's fork of this address space takes, without
 *        ptrace or leaktrail (the floor of a copy-on-write pause)
 *   'q'  exit
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 1000000LL

static _Atomic long long longest;
static unsigned char **chunks;
static size_t nchunks;
/* Pages the ticker writes round (the whole heap unless WINDOW_MIB). */
static size_t window_pages;
static int writing;

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
        if (writing) {
            static size_t next;
            for (int k = 0; k < 64; k++, next++) {
                size_t page = next % window_pages;
                chunks[page / 16][(page % 16) * 4096] ^= 1;
            }
        }
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
    writing = argc > 2 && strcmp(argv[2], "write") == 0;
    int pct = argc > 3 ? atoi(argv[3]) : 5;
    size_t dirty_next = 0;
    nchunks = n;
    window_pages = n * 16;
    if (argc > 5 && atol(argv[5]) > 0 && (size_t)atol(argv[5]) * 256 < window_pages)
        window_pages = (size_t)atol(argv[5]) * 256;
    chunks = malloc(n * sizeof *chunks);
    if (!chunks)
        return 1;
    unsigned char *huge = NULL;
    if (argc > 4 && strcmp(argv[4], "huge") == 0) {
        huge = mmap(NULL, n * chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (huge == MAP_FAILED)
            return 1;
        madvise(huge, n * chunk, MADV_HUGEPAGE);
    }
    for (size_t i = 0; i < n; i++) {
        chunks[i] = huge ? huge + i * chunk : malloc(chunk);
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
        } else if (c == 'd') {
            size_t pages = n * 16, count = pages * (size_t)pct / 100;
            for (size_t k = 0; k < count; k++, dirty_next++) {
                size_t page = dirty_next % pages;
                chunks[page / 16][(page % 16) * 4096 + 8] += 1;
            }
            printf("dirtied\n");
        } else if (c == 'f') {
            long long t0 = now_ns();
            pid_t child = fork();
            if (child == 0)
                _exit(0);
            long long took = now_ns() - t0;
            waitpid(child, NULL, 0);
            printf("fork %lld\n", took);
        } else if (c == 'g') {
            printf("gap %lld\n", atomic_load(&longest));
        } else if (c == 'q') {
            break;
        }
        fflush(stdout);
    }
    return 0;
}
