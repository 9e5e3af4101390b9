/* C++'s replaceable allocation operators, for allocators that define their
 * own (tcmalloc, jemalloc, mimalloc export `operator new` and `delete`,
 * which do not call `malloc`), and mimalloc's `mi_new` and `mi_free`
 * family (below): each forwards to the next definition, the
 * one the program would call without us, and records around it through
 * operators.rs, which decides which definition that is and whether its
 * blocks are recorded here (see there).
 *
 * Why C: a throwing `operator new` (std::bad_alloc, or whatever the
 * program's new-handler throws) must unwind through our frame into the
 * program's handler. A Rust frame cannot let it pass: with panic=abort a
 * foreign exception that reaches one aborts the process, with the
 * "C-unwind" ABI too (tried: "panic in a function that cannot unwind"),
 * and a pure tail call needs naked functions (Rust 1.88, above our
 * rust-version). A C frame with unwind tables is transparent to the
 * unwinder, and we record only after the real operator returned, so an
 * exception skips nothing of ours. The Rust functions called here never
 * unwind. The tracer's unwinder skips these frames as its own.
 *
 * Exported by the version script build.rs adds (rustc's exports only the
 * Rust crate's own symbols). */
#include <stddef.h>

/* Indices shared with operators.rs (`NAMES`). */
enum {
    NEW,
    NEW_ARRAY,
    NEW_NOTHROW,
    NEW_ARRAY_NOTHROW,
    NEW_ALIGNED,
    NEW_ARRAY_ALIGNED,
    NEW_ALIGNED_NOTHROW,
    NEW_ARRAY_ALIGNED_NOTHROW,
    DELETE,
    DELETE_ARRAY,
    DELETE_NOTHROW,
    DELETE_ARRAY_NOTHROW,
    DELETE_SIZED,
    DELETE_ARRAY_SIZED,
    DELETE_ALIGNED,
    DELETE_ARRAY_ALIGNED,
    DELETE_ALIGNED_NOTHROW,
    DELETE_ARRAY_ALIGNED_NOTHROW,
    DELETE_SIZED_ALIGNED,
    DELETE_ARRAY_SIZED_ALIGNED,
    MI_NEW,
    MI_NEW_NOTHROW,
    MI_NEW_ALIGNED,
    MI_NEW_ALIGNED_NOTHROW,
    MI_FREE,
    MI_FREE_SIZE,
    MI_FREE_ALIGNED,
    MI_FREE_SIZE_ALIGNED,
};

/* operators.rs */
void *leaktrail_operator_next(unsigned which, int *record);
void leaktrail_operator_allocated(void *p, size_t size);
int leaktrail_operator_freeing(void *p);
void *leaktrail_operator_unresolved_new(size_t size, size_t align, int nothrow);
void leaktrail_operator_unresolved_delete(void *p);
int leaktrail_called_by_allocator(const void *return_address);

#define EXPORT __attribute__((visibility("default")))

/* `std::align_val_t` is passed as a `size_t`, `const std::nothrow_t &` as a
 * pointer. */
/* One allocating entry point. `forward_from_allocator`: a call whose
 * return address lies in the allocator's code or ours is only forwarded
 * (the allocator's own entry points, which it and our operators call). */
#define NEW_ENTRY(name, which, params, args, align, nothrow,                \
                  forward_from_allocator)                                   \
    EXPORT void *name params {                                              \
        int record;                                                         \
        void *next = leaktrail_operator_next(which, &record);              \
        if (!next)                                                          \
            return leaktrail_operator_unresolved_new(size, align, nothrow); \
        if (record && (forward_from_allocator) &&                           \
            leaktrail_called_by_allocator(__builtin_return_address(0)))     \
            record = 0;                                                     \
        void *p = ((void *(*)params)next) args;                             \
        if (record)                                                         \
            leaktrail_operator_allocated(p, size);                          \
        return p;                                                           \
    }

/* One freeing entry point; `forward_from_allocator` as above. */
#define DELETE_ENTRY(name, which, params, args, forward_from_allocator) \
    EXPORT void name params {                                          \
        int record;                                                    \
        void *next = leaktrail_operator_next(which, &record);          \
        if (!next) {                                                   \
            leaktrail_operator_unresolved_delete(p);                   \
            return;                                                    \
        }                                                              \
        if (record &&                                                  \
            !((forward_from_allocator) &&                              \
              leaktrail_called_by_allocator(__builtin_return_address(0))) \
            && !leaktrail_operator_freeing(p))                         \
            return;                                                    \
        ((void (*)params)next) args;                                   \
    }

#define NEW_OPERATOR(name, which, params, args, align, nothrow) \
    NEW_ENTRY(name, which, params, args, align, nothrow, 0)
#define DELETE_OPERATOR(name, which, params, args) \
    DELETE_ENTRY(name, which, params, args, 0)

NEW_OPERATOR(_Znwm, NEW, (size_t size), (size), 0, 0)
NEW_OPERATOR(_Znam, NEW_ARRAY, (size_t size), (size), 0, 0)
NEW_OPERATOR(_ZnwmRKSt9nothrow_t, NEW_NOTHROW, (size_t size, const void *tag),
             (size, tag), 0, 1)
NEW_OPERATOR(_ZnamRKSt9nothrow_t, NEW_ARRAY_NOTHROW,
             (size_t size, const void *tag), (size, tag), 0, 1)
NEW_OPERATOR(_ZnwmSt11align_val_t, NEW_ALIGNED, (size_t size, size_t align),
             (size, align), align, 0)
NEW_OPERATOR(_ZnamSt11align_val_t, NEW_ARRAY_ALIGNED,
             (size_t size, size_t align), (size, align), align, 0)
NEW_OPERATOR(_ZnwmSt11align_val_tRKSt9nothrow_t, NEW_ALIGNED_NOTHROW,
             (size_t size, size_t align, const void *tag), (size, align, tag),
             align, 1)
NEW_OPERATOR(_ZnamSt11align_val_tRKSt9nothrow_t, NEW_ARRAY_ALIGNED_NOTHROW,
             (size_t size, size_t align, const void *tag), (size, align, tag),
             align, 1)

DELETE_OPERATOR(_ZdlPv, DELETE, (void *p), (p))
DELETE_OPERATOR(_ZdaPv, DELETE_ARRAY, (void *p), (p))
DELETE_OPERATOR(_ZdlPvRKSt9nothrow_t, DELETE_NOTHROW,
                (void *p, const void *tag), (p, tag))
DELETE_OPERATOR(_ZdaPvRKSt9nothrow_t, DELETE_ARRAY_NOTHROW,
                (void *p, const void *tag), (p, tag))
DELETE_OPERATOR(_ZdlPvm, DELETE_SIZED, (void *p, size_t size), (p, size))
DELETE_OPERATOR(_ZdaPvm, DELETE_ARRAY_SIZED, (void *p, size_t size), (p, size))
DELETE_OPERATOR(_ZdlPvSt11align_val_t, DELETE_ALIGNED, (void *p, size_t align),
                (p, align))
DELETE_OPERATOR(_ZdaPvSt11align_val_t, DELETE_ARRAY_ALIGNED,
                (void *p, size_t align), (p, align))
DELETE_OPERATOR(_ZdlPvSt11align_val_tRKSt9nothrow_t, DELETE_ALIGNED_NOTHROW,
                (void *p, size_t align, const void *tag), (p, align, tag))
DELETE_OPERATOR(_ZdaPvSt11align_val_tRKSt9nothrow_t,
                DELETE_ARRAY_ALIGNED_NOTHROW,
                (void *p, size_t align, const void *tag), (p, align, tag))
DELETE_OPERATOR(_ZdlPvmSt11align_val_t, DELETE_SIZED_ALIGNED,
                (void *p, size_t size, size_t align), (p, size, align))
DELETE_OPERATOR(_ZdaPvmSt11align_val_t, DELETE_ARRAY_SIZED_ALIGNED,
                (void *p, size_t size, size_t align), (p, size, align))


/* mimalloc's own entry points behind `mimalloc-new-delete.h`, whose
 * operators the program defines (and its compiler may inline): `mi_new`
 * throws as `operator new` does, hence here too. mimalloc calls them
 * itself through its PLT (`mi_free` from its sized `delete[]` and from
 * `mi_free_aligned`, both recorded here already), and our `delete`s
 * tail-call its `delete` that calls `mi_free@plt`: a call from mimalloc's
 * code or from ours is only forwarded. */

#define MI_NEW(name, which, params, args, align, nothrow) \
    NEW_ENTRY(name, which, params, args, align, nothrow, 1)
#define MI_FREE(name, which, params, args) DELETE_ENTRY(name, which, params, args, 1)

MI_NEW(mi_new, MI_NEW, (size_t size), (size), 0, 0)
MI_NEW(mi_new_nothrow, MI_NEW_NOTHROW, (size_t size), (size), 0, 1)
MI_NEW(mi_new_aligned, MI_NEW_ALIGNED, (size_t size, size_t align),
       (size, align), align, 0)
MI_NEW(mi_new_aligned_nothrow, MI_NEW_ALIGNED_NOTHROW,
       (size_t size, size_t align), (size, align), align, 1)
MI_FREE(mi_free, MI_FREE, (void *p), (p))
MI_FREE(mi_free_size, MI_FREE_SIZE, (void *p, size_t size), (p, size))
MI_FREE(mi_free_aligned, MI_FREE_ALIGNED, (void *p, size_t align), (p, align))
MI_FREE(mi_free_size_aligned, MI_FREE_SIZE_ALIGNED,
        (void *p, size_t size, size_t align), (p, size, align))
