/* A benchmark whose allocation stacks change (issue 13): unlike
 * alloc_bench.c's one hot loop, every iteration re-enters a recursion of
 * DEPTH - LEVELS frames from the top, then descends a tree of LEVELS
 * levels of four functions each, chosen by the iteration number, and
 * allocates at the bottom: 4^LEVELS = 4,096 distinct call sites, the
 * stack differing from the previous one in its innermost frames.
 *
 *   alloc_changing THREADS ITERS_PER_THREAD DEPTH
 *
 * Built without frame pointers (an unwinder needs CFI). Each iteration
 * is one malloc (mixed sizes) and one free (of a block kept in a small
 * window), so the tracer's tables see real traffic. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LEVELS 6

typedef void *(*step_fn)(unsigned k, size_t n);

static step_fn table[LEVELS + 1][4];
/* Per thread: a shared one would bounce its line between the threads. */
static __thread volatile unsigned sink;
static long iters;
static int depth;

static const size_t sizes[8] = {16, 24, 48, 64, 100, 256, 512, 4000};

/* Level 0 allocates; level L > 0 calls one of level L-1's four. The
 * volatile store after the call keeps it from being a tail call, so each
 * function's return address is its own call site. */
#define LEAF(V)                                                              \
    __attribute__((noinline)) static void *f_0_##V(unsigned k, size_t n) {   \
        (void)k;                                                             \
        void *p = malloc(n);                                                 \
        ((volatile char *)p)[0] = (char)V;                                   \
        sink += V;                                                           \
        return p;                                                            \
    }
#define STEP(L, V)                                                           \
    __attribute__((noinline)) static void *f_##L##_##V(unsigned k, size_t n) { \
        void *p = table[L - 1][k & 3](k >> 2, n);                            \
        sink += V;                                                           \
        return p;                                                            \
    }
#define LEVEL(L) STEP(L, 0) STEP(L, 1) STEP(L, 2) STEP(L, 3)

LEAF(0) LEAF(1) LEAF(2) LEAF(3)
LEVEL(1) LEVEL(2) LEVEL(3) LEVEL(4) LEVEL(5) LEVEL(6)

#define ROW(L) {f_##L##_0, f_##L##_1, f_##L##_2, f_##L##_3}
static step_fn table[LEVELS + 1][4] = {ROW(0), ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

__attribute__((noinline)) static void *descend(int n, unsigned k, size_t size) {
    if (n <= 0) return table[LEVELS][k & 3](k >> 2, size);
    void *p = descend(n - 1, k, size);
    sink += 1;
    return p;
}

static void *worker(void *arg) {
    void *window[16] = {0};
    uint64_t sum = 0;
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (long i = 0; i < iters; i++) {
        unsigned k = (unsigned)i * 2654435761u + seed;
        void *p = descend(depth - LEVELS - 2, k >> 8, sizes[(i * 7) & 7]);
        int slot = i & 15;
        free(window[slot]);
        window[slot] = p;
        sum += (uintptr_t)p >> 4 & 1;
    }
    for (int s = 0; s < 16; s++) free(window[s]);
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    iters = argc > 2 ? atol(argv[2]) : 1000000;
    depth = argc > 3 ? atoi(argv[3]) : 25;
    pthread_t th[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < threads && i < 64; i++)
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i * 977));
    uint64_t total = 0;
    for (int i = 0; i < threads && i < 64; i++) {
        void *r;
        pthread_join(th[i], &r);
        total += (uintptr_t)r;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("threads=%d iters=%ld depth=%d wall_ns_per_iter=%.1f checksum=%lu\n", threads, iters, depth,
           ns / (double)iters, (unsigned long)total);
    return 0;
}
