//! Synthetic process images for unit tests of the heap analyses: a few
//! byte buffers at fixed fake addresses, one thread, and a block table,
//! built without a compiler, a process or a core file.
//!
//! The layout, one mapping per kind of memory the analyses tell apart:
//!
//! | mapping         | address            | what                            |
//! |-----------------|--------------------|---------------------------------|
//! | [`TEXT`]        | `/usr/bin/app` r-x | a file mapping, never a root    |
//! | [`DATA`]        | `/usr/bin/app` rw- | module data/bss: a root         |
//! | [`BRK`]         | `[heap]`           | where [`HeapBuilder::block`] puts blocks |
//! | [`ARENA`]       | anon, 64 MiB aligned, `heap_info` first | a malloc arena: not a root |
//! | [`TLS`]         | anon, holds `fs_base` | static TLS: a root          |
//! | [`ANON`]        | anon               | a runtime's heap: a root        |
//! | [`AUDIT`]       | the audit region   | points at everything: not a root |
//! | [`STACK`]       | `[stack]`, SP in the middle | a root above SP only   |
//!
//! Blocks are placed 16 bytes apart (a malloc header's worth), so a
//! pointer one past a block's end points at nothing. Everything a test
//! writes is a little-endian word at an address of its choosing; helpers
//! return the address of the root word they wrote.

use std::collections::BTreeMap;

use leaktrail_format::{MemoryMode, StackId};

use leaktrail_recording::snapshot::note::{REG_RIP, REG_RSP};
use leaktrail_recording::{Mapping, Region};

use crate::heap::model::{Heap, ProcessImage};
use crate::symbolize::Symbolizer;
use leaktrail_recording::audit::{Audit, AuditCounters, Block};
use leaktrail_recording::snapshot::Thread;
use leaktrail_recording::Memory;

/// Read-only code of the main module.
pub const TEXT: u64 = 0x5555_5554_0000;
/// Writable data and bss of the main module.
pub const DATA: u64 = 0x5555_5555_0000;
/// The brk heap.
pub const BRK: u64 = 0x5555_6000_0000;
/// A non-main arena's heap.
pub const ARENA: u64 = 0x7f00_0000_0000;
/// Anonymous memory holding the thread's static TLS.
pub const TLS: u64 = 0x7f10_0000_1000;
/// The thread pointer.
pub const FS_BASE: u64 = TLS + 0x1000;
/// Other anonymous memory.
pub const ANON: u64 = 0x7f20_0000_1000;
/// The tracer's audit region.
pub const AUDIT: u64 = 0x7f30_0000_0000;
/// The thread's stack mapping.
pub const STACK: u64 = 0x7ffe_0000_0000;
/// Its stack pointer.
pub const SP: u64 = STACK + 0x8000;
/// The thread.
pub const TID: i32 = 100;
/// Frames of the default allocation stack (id 1).
pub const DEFAULT_FRAMES: [u64; 2] = [0x5555_5554_0100, 0x5555_5554_0200];

const SMALL: u64 = 0x1000;
const BRK_LEN: u64 = 1 << 20;
const ARENA_LEN: u64 = 0x1_0000;
const STACK_LEN: u64 = 0x1_0000;

/// General-purpose registers of `user_regs_struct` that
/// [`HeapBuilder::register`] fills, in order (rbx, r12..r15, r11..r8, rax,
/// rcx, rdx, rsi, rdi).
const FREE_REGS: [usize; 14] = [5, 3, 2, 1, 0, 6, 7, 8, 9, 10, 11, 12, 13, 14];
/// `fs_base` in `user_regs_struct`.
const REG_FS_BASE: usize = 21;

/// An in-memory process image.
pub struct SyntheticImage {
    /// Buffers by base address; each is one mapping, fully present.
    regions: Vec<(u64, Vec<u8>)>,
    mappings: Vec<Mapping>,
    threads: Vec<Thread>,
    mode: Option<MemoryMode>,
}

impl SyntheticImage {
    fn region(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let i = self.regions.partition_point(|r| r.0 <= addr);
        let (base, bytes) = self.regions.get(i.checked_sub(1)?)?;
        let rel = (addr - base) as usize;
        bytes.get(rel..rel.checked_add(len as usize)?)
    }
}

impl Memory for SyntheticImage {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), leaktrail_recording::Error> {
        let src = self
            .region(addr, buf.len() as u64)
            .ok_or(leaktrail_recording::Error::Unmapped { addr })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn borrow(&self, addr: u64, len: u64) -> Option<&[u8]> {
        self.region(addr, len)
    }

    fn ranges(&self) -> Vec<(u64, u64)> {
        self.regions
            .iter()
            .map(|(b, v)| (*b, b + v.len() as u64))
            .collect()
    }
}

impl ProcessImage for SyntheticImage {
    fn memory(&self) -> &(dyn Memory + Sync) {
        self
    }

    fn present(&self) -> Vec<(u64, u64)> {
        self.ranges()
    }

    fn threads(&self) -> &[Thread] {
        &self.threads
    }

    fn mappings(&self) -> Vec<Mapping> {
        self.mappings.clone()
    }

    fn memory_mode(&self) -> Option<MemoryMode> {
        self.mode
    }

    fn name(&self) -> String {
        "synthetic.core".into()
    }
}

/// Builds a [`Synthetic`] heap.
pub struct HeapBuilder {
    image: SyntheticImage,
    blocks: Vec<Block>,
    stacks: BTreeMap<StackId, Vec<u64>>,
    next_brk: u64,
    next_arena: u64,
    next_global: u64,
    next_stack: u64,
    next_dead: u64,
    next_tls: u64,
    next_anon: u64,
    next_arena_word: u64,
    next_audit: u64,
    next_reg: usize,
    time: u64,
}

impl Default for HeapBuilder {
    fn default() -> Self {
        HeapBuilder::new()
    }
}

impl HeapBuilder {
    /// The layout of the module docs, all memory zero, no blocks.
    pub fn new() -> HeapBuilder {
        let map = |start: u64, len: u64, perms: &str, path: &str, region: Region| Mapping {
            start,
            end: start + len,
            perms: perms.into(),
            offset: 0,
            inode: u64::from(path.starts_with('/')),
            path: path.into(),
            deleted: false,
            region,
            rss: len,
            pss: len,
            private_dirty: 0,
            anonymous: 0,
            swap: 0,
            vm_flags: Vec::new(),
        };
        let mappings = vec![
            map(TEXT, SMALL, "r-xp", "/usr/bin/app", Region::File),
            map(DATA, SMALL, "rw-p", "/usr/bin/app", Region::File),
            map(BRK, BRK_LEN, "rw-p", "[heap]", Region::Heap),
            map(ARENA, ARENA_LEN, "rw-p", "", Region::Anon),
            map(TLS, 2 * SMALL, "rw-p", "", Region::Anon),
            map(ANON, SMALL, "rw-p", "", Region::Anon),
            map(AUDIT, SMALL, "rw-p", "", Region::Anon),
            map(STACK, STACK_LEN, "rw-p", "[stack]", Region::Stack),
        ];
        let regions = mappings
            .iter()
            .map(|m| (m.start, vec![0u8; (m.end - m.start) as usize]))
            .collect();
        let mut regs = vec![0u64; 27];
        regs[REG_RSP] = SP;
        regs[REG_FS_BASE] = FS_BASE;
        regs[REG_RIP] = 0;
        let mut b = HeapBuilder {
            image: SyntheticImage {
                regions,
                mappings,
                threads: vec![Thread {
                    tid: TID,
                    signal: 0,
                    regs,
                    fpregs: None,
                    xstate: None,
                }],
                mode: Some(MemoryMode::Full),
            },
            blocks: Vec::new(),
            stacks: BTreeMap::from([(StackId(1), DEFAULT_FRAMES.to_vec())]),
            next_brk: BRK + 16,
            next_arena: ARENA + 0x100,
            next_global: DATA,
            next_stack: SP,
            next_dead: SP,
            next_tls: FS_BASE,
            next_anon: ANON,
            next_arena_word: ARENA + 0x20,
            next_audit: AUDIT + 0x100,
            next_reg: 0,
            time: 0,
        };
        // glibc's heap_info: ar_ptr, prev, size, mprotect_size.
        b.write(ARENA, 0x7f00_dead_0000);
        b.write(ARENA + 16, ARENA_LEN);
        b.write(ARENA + 24, ARENA_LEN);
        b
    }

    /// Adds a `PROT_NONE` mapping (a guard page) of `len` bytes at `start`,
    /// which must not overlap the layout's mappings.
    pub fn guard(&mut self, start: u64, len: u64) -> &mut Self {
        let mut m = self.image.mappings[0].clone();
        m.start = start;
        m.end = start + len;
        m.perms = "---p".into();
        m.path = String::new();
        m.inode = 0;
        m.region = Region::Anon;
        self.image.mappings.push(m);
        self
    }

    /// Records the capture as taken with `--memory mode`.
    pub fn memory_mode(&mut self, mode: MemoryMode) -> &mut Self {
        self.image.mode = Some(mode);
        self
    }

    /// A block of `size` bytes in the brk heap, allocated by stack 1.
    pub fn block(&mut self, size: u64) -> u64 {
        self.block_with(size, 1, TID as u32)
    }

    /// A block of `size` bytes in the brk heap with this stack and thread.
    pub fn block_with(&mut self, size: u64, stack: u32, tid: u32) -> u64 {
        let addr = self.next_brk;
        self.next_brk = (addr + size.max(1)).next_multiple_of(16) + 16;
        assert!(self.next_brk <= BRK + BRK_LEN, "synthetic [heap] is full");
        self.place(addr, size, stack, tid)
    }

    /// A block of `size` bytes in the arena.
    pub fn arena_block(&mut self, size: u64) -> u64 {
        let addr = self.next_arena;
        self.next_arena = (addr + size.max(1)).next_multiple_of(16) + 16;
        assert!(
            self.next_arena <= ARENA + ARENA_LEN,
            "synthetic arena is full"
        );
        self.place(addr, size, 1, TID as u32)
    }

    /// A block exactly at `addr` (in mapped memory, not overlapping
    /// another).
    pub fn place(&mut self, addr: u64, size: u64, stack: u32, tid: u32) -> u64 {
        self.time += 1000;
        self.blocks.push(Block {
            addr,
            size,
            time_ns: self.time,
            stack: StackId(stack),
            tid,
        });
        addr
    }

    /// Interns stack `id` with these frames.
    pub fn stack(&mut self, id: u32, frames: &[u64]) -> &mut Self {
        self.stacks.insert(StackId(id), frames.to_vec());
        self
    }

    /// Writes `value` at `addr`, any alignment.
    pub fn write(&mut self, addr: u64, value: u64) -> u64 {
        self.write_bytes(addr, &value.to_le_bytes());
        addr
    }

    /// Writes `bytes` at `addr`.
    pub fn write_bytes(&mut self, addr: u64, bytes: &[u8]) {
        let i = self.image.regions.partition_point(|r| r.0 <= addr);
        let (base, buf) = &mut self.image.regions[i - 1];
        let rel = (addr - *base) as usize;
        buf[rel..rel + bytes.len()].copy_from_slice(bytes);
    }

    fn bump(next: &mut u64, step: i64) -> u64 {
        let at = if step < 0 {
            *next - step.unsigned_abs()
        } else {
            *next
        };
        *next = next.wrapping_add_signed(step);
        at
    }

    /// A word of module data holding `value`; returns its address.
    pub fn global(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_global, 8);
        self.write(at, value)
    }

    /// A word of the live stack (at or above SP).
    pub fn stack_word(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_stack, 8);
        self.write(at, value)
    }

    /// A word below SP: dead stack.
    pub fn dead_stack_word(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_dead, -8);
        self.write(at, value)
    }

    /// A word of static TLS (below the thread pointer).
    pub fn tls_word(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_tls, -8);
        self.write(at, value)
    }

    /// A word of anonymous memory.
    pub fn anon_word(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_anon, 8);
        self.write(at, value)
    }

    /// A word of the arena outside every block.
    pub fn arena_word(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_arena_word, 8);
        assert!(at < ARENA + 0x100);
        self.write(at, value)
    }

    /// A word of the audit region.
    pub fn audit_word(&mut self, value: u64) -> u64 {
        let at = Self::bump(&mut self.next_audit, 8);
        self.write(at, value)
    }

    /// The next free general-purpose register of the thread holds
    /// `value`; returns its index in `user_regs_struct`.
    pub fn register(&mut self, value: u64) -> usize {
        let r = FREE_REGS[self.next_reg];
        self.next_reg += 1;
        self.image.threads[0].regs[r] = value;
        r
    }

    /// The image and its block table.
    pub fn build(mut self) -> Synthetic {
        self.blocks.sort_by_key(|b| b.addr);
        for w in self.blocks.windows(2) {
            assert!(
                w[0].addr + w[0].size <= w[1].addr,
                "synthetic blocks overlap"
            );
        }
        let audit = Audit {
            header_addr: AUDIT,
            pid: TID as u32,
            state: "running".into(),
            unwind: "frame-pointers".into(),
            max_depth: 64,
            sample_rate: 0,
            exit_tid: 0,
            allocator: leaktrail_format::Allocator::Unknown,
            attached: false,
            bypassed: 0,
            start_realtime_ns: 0,
            counters: AuditCounters::default(),
            classes: Vec::new(),
            live: self.blocks,
            maps: Vec::new(),
            stacks: self.stacks,
            sites: None,
            peak: None,
            busy_shards: 0,
            corrupt: 0,
            ranges: vec![(AUDIT, AUDIT + SMALL)],
        };
        Synthetic {
            image: self.image,
            audit,
        }
    }
}

/// A built synthetic image with its block table.
pub struct Synthetic {
    /// The image.
    pub image: SyntheticImage,
    /// Its block table.
    pub audit: Audit,
}

impl Synthetic {
    /// A [`Heap`] over it (cheap: the tests' heaps are small).
    pub fn heap(&self) -> Heap<'_> {
        Heap::new(&self.image, self.audit.clone())
    }
}

/// A symbolizer that knows no files: every frame is unknown, no symbols.
pub fn symbolizer() -> Symbolizer {
    Symbolizer::new(Vec::new())
}

/// A native frame of `function` in `module` at `file` line 1, for tests of
/// what reads symbolized stacks (libc's residue, suppressions).
pub fn frame(function: &str, module: &str, file: &str) -> crate::symbolize::Frame {
    crate::symbolize::Frame {
        address: 0x1000,
        function: Some(function.to_string()),
        file: Some(file.to_string()),
        line: Some(1),
        module: Some(module.to_string()),
        module_offset: 0,
        kind: crate::symbolize::FrameKind::Native,
        column: None,
        inlined: false,
        start_line: None,
        start_column: None,
    }
}
