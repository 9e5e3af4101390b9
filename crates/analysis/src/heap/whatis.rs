//! `::whatis`: what an address of a snapshot is — a live buffer (with the
//! offset into it and its allocation stack), a global or function of a
//! module, a thread's stack (which thread, which frame), JIT code, the
//! audit region, or just which mapping.

use leaktrail_format::StackId;
use leaktrail_unwind_core::{FrameAddress, InstructionAddress};

use crate::heap::model::{Area, AreaKind, Heap};
use crate::symbolize::{Frame, Symbolizer};
use crate::Error;
use leaktrail_recording::audit::Block;

/// A live buffer an address lies in.
#[derive(Clone, Debug)]
pub struct BufferHit {
    /// Its start.
    pub addr: u64,
    /// Its requested size.
    pub size: u64,
    /// Where in it the address is.
    pub offset: u64,
    /// Allocation time, ns after the tracer started.
    pub time_ns: u64,
    /// Allocating thread.
    pub tid: u32,
    /// Stack id.
    pub stack_id: StackId,
    /// Its allocation stack.
    pub stack: Vec<Frame>,
    /// What it holds, when its bytes say ([`crate::types`]).
    pub type_name: Option<String>,
}

/// A thread stack an address lies in.
#[derive(Clone, Debug)]
pub struct StackHit {
    /// The thread.
    pub tid: i32,
    /// Bytes above the thread's SP (negative: below it, dead).
    pub sp_offset: i64,
    /// The frame whose part of the stack holds the address, when a frame
    /// pointer chain leads there.
    pub frame: Option<Frame>,
}

/// Everything known about one address.
#[derive(Clone, Debug)]
pub struct Whatis {
    /// The address asked about.
    pub address: u64,
    /// The mapping.
    pub area: Area,
    /// The live buffer containing it.
    pub buffer: Option<BufferHit>,
    /// The module symbol (global variable or function) containing it, with
    /// the offset.
    pub symbol: Option<(String, u64)>,
    /// Code: the frame it symbolizes to.
    pub code: Option<Frame>,
    /// A thread's stack.
    pub stack: Option<StackHit>,
    /// JIT code from the perf map.
    pub jit: Option<Frame>,
    /// In the tracer's audit region.
    pub audit: bool,
}

/// Describes `addr`. Fails with [`Error::Unmapped`] for an address in no
/// mapping of the snapshot.
pub fn whatis(heap: &Heap<'_>, symbolizer: &Symbolizer, addr: u64) -> Result<Whatis, Error> {
    let area = heap
        .area_of(addr)
        .cloned()
        .ok_or(Error::Unmapped { addr })?;
    Ok(describe(heap, symbolizer, addr, area))
}

/// Like [`whatis`] for an address known to be mapped (used per hit by
/// `refs`), without the error path; `None` if it is not.
pub fn whatis_mapped(heap: &Heap<'_>, symbolizer: &Symbolizer, addr: u64) -> Option<Whatis> {
    let area = heap.area_of(addr)?.clone();
    Some(describe(heap, symbolizer, addr, area))
}

fn describe(heap: &Heap<'_>, symbolizer: &Symbolizer, addr: u64, area: Area) -> Whatis {
    let buffer = heap
        .block_at(addr)
        .map(|b| buffer_hit(heap, symbolizer, b, addr));
    let audit = heap.in_audit(addr);
    let symbol = match area.kind {
        AreaKind::ModuleData | AreaKind::File => symbolizer.symbol(addr),
        // bss beyond the file's last page is anonymous memory.
        AreaKind::Anon | AreaKind::Tls { .. } if buffer.is_none() => symbolizer.symbol(addr),
        _ => None,
    };
    let code = (area.perms.as_bytes().get(2) == Some(&b'x'))
        .then(|| symbolizer.frame(InstructionAddress(addr)))
        .filter(|f| f.function.is_some());
    let jit = if buffer.is_none() && code.is_none() {
        symbolizer.jit(addr)
    } else {
        None
    };
    let stack = match area.kind {
        AreaKind::Stack { tid, sp } => Some(StackHit {
            tid,
            sp_offset: addr as i64 - sp as i64,
            frame: frame_holding(heap, symbolizer, tid, addr),
        }),
        _ => None,
    };
    Whatis {
        address: addr,
        area,
        buffer,
        symbol,
        code,
        stack,
        jit,
        audit,
    }
}

/// A buffer with its stack symbolized.
pub fn buffer_hit(heap: &Heap<'_>, symbolizer: &Symbolizer, b: &Block, addr: u64) -> BufferHit {
    BufferHit {
        addr: b.addr,
        size: b.size,
        offset: addr - b.addr,
        time_ns: b.time_ns,
        tid: b.tid,
        stack_id: b.stack,
        stack: symbolizer.stack_inlined(heap.audit.frames(b.stack)),
        type_name: crate::heap::types::of(heap, symbolizer, b.addr, b.size).map(|t| t.name()),
    }
}

/// Walks the thread's stack (CFI, else frame pointers) and names the
/// frame whose part of the stack, `[sp, cfa)`, holds `addr`.
fn frame_holding(heap: &Heap<'_>, symbolizer: &Symbolizer, tid: i32, addr: u64) -> Option<Frame> {
    let t = heap.image.threads().iter().find(|t| t.tid == tid)?;
    let frames = symbolizer.unwinder().walk(heap.memory, &t.regs, 256);
    frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.sp <= addr && (addr < f.cfa || f.cfa == 0))
        .map(|(i, f)| symbolizer.frame(FrameAddress::new(f.pc, i > 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, HeapBuilder, Synthetic, ARENA, AUDIT, DATA, SP, TID};

    fn ask(s: &Synthetic, addr: u64) -> Result<Whatis, Error> {
        whatis(&s.heap(), &synthetic::symbolizer(), addr)
    }

    #[test]
    fn an_address_inside_a_block_names_the_block_and_the_offset() {
        let mut b = HeapBuilder::new();
        b.stack(7, &[0x1234]);
        let a = b.block_with(40, 7, 55);
        let s = b.build();
        let w = ask(&s, a + 39).unwrap();
        let hit = w.buffer.unwrap();
        assert_eq!((hit.addr, hit.size, hit.offset), (a, 40, 39));
        assert_eq!((hit.stack_id.0, hit.tid), (7, 55));
        assert_eq!(hit.stack.len(), 1);
        assert_eq!(w.area.kind, AreaKind::Heap);
        assert!(w.stack.is_none() && !w.audit);
        let past = ask(&s, a + 40).unwrap();
        assert!(past.buffer.is_none());
        assert_eq!(past.area.kind, AreaKind::Heap);
    }

    #[test]
    fn an_address_on_a_stack_names_the_thread_and_the_distance_from_sp() {
        let s = HeapBuilder::new().build();
        let above = ask(&s, SP + 16).unwrap().stack.unwrap();
        assert_eq!((above.tid, above.sp_offset), (TID, 16));
        let below = ask(&s, SP - 8).unwrap().stack.unwrap();
        assert_eq!(below.sp_offset, -8);
    }

    #[test]
    fn module_data_arenas_and_the_audit_region_are_told_apart() {
        let mut b = HeapBuilder::new();
        let in_arena = b.arena_block(16);
        let s = b.build();
        let g = ask(&s, DATA + 8).unwrap();
        assert_eq!(g.area.kind, AreaKind::ModuleData);
        assert_eq!(g.area.path, "/usr/bin/app");
        assert!(g.buffer.is_none() && g.stack.is_none() && !g.audit);
        let a = ask(&s, in_arena + 1).unwrap();
        assert_eq!(a.area.kind, AreaKind::Arena);
        assert_eq!(a.buffer.unwrap().offset, 1);
        assert!(ask(&s, ARENA + 8).unwrap().buffer.is_none());
        let au = ask(&s, AUDIT + 8).unwrap();
        assert!(au.audit);
        assert_eq!(au.area.kind, AreaKind::Audit);
    }

    #[test]
    fn an_address_in_no_mapping_is_unmapped() {
        let s = HeapBuilder::new().build();
        assert!(matches!(ask(&s, 0x10), Err(Error::Unmapped { addr: 0x10 })));
        assert!(whatis_mapped(&s.heap(), &synthetic::symbolizer(), 0x10).is_none());
    }
}
