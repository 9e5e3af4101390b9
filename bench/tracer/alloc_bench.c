/* Allocation-heavy benchmark for the tracer.
 *
 *   alloc_bench THREADS PAIRS_PER_THREAD DEPTH
 *
 * Each thread recurses DEPTH frames through code built without frame
 * pointers (so an unwinder needs CFI), then runs a tight loop of
 * malloc+free pairs of mixed sizes, keeping a small window of blocks live
 * so the allocator and the tracer's table see real traffic. Prints the
 * time per pair measured inside the loop and a checksum. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long pairs;
static int depth;

static const size_t sizes[8] = {16, 24, 48, 64, 100, 256, 512, 4000};

__attribute__((noinline)) static uint64_t hot_loop(void) {
    void *window[16] = {0};
    uint64_t sum = 0;
    for (long i = 0; i < pairs; i++) {
        size_t n = sizes[(i * 7) & 7];
        void *p = malloc(n);
        ((volatile char *)p)[0] = (char)i;
        int slot = i & 15;
        free(window[slot]);
        window[slot] = p;
        sum += (uintptr_t)p >> 4 & 1;
    }
    for (int s = 0; s < 16; s++) free(window[s]);
    return sum;
}

__attribute__((noinline)) static uint64_t descend(int n, volatile int *guard) {
    if (n == 0) return hot_loop();
    uint64_t r = descend(n - 1, guard) + (uint64_t)*guard;
    *guard += 1; /* keeps the call from being a tail call */
    return r;
}

static void *worker(void *arg) {
    volatile int guard = 0;
    *(uint64_t *)arg = descend(depth, &guard);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    pairs = argc > 2 ? atol(argv[2]) : 1000000;
    depth = argc > 3 ? atoi(argv[3]) : 25;
    pthread_t th[64];
    uint64_t sums[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, &sums[i]);
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) { pthread_join(th[i], NULL); total += sums[i]; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("threads=%d pairs=%ld depth=%d wall_ns_per_pair=%.1f checksum=%lu\n", threads, pairs, depth,
           ns / (double)pairs, (unsigned long)total);
    return 0;
}
