/* heap: a large heap of linked buffers for the findleaks benchmark.
 *
 *   heap BLOCKS [--exit]
 *
 * Builds BLOCKS live buffers of 64..800 bytes (430 on average: 10 M blocks
 * make about 4 GiB) in lists of 1000. Word 0 of each buffer points to the
 * next in its list, word 1 to a random earlier buffer of the same list;
 * the rest is data that does not look like a pointer (32-bit values), as
 * in most real heaps. A global array holds the list heads; every 100th
 * list is dropped (its head pointer cleared), so 1% of the buffers leak:
 * per dropped list one definitely lost head and 999 indirectly lost.
 *
 * Prints "ready PID BLOCKS LEAKED_BLOCKS LEAKED_BYTES TOTAL_BYTES" and
 * waits for a byte on stdin, or with --exit returns at once (for
 * valgrind --leak-check=full, which checks at exit).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIST 1000

static void **heads;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static inline uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

__attribute__((noinline)) static void *make_node(size_t size)
{
    uint64_t *p = malloc(size);
    if (!p)
        abort();
    size_t words = size / 8;
    for (size_t i = 2; i < words; i++)
        p[i] = next_rand() & 0xffffffffu;
    return p;
}

__attribute__((noinline)) static void *build_list(uint64_t *bytes)
{
    void *nodes[LIST];
    for (int i = 0; i < LIST; i++) {
        size_t size = 64 + (next_rand() % 737);
        *bytes += size;
        nodes[i] = make_node(size);
    }
    for (int i = 0; i < LIST; i++) {
        void **n = nodes[i];
        n[0] = i + 1 < LIST ? nodes[i + 1] : NULL;
        n[1] = nodes[next_rand() % (i + 1)];
    }
    return nodes[0];
}

int main(int argc, char **argv)
{
    long blocks = argc > 1 ? atol(argv[1]) : 10000000;
    int exit_now = argc > 2 && strcmp(argv[2], "--exit") == 0;
    long lists = blocks / LIST;
    heads = calloc(lists, sizeof *heads);
    uint64_t total = 0, leaked_bytes = 0;
    long leaked_blocks = 0;
    for (long l = 0; l < lists; l++) {
        uint64_t bytes = 0;
        heads[l] = build_list(&bytes);
        total += bytes;
        if (l % 100 == 99) {
            heads[l] = NULL;
            leaked_blocks += LIST;
            leaked_bytes += bytes;
        }
    }
    printf("ready %d %ld %ld %llu %llu\n", (int)getpid(), lists * LIST, leaked_blocks,
           (unsigned long long)leaked_bytes, (unsigned long long)total);
    fflush(stdout);
    if (!exit_now) {
        char c;
        if (read(0, &c, 1) < 0)
            return 1;
    }
    return 0;
}
