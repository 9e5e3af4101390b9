//! `leaktrail whatis`, and the one-line description `refs` and `dump` use.

use std::fmt::Write;

use leaktrail_analysis::whatis::Whatis;
use leaktrail_analysis::AreaKind;

use super::{count, stack};

/// One line: what the address is, most specific first.
pub fn line(w: &Whatis) -> String {
    let a = &w.area;
    if let Some(b) = &w.buffer {
        let top = b
            .stack
            .iter()
            .find(|f| f.function.is_some())
            .map(|f| format!(", allocated in {}", f.function.as_deref().unwrap_or("?")))
            .unwrap_or_default();
        let kind = b
            .type_name
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        return format!(
            "{:#x} is {:#x}+{:#x}, a live buffer of {} bytes{kind}{top}",
            w.address,
            b.addr,
            b.offset,
            count(b.size)
        );
    }
    if w.audit {
        return format!("{:#x} is in the leaktrail audit region", w.address);
    }
    if let Some(s) = w.stack.as_ref().filter(|s| s.sp_offset < 0) {
        return format!(
            "{:#x} is on the stack of thread {}, {:#x} below its SP (dead: no frame owns it)",
            w.address,
            s.tid,
            s.sp_offset.unsigned_abs()
        );
    }
    if let Some(s) = &w.stack {
        let frame = s
            .frame
            .as_ref()
            .map(|f| format!(", in the frame of {f}"))
            .unwrap_or_default();
        return format!(
            "{:#x} is on the stack of thread {} (SP{:+#x}){frame}",
            w.address, s.tid, s.sp_offset
        );
    }
    if let Some((name, off)) = &w.symbol {
        let module = a.path.rsplit('/').next().unwrap_or(&a.path);
        let what = match a.kind {
            AreaKind::File if w.code.is_some() => "code",
            _ => "global",
        };
        return format!(
            "{:#x} is {what} {name}+{off:#x}{}",
            w.address,
            if module.is_empty() {
                String::new()
            } else {
                format!(" ({module})")
            }
        );
    }
    if let Some(c) = &w.code {
        return format!("{:#x} is code: {c}", w.address);
    }
    if let Some(j) = &w.jit {
        return format!("{:#x} is JIT code: {j}", w.address);
    }
    let what = match &a.kind {
        AreaKind::Heap => {
            "in the brk heap, not in a live buffer (free or malloc's own)".to_string()
        }
        AreaKind::Arena => {
            "in a malloc arena, not in a live buffer (free or malloc's own)".to_string()
        }
        AreaKind::Anon => "in anonymous memory that is not malloc's".to_string(),
        AreaKind::Chunks => {
            "in anonymous memory beside mmap'd malloc chunks, not in a live buffer".to_string()
        }
        AreaKind::Tls { tid } => format!("in thread {tid}'s static TLS area"),
        AreaKind::CachedStack => {
            "in the stack of a finished thread, which glibc keeps for reuse".to_string()
        }
        AreaKind::ModuleData => "in module data".to_string(),
        other => format!("in a {} mapping", other.name()),
    };
    format!("{:#x} is {what}", w.address)
}

/// The line, the mapping, and the buffer's allocation stack.
pub fn text(w: &Whatis) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", line(w));
    let a = &w.area;
    let _ = writeln!(
        o,
        "  mapping {:#x}-{:#x} {} {}{}",
        a.start,
        a.end,
        a.perms,
        a.kind.name(),
        if a.path.is_empty() {
            String::new()
        } else {
            format!(" {}", a.path)
        }
    );
    if let Some(b) = &w.buffer {
        let _ = writeln!(
            o,
            "  allocated by thread {} at {:.6} s, stack:",
            b.tid,
            b.time_ns as f64 / 1e9
        );
        stack(&mut o, &b.stack, "    ");
    }
    o
}
