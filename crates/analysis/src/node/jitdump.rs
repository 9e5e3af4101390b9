//! V8's jitdump (`node --perf-prof`): every code object V8 made, with the
//! time it was made and, for optimized code, the source position of each
//! call in it. What names a JS frame as it was when a block was allocated,
//! with the line of the call and the function TurboFan inlined there.
//!
//! The file (`jit-PID.dump`, which `leaktrail run` moves into the
//! recording as `jit.dump`) is perf's format: a header, then records of
//! `{id, size, timestamp}`. We read two kinds: `JIT_CODE_LOAD` (address,
//! size, name such as `JS:*handleRequest /app/server.js:12:30`; the name
//! carries the function's start position) and `JIT_CODE_DEBUG_INFO`, which
//! precedes the load of the code it describes and lists `(address, line,
//! column, script)` per source position. Timestamps are `CLOCK_MONOTONIC`,
//! as the tracer's block times.
//!
//! Why the jitdump and not the perf map alone: perf-map lines have no time,
//! and V8 reuses addresses as it throws code away, so the last line that
//! covers an address may be a later function's. Here each code object has
//! its load time: a block allocated at `t` is named from the last code
//! loaded over its address before `t` ([`JitDump::epoch`]). The tracer's
//! clock is the coarse monotonic clock, up to one kernel tick behind, so
//! code loaded up to [`CLOCK_SLACK_NS`] after a block's time still counts.
//!
//! Limits, from what V8 11 (Node 20) writes: a debug entry gives only the
//! innermost position of an inlined call, so an inlined frame is named by
//! the function, among those V8 compiled in that script, whose start
//! position comes last before the position (we know where functions
//! start, not where they end: a position after a nested function's end is
//! put in it), and the calls between it and the outer function are not
//! seen. The outer frame of an inlined call keeps its function's start
//! line. V8 writes the name of a user script in debug entries as garbage
//! of the name's length (its `node:` scripts are fine); a garbage name is
//! taken as the script of that length among those known, the code's own
//! first, unless the position lies past that script's last line (V8 also
//! writes an inlined `node:` function's script as garbage of the user
//! script's length: `createUnsafeBuffer`'s line 1063 in a 130-line
//! script). A script's lines are counted from the file, when it is there.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use leaktrail_format::StackId;
use leaktrail_recording::audit::{self, Audit, Block};
use leaktrail_recording::Snapshot;

use crate::profile::{self, Entry, Profile, SiteKey};
use crate::symbolize::{Frame, FrameKind, Symbolizer};
use crate::v8::{BaselineCode, InlinedCall, InterpretedCode, JsHeap, LineEnds};
use crate::Error;

/// How far behind the tracer's coarse clock may be: one kernel tick at
/// HZ=100.
pub const CLOCK_SLACK_NS: u64 = 10_000_000;

const MAGIC: u32 = 0x4A69_5444;
const CODE_LOAD: u32 = 0;
const DEBUG_INFO: u32 = 2;
/// V8 adds the size of the ELF header `perf inject` puts before each
/// function to debug entry addresses.
const ELF_HEADER_SIZE: u64 = 0x40;

/// One source position in a code object.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    /// Offset from the code's start.
    offset: u64,
    line: u32,
    column: u32,
    /// Index into [`JitDump::scripts`], if the name could be resolved.
    script: Option<usize>,
}

/// One code object.
#[derive(Clone, Debug)]
struct Code {
    start: u64,
    end: u64,
    /// Its rank in load order.
    seq: usize,
    /// The perf-map-style name.
    name: String,
    positions: Vec<Position>,
    /// For optimized code, the whole inlining stack at each position,
    /// when a snapshot held the code ([`JitDump::learn_code`]).
    inlined: Option<Vec<(u64, Vec<InlinedCall>)>>,
    /// For Sparkplug's code, the bytecode each stretch of it runs (the
    /// jitdump's positions are at bytecode offsets), when a snapshot held
    /// the code.
    baseline: Option<BaselineCode>,
    /// For an interpreted function's code (its copy of the interpreter's
    /// trampoline), its bytecode's source positions, when a snapshot held
    /// them: the line of a frame whose tracer noted its bytecode offset.
    interpreted: Option<Rc<InterpretedCode>>,
}

/// A JS function's start, in a script.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Start {
    line: u32,
    column: u32,
    name: String,
}

/// A parsed jitdump.
#[derive(Clone, Debug, Default)]
pub struct JitDump {
    /// The process that wrote it.
    pub pid: u32,
    /// Code objects by start address (then load order).
    code: Vec<Code>,
    longest: u64,
    /// Load times in load order, ns of `CLOCK_MONOTONIC`.
    times: Vec<u64>,
    scripts: Vec<String>,
    /// Per script, the JS functions V8 compiled in it, by start.
    starts: Vec<Vec<Start>>,
    /// Per script, its number of lines, if its file could be read.
    lines: Vec<Option<u32>>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A debug entry as read: address, line, column, raw name.
type RawEntry<'a> = (u64, u32, u32, &'a [u8]);

/// A debug entry kept until its code's load: address, line, column, name.
type OwnedEntry = (u64, u32, u32, Vec<u8>);

/// The entries of a `JIT_CODE_DEBUG_INFO` body. A name normally ends at
/// its NUL, but V8 may write garbage of the right length with NULs inside
/// (see the module documentation), so a name ends at the first NUL after
/// which the next entry is plausible: an address not before this one's
/// and near the code, a line and column that fit an `i32`.
fn debug_entries(body: &[u8], code: u64, count: usize) -> Vec<RawEntry<'_>> {
    let mut out = Vec::with_capacity(count);
    let mut p = 16;
    let plausible = |at: usize, prev: u64| -> bool {
        match (
            u64_at(body, at),
            u32_at(body, at + 8),
            u32_at(body, at + 12),
        ) {
            (Some(a), Some(l), Some(c)) => {
                a >= prev && a < code + (64 << 20) && l < (1 << 28) && c < (1 << 28)
            }
            _ => false,
        }
    };
    for i in 0..count {
        let (Some(addr), Some(line), Some(column)) =
            (u64_at(body, p), u32_at(body, p + 8), u32_at(body, p + 12))
        else {
            break;
        };
        let name_at = p + 16;
        let last = i + 1 == count;
        let end = (name_at..body.len()).find(|&q| {
            body[q] == 0
                && if last {
                    q + 1 == body.len()
                } else {
                    plausible(q + 1, addr)
                }
        });
        let end = match end {
            Some(e) => e,
            // The last entry may be followed by padding.
            None if last => match body[name_at.min(body.len())..].iter().position(|&b| b == 0) {
                Some(k) => name_at + k,
                None => break,
            },
            None => break,
        };
        out.push((addr, line, column, &body[name_at..end]));
        p = end + 1;
    }
    out
}

/// A debug entry's name when V8 wrote it cleanly: UTF-8 without control
/// characters, as a script's path or `node:` name is.
fn clean_name(name: &[u8]) -> Option<&str> {
    std::str::from_utf8(name)
        .ok()
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
}

/// The script of a JS code name: `JS:*name /app/x.js:12:30` → `/app/x.js`,
/// with the start line and column.
fn script_of(name: &str) -> Option<(String, u32, u32, String)> {
    let f = crate::symbolize::jit_frame(0, name);
    if f.kind != FrameKind::Js {
        return None;
    }
    Some((f.file?, f.line?, f.column.unwrap_or(0), f.function?))
}

/// The number of lines of the script at `path`, if it is an absolute path
/// to a file we can read (a user script; `node:` scripts are not files).
fn lines_on_disk(path: &str) -> Option<u32> {
    if !path.starts_with('/') {
        return None;
    }
    let text = std::fs::read(path).ok()?;
    let newlines = text.iter().filter(|&&b| b == b'\n').count();
    u32::try_from(newlines + usize::from(!text.ends_with(b"\n"))).ok()
}

impl JitDump {
    /// Parses a jitdump; a truncated last record is left out. Scripts'
    /// lines are counted from their files ([`JitDump::parse_with`]).
    pub fn parse(bytes: &[u8]) -> Result<JitDump, String> {
        JitDump::parse_with(bytes, &lines_on_disk)
    }

    /// [`JitDump::parse`], with `lines` giving a script's number of lines
    /// (None: unknown), which tells a garbage script name that cannot be
    /// the script of its length.
    pub fn parse_with(
        bytes: &[u8],
        lines: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<JitDump, String> {
        if u32_at(bytes, 0) != Some(MAGIC) {
            return Err("not a jitdump (no JiTD magic)".into());
        }
        let header = u32_at(bytes, 8).unwrap_or(40) as usize;
        let mut dump = JitDump {
            pid: u32_at(bytes, 20).unwrap_or(0),
            ..JitDump::default()
        };
        let mut script_index: HashMap<String, usize> = HashMap::new();
        // Debug entries of the next code load, by its address.
        let mut pending: HashMap<u64, Vec<OwnedEntry>> = HashMap::new();
        let mut raw: Vec<(Code, Vec<OwnedEntry>)> = Vec::new();
        let mut at = header;
        while let (Some(id), Some(size), Some(time)) = (
            u32_at(bytes, at),
            u32_at(bytes, at + 4),
            u64_at(bytes, at + 8),
        ) {
            let size = size as usize;
            if size < 16 || at + size > bytes.len() {
                break;
            }
            let body = &bytes[at + 16..at + size];
            match id {
                DEBUG_INFO => {
                    if let (Some(code), Some(n)) = (u64_at(body, 0), u64_at(body, 8)) {
                        let entries = debug_entries(body, code, n as usize)
                            .into_iter()
                            .map(|(a, l, c, name)| (a, l, c, name.to_vec()))
                            .collect();
                        pending.insert(code, entries);
                    }
                }
                CODE_LOAD => {
                    let (Some(start), Some(len)) = (u64_at(body, 16), u64_at(body, 24)) else {
                        break;
                    };
                    let name_end = body[40.min(body.len())..]
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(body.len(), |k| 40 + k);
                    let name =
                        String::from_utf8_lossy(&body[40.min(name_end)..name_end]).into_owned();
                    if let Some((script, line, column, function)) = script_of(&name) {
                        let next = script_index.len();
                        let s = *script_index.entry(script.clone()).or_insert(next);
                        if s == dump.scripts.len() {
                            dump.lines.push(lines(&script));
                            dump.scripts.push(script);
                            dump.starts.push(Vec::new());
                        }
                        dump.starts[s].push(Start {
                            line,
                            column,
                            name: function,
                        });
                    }
                    let seq = dump.times.len();
                    dump.times.push(time);
                    let code = Code {
                        start,
                        end: start.saturating_add(len),
                        seq,
                        name,
                        positions: Vec::new(),
                        inlined: None,
                        baseline: None,
                        interpreted: None,
                    };
                    let entries = pending.remove(&start).unwrap_or_default();
                    raw.push((code, entries));
                }
                _ => {}
            }
            at += size;
        }
        for starts in &mut dump.starts {
            starts.sort();
            starts.dedup();
        }
        // Positions, with their scripts resolved now that every script's
        // name is known.
        // Where a clean name was written for a position: a garbage name at
        // the same line and column is that script's (V8 also writes
        // garbage for an inlined `node:` function, of another length).
        let mut clean: HashMap<(u32, u32), String> = HashMap::new();
        for (_, entries) in &raw {
            for (_, line, column, name) in entries {
                if let Some(n) = clean_name(name) {
                    clean
                        .entry((*line, *column))
                        .or_insert_with(|| n.to_string());
                }
            }
        }
        for (mut code, entries) in raw {
            let own = script_of(&code.name).and_then(|(s, ..)| script_index.get(&s).copied());
            code.positions = entries
                .into_iter()
                .filter(|(a, ..)| *a >= code.start + ELF_HEADER_SIZE)
                .map(|(a, line, column, name)| Position {
                    offset: a - code.start - ELF_HEADER_SIZE,
                    line,
                    column,
                    script: dump.resolve_script(
                        &name,
                        line,
                        clean.get(&(line, column)).map(String::as_str),
                        own,
                        &script_index,
                    ),
                })
                .collect();
            code.positions.sort_by_key(|p| p.offset);
            dump.code.push(code);
        }
        dump.code.sort_by_key(|c| (c.start, c.seq));
        dump.longest = dump.code.iter().map(|c| c.end - c.start).max().unwrap_or(0);
        Ok(dump)
    }

    /// The script a debug entry's name stands for (see the module docs).
    /// `clean` is the name written cleanly elsewhere for the same line and
    /// column, if any. A clean name V8 compiled no function of stands for
    /// no known script (its functions cannot be named). No name stands for
    /// a script that has fewer lines than `line`.
    fn resolve_script(
        &self,
        name: &[u8],
        line: u32,
        clean: Option<&str>,
        own: Option<usize>,
        index: &HashMap<String, usize>,
    ) -> Option<usize> {
        // V8 writes the outer function's script for an inlined position,
        // garbled or (in other code objects) clean: no script holds a
        // position past its last line.
        let holds = |i: usize| self.lines[i].is_none_or(|n| line <= n);
        if let Some(n) = clean_name(name).or(clean) {
            return index.get(n).copied().filter(|&i| holds(i));
        }
        let len = name.len();
        let fits = |i: usize| self.scripts[i].len() == len && holds(i);
        if let Some(o) = own.filter(|&o| fits(o)) {
            return Some(o);
        }
        let mut same = (0..self.scripts.len()).filter(|&i| fits(i));
        match (same.next(), same.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        }
    }

    /// Reads the jitdump at `path`.
    pub fn open(path: &Path) -> Result<JitDump, Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Insufficient(format!("cannot read the jitdump {}: {e}", path.display()))
        })?;
        JitDump::parse(&bytes)
            .map_err(|why| Error::Insufficient(format!("{}: {why}", path.display())))
    }

    /// The jitdump of the recording `snapshot` belongs to, if it has one
    /// that can be read, with the inlining stacks its snapshots hold
    /// ([`JitDump::learn_code_beside`]). Read once per recording and
    /// thread while the recording's snapshots stay the same: every
    /// snapshot of a series is symbolized with the same one.
    pub fn for_snapshot(snap: &Snapshot) -> Option<Rc<JitDump>> {
        thread_local! {
            static READ: RefCell<HashMap<PathBuf, ReadDump>> = RefCell::new(HashMap::new());
        }
        let snapshot = snap.path();
        let path = JitDump::beside(snapshot)?;
        let cores = snapshot.parent().map(cores_in).unwrap_or_default();
        if let Some(dump) = READ.with(|r| {
            r.borrow()
                .get(&path)
                .filter(|(seen, _)| *seen == cores)
                .map(|(_, d)| d.clone())
        }) {
            return Some(dump);
        }
        let mut dump = JitDump::open(&path).ok()?;
        // Another process's (a stale file): not worth reading its code.
        if snap.pid().is_some_and(|pid| pid as u32 == dump.pid) {
            dump.learn_code_beside(snapshot);
        }
        let dump = Rc::new(dump);
        READ.with(|r| r.borrow_mut().insert(path, (cores, dump.clone())));
        Some(dump)
    }

    /// The jitdump of the recording a snapshot belongs to
    /// (`DIR/snapshots/NNNN.core` → `DIR/jit.dump`), if there is one.
    pub fn beside(snapshot: &Path) -> Option<PathBuf> {
        let dir = snapshot.parent()?.parent()?;
        let p = dir.join(JITDUMP_FILE);
        p.is_file().then_some(p)
    }

    /// How many code objects had been loaded by `t_ns` (`CLOCK_MONOTONIC`),
    /// allowing for the tracer's coarse clock: the code a block allocated
    /// at `t_ns` may have run.
    pub fn epoch(&self, t_ns: u64) -> usize {
        let t = t_ns.saturating_add(CLOCK_SLACK_NS);
        // Load times ascend with the file's order.
        self.times.partition_point(|&x| x <= t)
    }

    /// The last code object over `addr` among the first `epoch` loaded.
    fn code_at(&self, addr: u64, epoch: usize) -> Option<&Code> {
        let i = self.code.partition_point(|c| c.start <= addr);
        self.code[..i]
            .iter()
            .rev()
            .take_while(|c| addr - c.start < self.longest.max(1))
            .filter(|c| addr < c.end && c.seq < epoch)
            .max_by_key(|c| c.seq)
    }

    /// Whether the note the tracer kept with a frame at return address
    /// `ret` can change how the frame is named: the last code loaded over
    /// it is interpreted, and its bytecode is known. Stacks that differ
    /// only in notes that cannot are the same stack to people.
    pub fn note_matters(&self, ret: u64) -> bool {
        ret.checked_sub(1)
            .and_then(|at| self.code_at(at, usize::MAX))
            .is_some_and(|c| is_interpreted(&c.name) && c.interpreted.is_some())
    }

    /// Whether it knows any code.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The frames of a return address `ret` in JIT code, as of `epoch`
    /// ([`JitDump::epoch`]): an inlined callee first when the call's
    /// position is in another function, then the code's own function with
    /// the call's line and column. `None` when no code covered it then.
    /// `note` is what the tracer noted with the frame: for interpreted
    /// code, its bytecode-offset slot.
    pub fn frames(&self, ret: u64, note: Option<u64>, epoch: usize) -> Option<Vec<Frame>> {
        let lookup = ret.checked_sub(1)?;
        let code = self.code_at(lookup, epoch)?;
        let mut outer = crate::symbolize::jit_frame(ret, &code.name);
        if outer.kind != FrameKind::Js {
            return Some(vec![outer]);
        }
        outer.start_line = outer.line;
        outer.start_column = outer.column;
        // Interpreted code: the frame's bytecode offset, which the tracer
        // read from the frame, names the call through the bytecode's
        // source positions (from a snapshot); without either the frame
        // keeps its function's start.
        if is_interpreted(&code.name) {
            let call = code
                .interpreted
                .as_ref()
                .zip(note)
                .and_then(|(i, slot)| i.call_at(slot));
            if let Some((line, column)) = call {
                outer.line = Some(line);
                outer.column = Some(column);
            }
            return Some(vec![outer]);
        }
        // Sparkplug's code: V8 writes its bytecode's positions at bytecode
        // offsets as if they were machine code offsets. With the code's
        // bytecode per stretch of machine code (from a snapshot), the
        // return address has its bytecode and so its line; without, the
        // frame keeps its function's start, as an interpreted one does.
        if code.name.starts_with(BASELINE) {
            let bytecode = code
                .baseline
                .as_ref()
                .and_then(|b| b.bytecode_at(ret - code.start));
            if let Some(bytecode) = bytecode.filter(|&b| b >= 0) {
                let i = code
                    .positions
                    .partition_point(|p| p.offset <= bytecode as u64);
                if let Some(pos) = i.checked_sub(1).map(|k| &code.positions[k]) {
                    outer.line = Some(pos.line);
                    outer.column = Some(pos.column);
                }
            }
            return Some(vec![outer]);
        }
        let offset = lookup - code.start;
        if let Some(stacks) = &code.inlined {
            let i = stacks.partition_point(|(o, _)| *o <= offset);
            return Some(match i.checked_sub(1).map(|k| &stacks[k].1) {
                Some(stack) => self.stack_frames(outer, stack),
                None => vec![outer],
            });
        }
        let i = code.positions.partition_point(|p| p.offset <= offset);
        let Some(pos) = i.checked_sub(1).map(|k| &code.positions[k]) else {
            return Some(vec![outer]);
        };
        let own = outer
            .file
            .as_deref()
            .and_then(|f| self.scripts.iter().position(|s| s == f));
        let callee = pos.script.and_then(|s| {
            let starts = &self.starts[s];
            let k = starts.partition_point(|st| (st.line, st.column) <= (pos.line, pos.column));
            starts.get(k.checked_sub(1)?).map(|st| (s, st))
        });
        match callee {
            Some((s, st))
                if Some(s) != own
                    || (Some(st.line), Some(st.column))
                        != (outer.start_line, outer.start_column) =>
            {
                let mut inner = outer.clone();
                inner.function = Some(st.name.clone());
                inner.file = Some(self.scripts[s].clone());
                inner.line = Some(pos.line);
                inner.column = Some(pos.column);
                inner.start_line = Some(st.line);
                inner.start_column = Some(st.column);
                inner.inlined = true;
                Some(vec![inner, outer])
            }
            Some(_) => {
                outer.line = Some(pos.line);
                outer.column = Some(pos.column);
                Some(vec![outer])
            }
            None => Some(vec![outer]),
        }
    }
}

impl JitDump {
    /// The frames of one inlining stack (innermost first) of code whose
    /// own frame is `outer`: each inlined call named by its function,
    /// script and line, with its function's start from the functions V8
    /// compiled in that script; the last, the code's own, at its line.
    fn stack_frames(&self, mut outer: Frame, stack: &[InlinedCall]) -> Vec<Frame> {
        let Some((own, inlined)) = stack.split_last() else {
            return vec![outer];
        };
        let mut frames = Vec::with_capacity(stack.len());
        for call in inlined {
            let mut f = outer.clone();
            let start = self.start_of(call);
            f.function = Some(match start {
                Some(st) => st.name.clone(),
                None if call.function.is_empty() => ANONYMOUS.into(),
                None => call.function.clone(),
            });
            f.file = call.script.clone();
            f.line = Some(call.line);
            f.column = Some(call.column);
            f.start_line = start.map(|st| st.line);
            f.start_column = start.map(|st| st.column);
            f.inlined = true;
            frames.push(f);
        }
        outer.line = Some(own.line);
        outer.column = Some(own.column);
        frames.push(outer);
        frames
    }

    /// Where the function of an inlined call starts, among those V8
    /// compiled in its script, and the name V8 gave it there (so that the
    /// frame is named as the function's other tiers are): the last start
    /// before the call of a function of that name; for an anonymous one,
    /// the last start before the call.
    fn start_of(&self, call: &InlinedCall) -> Option<&Start> {
        let s = self
            .scripts
            .iter()
            .position(|k| Some(k.as_str()) == call.script.as_deref())?;
        let mut before = self.starts[s]
            .iter()
            .filter(|st| (st.line, st.column) <= (call.line, call.column));
        if call.function.is_empty() {
            return before.next_back();
        }
        before.rfind(|st| same_function(&st.name, &call.function))
    }

    /// Learns the whole inlining stacks of the optimized code objects
    /// that `heap` (a snapshot's) still holds where the jitdump put them,
    /// and that are the same code: the innermost call at each of the
    /// jitdump's positions must be the one the jitdump names (its line
    /// and column). Code already learnt is left alone. Returns how many
    /// code objects were learnt.
    pub fn learn_code(&mut self, heap: &JsHeap<'_>) -> usize {
        let mut learnt = 0;
        let lines = LineEnds::default();
        for code in &mut self.code {
            if code.positions.is_empty() || code.inlined.is_some() || code.baseline.is_some() {
                continue;
            }
            if code.name.starts_with(BASELINE) {
                let Some(found) = heap.baseline_code(code.start) else {
                    continue;
                };
                // The same code: its machine code fits, the jitdump's
                // positions are its bytecode's (all but the function's
                // entry), and each is at one of its bytecodes.
                let fits = found
                    .bytecodes
                    .last()
                    .is_some_and(|&(end, _)| end <= code.end - code.start);
                let offsets: Vec<u64> = code.positions.iter().map(|p| p.offset).collect();
                let written = |table: &Vec<u64>| table.iter().eq(offsets.iter());
                if fits
                    && found.position_offsets.iter().any(written)
                    && offsets.iter().all(|&o| found.starts_bytecode(o))
                {
                    code.baseline = Some(found);
                    learnt += 1;
                }
                continue;
            }
            if !code.name.starts_with(OPTIMIZED) {
                continue;
            }
            let Some(found) = heap.inlining(code.start, &lines) else {
                continue;
            };
            // At each debug entry, the table's innermost call is the
            // jitdump's.
            let agrees = {
                code.positions.iter().all(|p| {
                    // The table's offsets ascend: its entries at this one.
                    let at = p.offset;
                    let i = found.positions.partition_point(|(o, _)| *o < at);
                    found.positions[i..]
                        .iter()
                        .take_while(|(o, _)| *o == at)
                        .any(|(_, stack)| {
                            stack
                                .first()
                                .is_some_and(|c| (c.line, c.column) == (p.line, p.column))
                        })
                })
            };
            let own = crate::symbolize::jit_frame(code.start, &code.name)
                .function
                .unwrap_or_default();
            // Every stack ends in the code's own function (the position
            // that is not inlined): one look tells whose code it is.
            let same_function = found
                .positions
                .first()
                .and_then(|(_, stack)| stack.last())
                .is_some_and(|c| same_function(&own, &c.function));
            if agrees && same_function {
                code.inlined = Some(found.positions);
                learnt += 1;
            }
        }
        learnt
    }

    /// [`JitDump::learn_code`] from the full snapshots of the
    /// recording `snapshot` is in (`DIR/snapshots/*.core`): at most
    /// [`INLINING_SNAPSHOTS`] of them, the first and last included and
    /// the rest spread between, so that code V8 dropped before the last
    /// snapshot is still found in an earlier one and every snapshot names
    /// a block's frames alike. Snapshots without V8's heap (`--memory
    /// tables`) teach nothing.
    pub fn learn_code_beside(&mut self, snapshot: &Path) {
        let interpreted = self.code.iter().any(|c| is_interpreted(&c.name));
        if !interpreted
            && !self.code.iter().any(|c| {
                (c.name.starts_with(OPTIMIZED) || c.name.starts_with(BASELINE))
                    && !c.positions.is_empty()
            })
        {
            return;
        }
        let Some(dir) = snapshot.parent() else {
            return;
        };
        let cores = cores_in(dir);
        let mut metadata = None;
        for (n, core) in spread(&cores, INLINING_SNAPSHOTS).into_iter().enumerate() {
            let Ok(snap) = Snapshot::open(core) else {
                continue;
            };
            if metadata.is_none() {
                metadata = Some(crate::v8::metadata_for(&snap).ok());
            }
            let Some(Some(md)) = &metadata else {
                return;
            };
            // Interpreted functions are found among the heap's objects,
            // which costs a walk of the heap: done on the first few.
            let objects = interpreted
                && n < INTERPRETED_SNAPSHOTS
                && self
                    .code
                    .iter()
                    .any(|c| is_interpreted(&c.name) && c.interpreted.is_none());
            let heap = if objects {
                JsHeap::open(&snap, md)
            } else {
                JsHeap::open_pages(&snap, md)
            };
            if let Ok(heap) = heap {
                self.learn_code(&heap);
                if objects {
                    self.learn_interpreted(&heap);
                }
            }
        }
    }

    /// Learns the bytecode of the interpreted functions whose code
    /// `heap` (a snapshot's, with its objects) holds where the jitdump
    /// put it: the same function (its name, its script, and its entry at
    /// the start the jitdump names: V8 reuses a dropped trampoline's
    /// address for another function's). Code already learnt is left
    /// alone. Returns how many code objects were learnt.
    pub fn learn_interpreted(&mut self, heap: &JsHeap<'_>) -> usize {
        if !self
            .code
            .iter()
            .any(|c| is_interpreted(&c.name) && c.interpreted.is_none())
        {
            return 0;
        }
        let found = heap.interpreted_code(&LineEnds::default());
        let mut shared: HashMap<u64, Rc<InterpretedCode>> = HashMap::new();
        let mut learnt = 0;
        for code in &mut self.code {
            if !is_interpreted(&code.name) || code.interpreted.is_some() {
                continue;
            }
            let Some(bytecode) = found.get(&code.start) else {
                continue;
            };
            let own = crate::symbolize::jit_frame(code.start, &code.name);
            let start = (own.line.unwrap_or(0), own.column.unwrap_or(0));
            let same = same_function(own.function.as_deref().unwrap_or(""), &bytecode.function)
                && (bytecode.script.is_none() || bytecode.script == own.file)
                && bytecode.start == start;
            if same {
                let rc = shared
                    .entry(code.start)
                    .or_insert_with(|| Rc::new(bytecode.clone()));
                code.interpreted = Some(rc.clone());
                learnt += 1;
            }
        }
        learnt
    }
}

/// How the jitdump names a function without a name.
const ANONYMOUS: &str = "(anonymous)";

/// Whether the jitdump's name of a function (V8's debug name: its own
/// name, else the one inferred from where it was assigned, such as
/// `Readable.push`) is the function a SharedFunctionInfo names `v8`.
fn same_function(jit: &str, v8: &str) -> bool {
    // An anonymous SharedFunctionInfo: V8's debug name is then the name
    // it inferred, or "(anonymous)"; either is this function's.
    if v8.is_empty() {
        return !jit.is_empty();
    }
    jit == v8
        || jit
            .strip_suffix(v8)
            .is_some_and(|head| head.ends_with('.') || head.ends_with(' '))
}

/// The snapshots (`*.core`) in `dir`, by name.
fn cores_in(dir: &Path) -> Vec<PathBuf> {
    let mut cores: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "core"))
        .collect();
    cores.sort();
    cores
}

/// How many snapshots of a recording [`JitDump::learn_code_beside`]
/// reads at most.
pub const INLINING_SNAPSHOTS: usize = 16;
/// How many of those it walks the heap of, for interpreted functions:
/// the last and the first.
pub const INTERPRETED_SNAPSHOTS: usize = 2;

/// At most `n` of `items`, the last first, then the first, then evenly
/// spread between.
fn spread<T>(items: &[T], n: usize) -> Vec<&T> {
    let len = items.len();
    let mut picked: Vec<usize> = if len <= n {
        (0..len).collect()
    } else {
        (0..n).map(|k| k * (len - 1) / (n - 1).max(1)).collect()
    };
    picked.dedup();
    picked.sort_by_key(|&i| std::cmp::Reverse(i == len - 1));
    picked.into_iter().map(|i| &items[i]).collect()
}

/// A jitdump as read for a recording, with the snapshot files it was
/// read beside.
type ReadDump = (Vec<PathBuf>, Rc<JitDump>);

/// Whether the jitdump names an interpreted function's code (its copy
/// of the interpreter's trampoline): `JS:~`, or `JS:` and no tier's mark
/// for a function V8 will not optimize (`%NeverOptimizeFunction`, or
/// optimization disabled after too many deoptimizations).
fn is_interpreted(name: &str) -> bool {
    name.strip_prefix("JS:")
        .is_some_and(|rest| !rest.starts_with(['^', '+', '*']))
}

/// How V8 names Sparkplug's (baseline) code in the jitdump.
const BASELINE: &str = "JS:^";
/// How V8 names TurboFan's (optimized) code in the jitdump.
const OPTIMIZED: &str = "JS:*";

/// The file name of the jitdump in a recording directory.
pub const JITDUMP_FILE: &str = "jit.dump";

/// Live memory by site of `blocks` of `audit`, read from `snap`, each
/// block's JIT frames named as of its allocation time when `symbolizer`
/// has a jitdump: blocks are grouped by the code loaded before them
/// ([`JitDump::epoch`]), each group profiled with the symbolizer set to
/// its epoch, and the groups' entries merged by site. Without a jitdump,
/// [`Profile::from_blocks`] as it is.
pub fn profile(
    snap: &Snapshot,
    audit: &Audit,
    symbolizer: &Symbolizer,
    blocks: &[Block],
) -> Profile {
    let Some(dump) = symbolizer.jitdump() else {
        return Profile::from_blocks(snap, audit, symbolizer, profile::pairs(blocks));
    };
    let t0 = audit::start_monotonic_ns(snap, audit.header_addr).unwrap_or(0);
    let mut groups: BTreeMap<usize, Vec<(u64, StackId)>> = BTreeMap::new();
    for b in blocks {
        groups
            .entry(dump.epoch(t0 + b.time_ns))
            .or_default()
            .push((b.size, b.stack));
    }
    let mut entries: HashMap<(SiteKey, u64), Entry> = HashMap::new();
    for (epoch, group) in groups {
        symbolizer.set_jit_epoch(Some(epoch));
        let p = Profile::from_blocks_uncounted(snap, audit, symbolizer, group);
        for e in p.entries {
            entries
                .entry((e.key.clone(), e.class))
                .and_modify(|m| {
                    m.count += e.count;
                    m.bytes += e.bytes;
                })
                .or_insert(e);
        }
    }
    // The tracer's per-site counts span every epoch: they are named with
    // no epoch set, each JS frame by the code it was last seen in, and
    // keyed by the line of the call (Frame::site_frame), so that one
    // function's sites keep apart.
    symbolizer.set_jit_epoch(None);
    let mut out = Profile::from_blocks(snap, audit, symbolizer, std::iter::empty());
    out.entries = entries.into_values().collect();
    out.entries.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.count.cmp(&a.count))
            .then(a.class.cmp(&b.class))
            .then(a.key.cmp(&b.key))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn header(pid: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(MAGIC.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(40u32.to_le_bytes());
        b.extend(62u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(pid.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b
    }

    fn record(b: &mut Vec<u8>, id: u32, time: u64, body: &[u8]) {
        b.extend(id.to_le_bytes());
        b.extend((16 + body.len() as u32).to_le_bytes());
        b.extend(time.to_le_bytes());
        b.extend(body);
    }

    fn load(b: &mut Vec<u8>, time: u64, start: u64, size: u64, name: &str) {
        let mut body = Vec::new();
        body.extend(1u32.to_le_bytes());
        body.extend(1u32.to_le_bytes());
        body.extend(start.to_le_bytes());
        body.extend(start.to_le_bytes());
        body.extend(size.to_le_bytes());
        body.extend(0u64.to_le_bytes());
        body.extend(name.as_bytes());
        body.push(0);
        body.extend(std::iter::repeat_n(0xcc, size as usize));
        record(b, CODE_LOAD, time, &body);
    }

    fn debug(b: &mut Vec<u8>, time: u64, code: u64, entries: &[(u64, u32, u32, &[u8])]) {
        let mut body = Vec::new();
        body.extend(code.to_le_bytes());
        body.extend((entries.len() as u64).to_le_bytes());
        for (off, line, col, name) in entries {
            body.extend((code + ELF_HEADER_SIZE + off).to_le_bytes());
            body.extend(line.to_le_bytes());
            body.extend(col.to_le_bytes());
            body.extend(*name);
            body.push(0);
        }
        record(b, DEBUG_INFO, time, &body);
    }

    /// One address reused: `old` at t=100, `leak` over it at t=200 (the
    /// perf map would name both `leak`); `leak`'s optimized code calls at
    /// offset 0x20 into `callee`, inlined, whose position's script name is
    /// V8's garbage of the right length with a NUL inside.
    fn sample() -> JitDump {
        let mut b = header(7);
        load(&mut b, SECOND, 0x1000, 0x100, "JS:~old /app/a.js:1:10");
        load(
            &mut b,
            SECOND + 1,
            0x5000,
            0x80,
            "JS:~callee /app/a.js:2:16",
        );
        let garbage: &[u8] = b"\x5c\xc2\x02\x00\x00\x01\x02\x03\x07";
        debug(
            &mut b,
            2 * SECOND,
            0x1000,
            &[
                (0x0, 5, 13, garbage),
                (0x20, 2, 27, garbage),
                (0x40, 6, 3, garbage),
            ],
        );
        load(&mut b, 2 * SECOND, 0x1000, 0x100, "JS:*leak /app/a.js:5:13");
        JitDump::parse(&b).expect("parses")
    }

    #[test]
    fn code_is_named_as_it_was_when_the_block_was_allocated() {
        let d = sample();
        assert_eq!(d.pid, 7);
        let name = |t: u64| {
            d.frames(0x1011, None, d.epoch(t))
                .and_then(|f| f.last().and_then(|f| f.function.clone()))
        };
        assert_eq!(name(SECOND + SECOND / 2), Some("old".into()));
        assert_eq!(name(3 * SECOND), Some("leak".into()));
        // A block stamped just before the code's load, by the coarse clock.
        assert_eq!(name(2 * SECOND - CLOCK_SLACK_NS / 2), Some("leak".into()));
        assert_eq!(d.frames(0x1011, None, d.epoch(0)), None);
    }

    #[test]
    fn baseline_code_is_named_at_its_bytecodes_line_or_its_start() {
        let mut b = header(7);
        debug(
            &mut b,
            SECOND,
            0x3000,
            &[(0x0, 9, 4, b"/app/b.js"), (0x30, 12, 8, b"/app/b.js")],
        );
        load(&mut b, SECOND, 0x3000, 0x80, "JS:^handle /app/b.js:7:16");
        let mut d = JitDump::parse_with(&b, &|_| None).expect("parses");
        let at = |d: &JitDump, offset: u64| {
            let frames = d
                .frames(0x3000 + offset, None, d.epoch(2 * SECOND))
                .expect("frames");
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].function.as_deref(), Some("handle"));
            (frames[0].line, frames[0].column)
        };
        assert_eq!(at(&d, 0x35), (Some(7), Some(16)));
        // With its bytecode per stretch of machine code (from a snapshot):
        // the prologue up to 0x10, bytecode 0 up to 0x30, bytecode 0x30 up
        // to 0x50; the positions are at bytecode offsets.
        d.code[0].baseline = Some(BaselineCode {
            bytecodes: vec![(0x10, -1), (0x30, 0), (0x50, 0x30)],
            position_offsets: vec![vec![0, 1, 0x31]],
        });
        assert_eq!(at(&d, 0x35), (Some(12), Some(8)));
        assert_eq!(at(&d, 0x30), (Some(9), Some(4)));
        assert_eq!(at(&d, 0x8), (Some(7), Some(16)), "the prologue: the start");
    }

    #[test]
    fn interpreted_code_is_named_at_its_frames_bytecode_or_its_start() {
        let mut b = header(7);
        load(&mut b, SECOND, 0x3000, 0x80, "JS:~handle /app/b.js:7:16");
        // V8 names a function it will not optimize without a tier's mark.
        load(&mut b, SECOND, 0x4000, 0x80, "JS:once /app/b.js:20:1");
        let mut d = JitDump::parse_with(&b, &|_| None).expect("parses");
        let at = |d: &JitDump, ret: u64, note: Option<u64>| {
            let frames = d.frames(ret, note, d.epoch(2 * SECOND)).expect("frames");
            assert_eq!(frames.len(), 1);
            let f = &frames[0];
            (f.function.clone(), f.line, f.column, f.start_line)
        };
        let handle = |line, column| {
            (
                Some("handle".to_string()),
                Some(line),
                Some(column),
                Some(7),
            )
        };
        assert_eq!(
            at(&d, 0x3010, Some(53 + 4)),
            handle(7, 16),
            "nothing learnt"
        );
        // The bytecode's positions (from a snapshot): bytecode 4 at 9:4,
        // 12 at 10:8.
        let code = Rc::new(InterpretedCode {
            function: "handle".into(),
            script: Some("/app/b.js".into()),
            slot_base: 53,
            start: (7, 16),
            bytecodes: vec![0, 4, 7, 11, 12, 15],
            positions: vec![(4, 9, 4), (12, 10, 8)],
        });
        d.code[0].interpreted = Some(code.clone());
        d.code[1].interpreted = Some(code);
        assert_eq!(at(&d, 0x3010, Some(53 + 4)), handle(9, 4));
        assert_eq!(at(&d, 0x3010, Some(53 + 12)), handle(10, 8));
        assert_eq!(at(&d, 0x3010, Some(53 + 11)), handle(9, 4));
        assert_eq!(at(&d, 0x3010, Some(53)), handle(7, 16), "before any call");
        assert_eq!(
            at(&d, 0x3010, Some(53 + 13)),
            handle(7, 16),
            "not at a bytecode: the start"
        );
        assert_eq!(at(&d, 0x3010, None), handle(7, 16), "no note: the start");
        assert_eq!(
            at(&d, 0x3010, Some(7)),
            handle(7, 16),
            "a note below the base"
        );
        assert_eq!(
            at(&d, 0x4010, Some(53 + 12)).1,
            Some(10),
            "`JS:` is interpreted"
        );
    }

    #[test]
    fn a_learnt_inlining_stack_names_every_call_in_it() {
        let mut d = sample();
        let call = |function: &str, line, column| InlinedCall {
            function: function.into(),
            script: Some("/app/a.js".into()),
            line,
            column,
        };
        let code = d
            .code
            .iter_mut()
            .find(|c| c.name.starts_with("JS:*leak"))
            .expect("leak's code");
        // `leak` (5:13) calls `middle` at 7:5, inlined, which calls
        // `callee` at 3:9, inlined; `middle` was never compiled on its own
        // (no start known), `callee` was (2:16).
        code.inlined = Some(vec![
            (0x0, vec![call("leak", 5, 13)]),
            (
                0x21,
                vec![
                    call("callee", 2, 27),
                    call("middle", 3, 9),
                    call("leak", 7, 5),
                ],
            ),
        ]);
        let frames = d
            .frames(0x1000 + 0x25, None, d.epoch(3 * SECOND))
            .expect("frames");
        let shown: Vec<_> = frames
            .iter()
            .map(|f| {
                (
                    f.function.clone().unwrap_or_default(),
                    f.line,
                    f.start_line,
                    f.inlined,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("callee".into(), Some(2), Some(2), true),
                ("middle".into(), Some(3), None, true),
                ("leak".into(), Some(7), Some(5), false),
            ]
        );
        // Before the first position past the call: the function's own.
        let own = d
            .frames(0x1000 + 0x21, None, d.epoch(3 * SECOND))
            .expect("frames");
        assert_eq!(own.len(), 1);
        assert_eq!((own[0].line, own[0].column), (Some(5), Some(13)));
    }

    #[test]
    fn an_inlined_function_is_named_as_its_other_tiers_are() {
        let d = sample();
        let call = |function: &str, line, column| InlinedCall {
            function: function.into(),
            script: Some("/app/a.js".into()),
            line,
            column,
        };
        let named = |c: InlinedCall| d.start_of(&c).map(|st| (st.name.clone(), st.line));
        assert_eq!(named(call("callee", 3, 1)), Some(("callee".into(), 2)));
        // Not before its start; not another function's.
        assert_eq!(named(call("callee", 2, 1)), None);
        assert_eq!(named(call("other", 9, 1)), None);
        // An anonymous function: the one that starts last before the call.
        assert_eq!(named(call("", 5, 20)), Some(("leak".into(), 5)));
        // A method V8 names by where it was assigned.
        assert!(same_function("Readable.push", "push"));
        assert!(same_function("get size", "size"));
        assert!(same_function("(anonymous)", ""));
        assert!(!same_function("unshift", "shift"));
        assert!(!same_function("push", "Readable.push"));
    }

    #[test]
    fn at_most_n_snapshots_are_read_the_last_and_first_among_them() {
        let items: Vec<u32> = (0..40).collect();
        let picked: Vec<u32> = spread(&items, 5).into_iter().copied().collect();
        assert_eq!(picked, [39, 0, 9, 19, 29]);
        let few: Vec<u32> = spread(&items[..3], 5).into_iter().copied().collect();
        assert_eq!(few, [2, 0, 1]);
        assert!(spread::<u32>(&[], 5).is_empty());
    }

    #[test]
    fn an_inlined_callee_is_named_with_its_line() {
        let d = sample();
        let frames = d
            .frames(0x1000 + 0x25, None, d.epoch(3 * SECOND))
            .expect("frames");
        let shown: Vec<(String, Option<u32>, Option<u32>, bool)> = frames
            .iter()
            .map(|f| {
                (
                    f.function.clone().unwrap_or_default(),
                    f.line,
                    f.column,
                    f.inlined,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("callee".into(), Some(2), Some(27), true),
                ("leak".into(), Some(5), Some(13), false),
            ]
        );
        assert_eq!(frames[0].file.as_deref(), Some("/app/a.js"));
        assert_eq!(frames[0].start_line, Some(2));
        // A call in the function itself: its own line, no inlined frame.
        let own = d
            .frames(0x1000 + 0x45, None, d.epoch(3 * SECOND))
            .expect("frames");
        assert_eq!(own.len(), 1);
        assert_eq!((own[0].line, own[0].column), (Some(6), Some(3)));
        assert_eq!(
            (own[0].start_line, own[0].start_column),
            (Some(5), Some(13))
        );
    }

    /// Seen on node 20: TurboFan inlined `Buffer.allocUnsafeSlow` into a
    /// user function of a script whose name has 9 bytes, and wrote the
    /// inlined position's script as 9 bytes of garbage, while other code
    /// names that position `node:internal/buffer`: node's, not the user
    /// script's; V8 compiled nothing of it here, so no inlined frame.
    #[test]
    fn garbage_at_a_position_named_cleanly_elsewhere_is_that_script() {
        let mut b = header(7);
        load(&mut b, SECOND, 0x5000, 0x80, "JS:~a /app/a.js:1:1");
        let garbage: &[u8] = b"\x55\xeb\xc6\x0b\x00\x9f\x35\x7c\xd0";
        debug(&mut b, SECOND, 0x1000, &[(0x20, 1063, 25, garbage)]);
        load(&mut b, SECOND, 0x1000, 0x100, "JS:*receive /app/a.js:5:17");
        debug(
            &mut b,
            SECOND,
            0x2000,
            &[(0x0, 1063, 25, b"node:internal/buffer".as_slice())],
        );
        load(&mut b, SECOND, 0x2000, 0x100, "JS:*other /app/a.js:9:1");
        let d = JitDump::parse(&b).expect("parses");
        let frames = d
            .frames(0x1000 + 0x25, None, d.epoch(2 * SECOND))
            .expect("frames");
        let shown: Vec<(Option<String>, Option<u32>, bool)> = frames
            .iter()
            .map(|f| (f.function.clone(), f.line, f.inlined))
            .collect();
        assert_eq!(shown, [(Some("receive".into()), Some(5), false)]);
    }

    /// Seen on node 20 (fixtures/node/workloads.js buffers): V8 wrote the
    /// script of `createUnsafeBuffer`, inlined from `node:internal/buffer`,
    /// as garbage of the user script's length, at its line 1063, and no
    /// other code named that position. The user script has 130 lines, so
    /// the position is not in it: no inlined frame (it was shown as
    /// `(anonymous) workloads.js:1063`, and split the leak in two).
    #[test]
    fn garbage_past_the_end_of_the_script_of_its_length_is_not_that_script() {
        let build = || {
            let mut b = header(7);
            load(
                &mut b,
                SECOND,
                0x5000,
                0x80,
                "JS:~(anonymous) /app/a.js:120:1",
            );
            let garbage: &[u8] = b"\x55\xeb\xc6\x0b\x00\x9f\x35\x7c\xd0";
            debug(&mut b, SECOND, 0x1000, &[(0x20, 1063, 25, garbage)]);
            load(&mut b, SECOND, 0x1000, 0x100, "JS:*receive /app/a.js:5:17");
            b
        };
        let shown = |d: &JitDump| -> Vec<(Option<String>, bool)> {
            d.frames(0x1000 + 0x25, None, d.epoch(2 * SECOND))
                .expect("frames")
                .iter()
                .map(|f| (f.function.clone(), f.inlined))
                .collect()
        };
        let short = JitDump::parse_with(&build(), &|_| Some(130)).expect("parses");
        assert_eq!(shown(&short), [(Some("receive".into()), false)]);
        // Other code objects write that position with the user script's
        // name written cleanly: still not in it.
        let mut clean = build();
        debug(
            &mut clean,
            SECOND,
            0x3000,
            &[(0x0, 1063, 25, b"/app/a.js".as_slice())],
        );
        load(&mut clean, SECOND, 0x3000, 0x100, "JS:*other /app/a.js:9:1");
        let d = JitDump::parse_with(&clean, &|_| Some(130)).expect("parses");
        assert_eq!(shown(&d), [(Some("receive".into()), false)]);
        // Without the file the garbage is still taken as the script of its
        // length: the position's function there is named inlined.
        let unknown = JitDump::parse_with(&build(), &|_| None).expect("parses");
        assert_eq!(
            shown(&unknown),
            [
                (Some("(anonymous)".into()), true),
                (Some("receive".into()), false)
            ]
        );
    }

    #[test]
    fn bad_input_is_refused_and_a_truncated_tail_left_out() {
        assert!(JitDump::parse(b"not a jitdump").is_err());
        let mut b = header(1);
        load(&mut b, 1, 0x1000, 0x10, "JS:~f /a.js:1:1");
        let whole = b.len();
        load(&mut b, 2, 0x2000, 0x10, "JS:~g /a.js:2:1");
        b.truncate(whole + 20);
        let d = JitDump::parse(&b).expect("parses");
        assert_eq!(d.code.len(), 1);
    }
}
