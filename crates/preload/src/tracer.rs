//! The tracer's life and its record path: init, configuration, and what
//! each hook does around the real allocator call.
//!
//! Lifecycle is one atomically stored [`Lifecycle`] in the region header
//! (or, before the region exists, in [`STATE`]).
//!
//! Fork policy: `pthread_atfork` handlers take every lock of the region
//! before `fork` and release them after, in parent and child alike, so the
//! child starts with a consistent audit of what is (a copy of) its own
//! heap. The child gets a new fork generation (cached thread ids refresh),
//! its own pid in the header, and drops its link to the supervisor, which
//! watches only the process it launched.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use leaktrail_format::handover::{self, EnvName};
use leaktrail_format::{self as format, Header, Lifecycle, StackId, UnwindMode, MAX_DEPTH};

use crate::region::{self, Record};
use crate::sample::{self, Filter};
use crate::thread::{self, ThreadState};
use crate::{next, preinit, stacks, sys, unwind};

/// Lifecycle before the region exists (and a copy after), on the hooks'
/// cache line ([`crate::hot`]).
static STATE: &AtomicU32 = &crate::hot::HOT.lifecycle;
static MODE: AtomicU32 = AtomicU32::new(UnwindMode::Dwarf as u32);
static DEPTH: AtomicU32 = AtomicU32::new(format::DEFAULT_DEPTH as u32);
static SAID_FULL: AtomicBool = AtomicBool::new(false);
/// Socket to the supervisor (`leaktrail run`), -1 if none.
pub static SUPERVISOR_FD: AtomicI32 = AtomicI32::new(-1);
/// Inode of that socket when we got it: a program that closes every
/// descriptor and opens a file that reuses the number must not get our
/// hand-over line written into its file.
pub static SUPERVISOR_INODE: AtomicU64 = AtomicU64::new(0);
/// The process that holds the link (a `vfork` child shares our memory but
/// not our descriptors).
static LINK_PID: AtomicU32 = AtomicU32::new(0);
/// How long each hand-over may wait for the supervisor.
static DEADLINE_MS: AtomicU64 = AtomicU64::new(handover::DEFAULT_DEADLINE_MS);

/// Reads the configuration, creates the region and builds the module
/// table. Runs once, from the library's constructor.
pub fn init() {
    if crate::attach::loaded_late() {
        // `leaktrail attach` loaded us with dlopen: it calls
        // `leaktrail_attach` next, with the configuration (see
        // [`crate::attach`]). Until then nothing calls our hooks.
        crate::next::loaded_late();
        return;
    }
    crate::next::resolve();
    thread::init_fast_tls();
    thread::quietly(|| {
        if env(handover::DISABLE) == Some(b"1") {
            STATE.store(Lifecycle::Disabled as u32, Ordering::Release);
            return;
        }
        let mode = env(handover::UNWIND)
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(UnwindMode::from_name)
            .unwrap_or(UnwindMode::Dwarf);
        let depth = env(handover::DEPTH)
            .and_then(parse_u32)
            .map(|d| d.clamp(1, MAX_DEPTH as u32))
            .unwrap_or(format::DEFAULT_DEPTH as u32);
        if let Some(limit) = env(handover::REGION_LIMIT).and_then(parse_u64) {
            region::LIMIT.store(limit, Ordering::Relaxed);
        }
        configure(mode, depth);
        let rate = env(handover::SAMPLE).and_then(parse_u64).unwrap_or(0);
        if rate != 0 {
            let seed = env(handover::SAMPLE_SEED)
                .and_then(parse_u64)
                .unwrap_or_else(|| sys::clock_ns(libc::CLOCK_REALTIME) ^ sys::getpid() as u64);
            region::ATOMIC_COUNTS.store(true, Ordering::Relaxed);
            sample::configure(rate, seed);
        }
        let pid = sys::getpid();
        thread::MAIN_TID.store(pid as u64, Ordering::Relaxed);
        let mut local = 0u64;
        let sp = &mut local as *mut u64 as u64;
        if let Some((_, end)) = crate::selfmaps::mapping_containing(sp) {
            thread::MAIN_STACK_TOP.store(end, Ordering::Relaxed);
        }
        if let Some(deadline) = env(handover::HANDOVER_DEADLINE_MS).and_then(parse_u64) {
            DEADLINE_MS.store(deadline, Ordering::Relaxed);
        }
        if let Some((fd, inode)) = env(handover::SUPERVISOR_FD).and_then(handover::parse_link) {
            link(fd, inode);
        }
        unwind::shared::init();
        unwind::modules::rebuild();
        let Some(hdr) = region::create(mode, depth) else {
            sample::configure(0, 0);
            if region::LIMIT_REACHED.load(Ordering::Relaxed) {
                say_number(
                    b"leaktrail: the region limit (LEAKTRAIL_REGION_LIMIT=",
                    region::LIMIT.load(Ordering::Relaxed),
                    b" bytes) is too small for the audit region's first tables; not tracing\n",
                );
            } else {
                say(b"leaktrail: cannot map the audit region (out of memory); not tracing\n");
            }
            STATE.store(Lifecycle::Disabled as u32, Ordering::Release);
            // The supervisor learns that the tracer started, without a
            // region (a header address of 0), rather than never hearing
            // from it.
            crate::exit::announce_start();
            return;
        };
        // The operators an allocator linked into the executable brings
        // (jemalloc's), diverted as its `malloc` was (see `operators`);
        // publish says what could not be.
        if crate::next::malloc_in_executable()
            && !crate::next::malloc_bypasses_us()
            && crate::next::executable_function(c"_Znwm").is_some()
        {
            crate::operators::divert_executables();
        }
        crate::allocator::publish(hdr, true);
        if crate::next::malloc_bypasses_us() {
            // Nothing to record (see `allocator`): the region stays, so
            // that `info` and `leaks` say why it is empty.
            sample::configure(0, 0);
            set_lifecycle(hdr, Lifecycle::Disabled);
            crate::exit::announce_start();
            return;
        }
        hdr.counters.sample_rate.store(rate, Ordering::Relaxed);
        if rate != 0 {
            sample::map_thread_classes(hdr);
        }
        install_fork_handlers();
        // Blocks of the constructors that ran before ours join the audit
        // as the region starts recording.
        preinit::replay(hdr, mode, || {
            hdr.state
                .store(Lifecycle::Running as u32, Ordering::Release);
            STATE.store(Lifecycle::Running as u32, Ordering::Release);
        });
        crate::exit::announce_start();
    });
}

/// Takes up the link to the supervisor on descriptor `fd`, if it is the
/// socket with `inode`: the process the supervisor launched, or its new
/// image after an exec (see [`crate::hooks::execve`]). A child the program
/// forked or spawned finds the descriptor closed, or another file there.
fn link(fd: i32, inode: Option<u64>) {
    let Some((_, actual)) = sys::file_identity(fd) else {
        return;
    };
    if inode.is_some_and(|i| i != actual) {
        return;
    }
    // SAFETY: fcntl on a descriptor number has no memory effects.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if inode.is_none() {
        // A bare number names no socket for sure: only this process
        // talks to it, not the programs it execs.
        // SAFETY: unsetenv runs before any other thread of the program
        // exists.
        unsafe { libc::unsetenv(handover::SUPERVISOR_FD.as_c_str().as_ptr()) };
    }
    hold_link(fd, actual);
}

/// Keeps `fd` (a socket with `inode`) as this process's link to the
/// supervisor.
fn hold_link(fd: i32, inode: u64) {
    SUPERVISOR_INODE.store(inode, Ordering::Relaxed);
    LINK_PID.store(sys::getpid(), Ordering::Relaxed);
    SUPERVISOR_FD.store(fd, Ordering::Relaxed);
}

/// Takes `fd`, a socket `leaktrail attach` listens on, as the link.
pub(crate) fn link_attached(fd: i32) {
    let inode = sys::file_identity(fd).map_or(0, |(_, inode)| inode);
    hold_link(fd, inode);
}

/// Drops the link to the supervisor and closes it (`leaktrail detach`).
pub(crate) fn unlink() {
    let fd = SUPERVISOR_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        sys::close(fd);
    }
}

/// Sets how stacks are captured: from the environment at init, from
/// `leaktrail attach`'s spec when loaded late.
pub(crate) fn configure(mode: UnwindMode, depth: u32) {
    MODE.store(mode as u32, Ordering::Relaxed);
    DEPTH.store(depth, Ordering::Relaxed);
}

/// Registers the fork handlers (see the module documentation), once: a
/// second `leaktrail attach` after a detach finds them in place.
pub(crate) fn install_fork_handlers() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are plain functions that only touch atomics.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
}

/// Starts (`Running`) or stops (`Disabled`) recording into `hdr`.
pub(crate) fn set_lifecycle(hdr: &Header, state: Lifecycle) {
    hdr.state.store(state as u32, Ordering::Release);
    STATE.store(state as u32, Ordering::Release);
}

/// The supervisor's descriptor, if this process holds the link and the
/// descriptor is still our socket (a program that closes every descriptor
/// may have reused the number for a file of its own).
pub fn linked() -> Option<i32> {
    let fd = SUPERVISOR_FD.load(Ordering::Relaxed);
    if fd < 0 || LINK_PID.load(Ordering::Relaxed) != sys::getpid() {
        return None;
    }
    let ours = SUPERVISOR_INODE.load(Ordering::Relaxed);
    (sys::file_identity(fd).map(|(_, inode)| inode) == Some(ours)).then_some(fd)
}

/// Waits for the supervisor's one-byte answer on `fd`, at most
/// [`handover::HANDOVER_DEADLINE_MS`]. Past it, says so once, drops the
/// link and lets the program go on.
pub fn await_answer(fd: i32) {
    let deadline_ms = DEADLINE_MS.load(Ordering::Relaxed);
    let end =
        sys::clock_ns(libc::CLOCK_MONOTONIC).saturating_add(deadline_ms.saturating_mul(1_000_000));
    loop {
        let left_ms = end.saturating_sub(sys::clock_ns(libc::CLOCK_MONOTONIC)) / 1_000_000;
        match sys::poll_in(fd, left_ms.min(i32::MAX as u64) as i32) {
            Some(true) => {
                let mut ack = [0u8; 1];
                sys::read(fd, &mut ack);
                return;
            }
            Some(false) if left_ms > 0 => continue,
            _ => break,
        }
    }
    say_number(
        b"leaktrail: the supervisor (leaktrail run) did not answer within ",
        deadline_ms,
        b" ms; the program goes on without it\n",
    );
    SUPERVISOR_FD.store(-1, Ordering::Relaxed);
    sys::close(fd);
}

/// Writes `before`, `n` in decimal and `after` as one line on stderr (cut
/// at 160 bytes), without allocating.
fn say_number(before: &[u8], n: u64, after: &[u8]) {
    let mut digits = [0u8; 20];
    let n = decimal(n, &mut digits);
    let mut line = [0u8; 160];
    let mut len = 0;
    for part in [before, n, after] {
        let k = part.len().min(line.len() - len);
        line[len..len + k].copy_from_slice(&part[..k]);
        len += k;
    }
    say(&line[..len]);
}

pub(crate) fn env(name: EnvName) -> Option<&'static [u8]> {
    // SAFETY: the name is NUL-terminated; getenv neither allocates nor
    // locks, and the environment outlives us.
    let p = unsafe { libc::getenv(name.as_c_str().as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
    })
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

/// `v` in decimal, written at the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Writes one line on stderr.
pub fn say(line: &[u8]) {
    sys::write_all(2, line);
}

/// Whether the tracer records allocations now.
#[inline]
fn running() -> Option<&'static Header> {
    if STATE.load(Ordering::Relaxed) != Lifecycle::Running as u32 {
        return None;
    }
    region::header()
}

/// The region, whenever it exists (frees are processed even when full).
#[inline]
fn active() -> Option<&'static Header> {
    match STATE.load(Ordering::Relaxed) {
        s if s == Lifecycle::Running as u32 || s == Lifecycle::Full as u32 => region::header(),
        _ => None,
    }
}

fn now_ns(hdr: &Header) -> u64 {
    sys::clock_ns(libc::CLOCK_MONOTONIC_COARSE)
        .saturating_sub(hdr.start_monotonic_ns.load(Ordering::Relaxed))
}

/// Stops recording because the region cannot grow; says so once.
fn region_full(hdr: &Header) {
    STATE.store(Lifecycle::Full as u32, Ordering::Release);
    hdr.state.store(Lifecycle::Full as u32, Ordering::Release);
    if !SAID_FULL.swap(true, Ordering::Relaxed) {
        say(b"leaktrail: the audit region cannot grow (out of memory); recording stopped, the program goes on\n");
    }
}

/// Captures and interns the current stack.
#[inline]
fn current_stack(hdr: &Header, state: &ThreadState) -> StackId {
    let mode = match MODE.load(Ordering::Relaxed) {
        0 => UnwindMode::None,
        1 => UnwindMode::FramePointer,
        _ => UnwindMode::Dwarf,
    };
    if mode == UnwindMode::None {
        return StackId::NONE;
    }
    if !unwind::room_to_capture(state) {
        // A small thread stack nearly used up (see `room_to_capture`).
        hdr.counters.shallow_stacks.fetch_add(1, Ordering::Relaxed);
        return StackId::NONE;
    }
    captured_stack(hdr, state, mode)
}

/// [`current_stack`]'s capture, out of line: its frames buffer is
/// allocated only here, after the check for room, and not in every hook's
/// frame (a hook's frame is on the stack while the allocator runs).
#[inline(never)]
fn captured_stack(hdr: &Header, state: &ThreadState, mode: UnwindMode) -> StackId {
    let depth = DEPTH.load(Ordering::Relaxed) as usize;
    let mut frames = [MaybeUninit::<u64>::uninit(); MAX_DEPTH];
    let got = unwind::capture(state, mode, &mut frames[..depth.min(MAX_DEPTH)]);
    if got.truncated {
        hdr.counters
            .truncated_stacks
            .fetch_add(1, Ordering::Relaxed);
    }
    if got.shallow {
        hdr.counters.shallow_stacks.fetch_add(1, Ordering::Relaxed);
    }
    if !got.known_id.is_none() {
        return got.known_id;
    }
    if got.len == 0 {
        return StackId::NONE;
    }
    // SAFETY: `capture` initialised the first `got.len` frames.
    let frames = unsafe { &*(&frames[..got.len] as *const [MaybeUninit<u64>] as *const [u64]) };
    let id = stacks::intern(hdr, frames);
    unwind::remember_id(state, got.len, id);
    id
}

/// Records a new buffer `[addr, addr+size)` just returned by the allocator.
#[inline(never)]
pub fn record_alloc(addr: u64, size: u64) {
    record_alloc_inlined(addr, size)
}

/// [`record_alloc`], inlined into the caller: `malloc`'s hook alone, so
/// that the commonest path is one stretch of code (a program with much
/// code of its own evicts ours between calls; see "The hook path").
#[inline(always)]
pub fn record_alloc_inlined(addr: u64, size: u64) {
    let Some(hdr) = running() else {
        not_running_alloc(addr, size);
        return;
    };
    if let Some(rate) = sample::rate() {
        sampled_alloc(hdr, addr, size, rate);
        return;
    }
    insert_new(hdr, addr, size);
}

/// An allocation while sampling: kept out of line, so that the full
/// audit's path through [`record_alloc`] stays a few dense cache lines
/// (a program with much code of its own evicts ours between calls).
#[inline(never)]
fn sampled_alloc(hdr: &Header, addr: u64, size: u64, rate: u64) {
    if thread::sampled(hdr, addr, size, rate) {
        insert_new(hdr, addr, size);
    }
}

/// Enters a block that keeps its record (every block, or a sampled one).
#[inline]
fn insert_new(hdr: &Header, addr: u64, size: u64) {
    let done = thread::enter(|state, _inside| {
        let rec = Record {
            size,
            time_ns: now_ns(hdr),
            stack: current_stack(hdr, state).0,
            tid: state.tid(),
        };
        insert(hdr, addr, rec, Some(state.caller()));
    });
    if done.is_none() {
        hdr.counters.dropped_allocs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Enters `rec` at `addr`, marking it sampled when sampling.
#[inline]
fn insert(hdr: &Header, addr: u64, rec: Record, caller: Option<region::Caller>) {
    match region::insert_live(hdr, addr, rec, caller) {
        Ok(()) => {
            if sample::rate().is_some() {
                Filter::mark(addr);
            }
        }
        Err(region::RegionFull) => {
            hdr.counters.dropped_allocs.fetch_add(1, Ordering::Relaxed);
            region_full(hdr);
        }
    }
}

/// An allocation while the region does not record: counted when it is
/// full, kept for [`init`] before it ran.
#[cold]
fn not_running_alloc(addr: u64, size: u64) {
    if let Some(hdr) = active() {
        hdr.counters.dropped_allocs.fetch_add(1, Ordering::Relaxed);
    } else if STATE.load(Ordering::Acquire) == Lifecycle::Uninitialised as u32 {
        if let preinit::Outcome::Closed = preinit::alloc(addr, size) {
            // Init finished meanwhile.
            record_alloc(addr, size);
        }
    }
}

/// What [`record_free`] found of a block about to be freed.
#[derive(Clone, Copy, Debug)]
pub enum Freed {
    /// Its record, taken out of the live table.
    Recorded(Record),
    /// An unsampled block of this many usable bytes, counted as freed.
    Counted(u64),
    /// Nothing: an address the tracer never saw (or could not look up).
    Unknown,
}

impl Freed {
    /// The record, if the block had one.
    pub fn record(self) -> Option<Record> {
        match self {
            Freed::Recorded(rec) => Some(rec),
            _ => None,
        }
    }
}

/// Records that `addr` is about to be freed. Called before the real free,
/// so the allocator cannot hand the address to another thread while the
/// table still holds it.
#[inline(never)]
pub fn record_free(addr: u64) -> Freed {
    record_free_inlined(addr)
}

/// [`record_free`], inlined into the caller: `free`'s hook alone (as
/// [`record_alloc_inlined`]).
#[inline(always)]
pub fn record_free_inlined(addr: u64) -> Freed {
    let Some(hdr) = active() else {
        return not_running_free(addr).map_or(Freed::Unknown, Freed::Recorded);
    };
    if sample::rate().is_some() {
        return sampled_free(hdr, addr);
    }
    match thread::enter(|state, _inside| region::remove_live(hdr, addr, Some(state.caller())))
        .flatten()
    {
        Some(rec) => Freed::Recorded(rec),
        None => {
            hdr.counters.unknown_frees.fetch_add(1, Ordering::Relaxed);
            Freed::Unknown
        }
    }
}

/// A free while sampling: most blocks are unsampled, which the filter
/// tells without a lock. Out of line, as [`sampled_alloc`].
#[inline(never)]
fn sampled_free(hdr: &Header, addr: u64) -> Freed {
    if Filter::may_hold(addr) {
        match thread::enter(|state, _inside| region::remove_live(hdr, addr, Some(state.caller()))) {
            Some(Some(rec)) => {
                Filter::unmark(addr);
                return Freed::Recorded(rec);
            }
            Some(None) => {}
            None => {
                // Inside the tracer (a signal handler's free): the table
                // cannot be looked at now; the block's record stays.
                hdr.counters.unknown_frees.fetch_add(1, Ordering::Relaxed);
                return Freed::Unknown;
            }
        }
    }
    let usable = next::usable_size(addr);
    thread::count_unsampled(hdr, addr, usable, false);
    Freed::Counted(usable)
}

#[cold]
fn not_running_free(addr: u64) -> Option<Record> {
    if STATE.load(Ordering::Acquire) == Lifecycle::Uninitialised as u32 {
        if let preinit::Outcome::Closed = preinit::free(addr) {
            return record_free(addr).record();
        }
    }
    None
}

/// Puts back what [`record_free`] took when the free did not happen (a
/// failed `realloc`), or, `size` given, with that new size (an in-place
/// resize: `xallocx`).
pub fn restore(addr: u64, freed: Freed, size: Option<u64>) {
    let Some(hdr) = active() else { return };
    match freed {
        Freed::Recorded(mut rec) => {
            if let Some(size) = size {
                rec.size = size;
            }
            let _ = thread::enter(|_state, _inside| insert(hdr, addr, rec, None));
        }
        Freed::Counted(usable) => {
            let usable = if size.is_some() {
                next::usable_size(addr)
            } else {
                usable
            };
            thread::count_unsampled(hdr, addr, usable, true);
        }
        Freed::Unknown => {}
    }
}

/// A block entered by the constructors that ran before init, at replay:
/// sampled or counted as any other.
pub fn replayed(hdr: &Header, addr: u64, rec: Record) -> bool {
    if let Some(rate) = sample::rate() {
        if !thread::sampled(hdr, addr, rec.size, rate) {
            return true;
        }
    }
    let ok = region::insert_live(hdr, addr, rec, None).is_ok();
    if ok && sample::rate().is_some() {
        Filter::mark(addr);
    }
    ok
}

/// Records a new anonymous mapping.
pub fn record_map(addr: u64, len: u64) {
    let Some(hdr) = running() else { return };
    let done = thread::enter(|state, _inside| {
        let rec = Record {
            size: len,
            time_ns: now_ns(hdr),
            stack: current_stack(hdr, state).0,
            tid: state.tid(),
        };
        region::insert_map(hdr, addr, rec);
    });
    if done.is_none() {
        hdr.counters.dropped_maps.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records that `[addr, addr+len)` was unmapped; whether we held any of it.
pub fn record_unmap(addr: u64, len: u64) -> bool {
    let Some(hdr) = active() else { return false };
    thread::enter(|_state, _inside| region::remove_map_range(hdr, addr, len)).unwrap_or(false)
}

extern "C" fn before_fork() {
    if let Some(hdr) = region::header() {
        region::for_each_lock(hdr, region::spin_lock);
    }
}

extern "C" fn after_fork_parent() {
    if let Some(hdr) = region::header() {
        region::for_each_lock(hdr, region::spin_unlock);
    }
}

extern "C" fn after_fork_child() {
    if let Some(hdr) = region::header() {
        region::for_each_lock(hdr, region::spin_unlock);
        // A thread of the parent that was mid-update is gone; its shard's
        // counter would stay odd forever. Its change was published by one
        // store or not at all, so the table is consistent: make it even.
        region::for_each_seq(hdr, |seq| {
            let v = seq.load(Ordering::Relaxed);
            seq.store(v & !1, Ordering::Relaxed);
        });
        let pid = sys::getpid();
        hdr.pid.store(pid, Ordering::Relaxed);
        hdr.fork_generation.fetch_add(1, Ordering::Relaxed);
        thread::MAIN_TID.store(pid as u64, Ordering::Relaxed);
    }
    // The forking thread is the child's main thread, on its own stack.
    let mut local = 0u64;
    let sp = &mut local as *mut u64 as u64;
    let top = crate::selfmaps::mapping_containing(sp).map_or(0, |(_, end)| end);
    thread::MAIN_STACK_TOP.store(top, Ordering::Relaxed);
    thread::FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    unwind::modules::reset_after_fork();
    let fd = SUPERVISOR_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        sys::close(fd);
    }
}
