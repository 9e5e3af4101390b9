//! Mutations: what the fuzzer does to a seed file, written down so that a
//! finding can be replayed on a seed the test regenerates.
//!
//! A mutation is a short list of [`Op`]s. Each op names its position as an
//! anchor in the seed plus an offset ([`At`]): `audit+0x1a40` (a field of
//! the audit header), `live:3+64` (the third entry of live shard 3's
//! table), `phdr:2+32` (a program header's `p_filesz`), `note:LEAKTRAIL`
//! (our note's JSON). Regenerated seeds differ in addresses and in where
//! the kernel put things, but the same anchors exist in each, so an op
//! replays onto the same field. Anchors are resolved once, on the seed; the
//! ops then apply in order, each to the result of the last.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use leaktrail_format::{ChunkDesc, Header, ShardDesc, LIVE_SHARDS, STACK_SHARDS};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core_edit::{file_offset, notes, phdrs, rewrite_note, u32_at, u64_at};

const NT_FILE: u32 = leaktrail_recording::snapshot::note::NT_FILE;

/// A position in a seed: an anchor's file offset plus `off`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct At {
    pub anchor: String,
    pub off: i64,
}

/// One change to a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Flips one bit.
    Flip { at: At, bit: u8 },
    /// Overwrites a little-endian word of `width` bytes.
    Put { at: At, width: u8, value: u64 },
    /// Cuts the file at `at`.
    Truncate { at: At },
    /// Removes `len` bytes at `at`.
    Delete { at: At, len: u64 },
    /// Inserts a copy of the `len` bytes at `at` right after them.
    Duplicate { at: At, len: u64 },
    /// Overwrites the bytes at `at` with the `len` bytes at `from`.
    Splice { at: At, from: At, len: u64 },
    /// Sets the JSON value at `pointer` in the document: for a core, its
    /// LEAKTRAIL note (rewritten at the end of the file, PT_NOTE moved
    /// there); for `samples.jsonl`, `/N/...` is line N.
    Json { pointer: String, value: Value },
    /// Overwrites path number `nth` of the core's `NT_FILE` note with
    /// `to`, padded to the same length with leading slashes.
    Path { nth: u32, to: String },
}

/// Where a file the snapshot names may lead: a FIFO (which an open would
/// wait on forever; the seeds make it), devices, a directory, a file
/// whose size is 0 whatever it holds.
pub const HOSTILE_PATHS: [&str; 6] = [
    FIFO,
    "/dev/zero",
    "/dev/urandom",
    "/",
    "/proc/self/maps",
    "/dev/null",
];

/// The FIFO of [`HOSTILE_PATHS`].
pub const FIFO: &str = "/tmp/leaktrail-fuzz-fifo";

/// The words worth writing over a count, a size or an offset.
pub fn boundary_values(len: u64, old: u64) -> [u64; 14] {
    [
        0,
        1,
        u64::MAX,
        1 << 31,
        1 << 32,
        1 << 63,
        len,
        len + 1,
        old.wrapping_add(1),
        old.wrapping_sub(1),
        old.wrapping_mul(2),
        old << 12,
        u32::MAX as u64,
        i32::MAX as u64,
    ]
}

/// A small deterministic generator (splitmix64): the same seed gives the
/// same inputs on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// A named field inside an anchor: offset and width.
type Field = (i64, u8);

/// Where things are in one seed file, and which fields matter there.
#[derive(Default)]
pub struct Anchors {
    /// Anchor name to file offset.
    pub at: BTreeMap<String, u64>,
    /// Anchor name to its interesting fields (empty: anywhere within
    /// `span` bytes).
    fields: BTreeMap<String, Vec<Field>>,
    /// Anchor name to the bytes it spans (for random offsets).
    span: BTreeMap<String, u64>,
    /// The seed's LEAKTRAIL note JSON, or the JSON lines of a text file.
    pub json: Option<Value>,
    /// (offset, length) of each path in the `NT_FILE` note.
    paths: Vec<(usize, usize)>,
}

/// `(offset, width)` pairs of a struct placed at `base`.
fn fields_at(base: i64, list: &[(usize, u8)]) -> Vec<Field> {
    list.iter().map(|&(o, w)| (base + o as i64, w)).collect()
}

fn shard_fields(base: i64) -> Vec<Field> {
    let list = [
        (offset_of!(ShardDesc, seq), 8),
        (offset_of!(ShardDesc, lock), 4),
        (offset_of!(ShardDesc, table), 8),
        (offset_of!(ShardDesc, capacity), 8),
        (offset_of!(ShardDesc, len), 8),
        (offset_of!(ShardDesc, tombstones), 8),
    ];
    fields_at(base, &list)
}

impl Anchors {
    fn add(&mut self, name: String, at: u64, span: u64, fields: Vec<Field>) {
        self.at.insert(name.clone(), at);
        self.span.insert(name.clone(), span.max(1));
        self.fields.insert(name, fields);
    }

    /// The anchors of `bytes`: an ELF core's structure, or a text file's
    /// JSON (one document, or one per line).
    pub fn of(bytes: &[u8]) -> Anchors {
        let mut a = Anchors::default();
        let len = bytes.len() as u64;
        a.add("start".into(), 0, len, Vec::new());
        a.add("end".into(), len, 1, Vec::new());
        if !bytes.starts_with(b"\x7fELF") {
            let text = String::from_utf8_lossy(bytes);
            a.json = serde_json::from_str(&text).ok().or_else(|| {
                let lines: Option<Vec<Value>> =
                    text.lines().map(|l| serde_json::from_str(l).ok()).collect();
                lines.map(Value::Array)
            });
            return a;
        }
        // The ELF header: phoff, phentsize, phnum and friends.
        a.add(
            "ehdr".into(),
            0,
            64,
            vec![
                (16, 2),
                (18, 2),
                (32, 8),
                (40, 8),
                (54, 2),
                (56, 2),
                (60, 2),
            ],
        );
        let ph = phdrs(bytes);
        let phoff = u64_at(bytes, 32).unwrap_or(0);
        for (i, &(kind, off, _, size)) in ph.iter().enumerate() {
            let fields = vec![(0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8), (48, 8)];
            a.add(format!("phdr:{i}"), phoff + i as u64 * 56, 56, fields);
            if kind != 4 {
                continue;
            }
            for (k, (head, name, desc, descsz)) in notes(bytes, off, size).into_iter().enumerate() {
                a.add(format!("note:{k}"), head, 12, vec![(0, 4), (4, 4), (8, 4)]);
                a.add(format!("desc:{k}"), desc, descsz, Vec::new());
                let d = &bytes[desc as usize..(desc + descsz) as usize];
                if name.starts_with(leaktrail_format::NOTE_NAME.as_bytes()) {
                    a.json = serde_json::from_slice(d).ok();
                }
                let kind = u32_at(bytes, head as usize + 8);
                if name.starts_with(b"CORE") && kind == Some(NT_FILE) {
                    a.paths = file_note_paths(d, desc as usize);
                }
            }
        }
        let Some(header) = (0..bytes.len())
            .step_by(4096)
            .find(|&o| bytes[o..].starts_with(&leaktrail_format::MAGIC))
        else {
            return a;
        };
        let list = [
            (offset_of!(Header, version), 4),
            (offset_of!(Header, header_size), 4),
            (offset_of!(Header, pointer_width), 1),
            (offset_of!(Header, pid), 4),
            (offset_of!(Header, max_depth), 4),
            (offset_of!(Header, self_addr), 8),
            (offset_of!(Header, arena_cursor), 8),
            (offset_of!(Header, stack_count), 8),
        ];
        let mut fields = fields_at(0, &list);
        let desc = size_of::<ShardDesc>();
        for s in 0..LIVE_SHARDS {
            fields.extend(shard_fields((offset_of!(Header, live) + s * desc) as i64));
        }
        fields.extend(shard_fields(offset_of!(Header, maps) as i64));
        for s in 0..STACK_SHARDS {
            fields.extend(shard_fields(
                (offset_of!(Header, stack_index) + s * desc) as i64,
            ));
        }
        for c in 0..8 {
            fields.push((
                (offset_of!(Header, chunks) + c * size_of::<ChunkDesc>()) as i64,
                8,
            ));
        }
        a.add(
            "audit".into(),
            header as u64,
            size_of::<Header>() as u64,
            fields,
        );

        // The tables the header points at, found through its own words.
        let h = header;
        let table =
            |a: &mut Anchors, name: String, shard: usize, entry: u64, entry_fields: &[Field]| {
                let (Some(t), Some(cap)) = (
                    u64_at(bytes, shard + offset_of!(ShardDesc, table)),
                    u64_at(bytes, shard + offset_of!(ShardDesc, capacity)),
                ) else {
                    return;
                };
                let Some(off) = file_offset(bytes, t).filter(|_| t != 0) else {
                    return;
                };
                // The first few entries' fields; random offsets reach the rest.
                let fields = (0..cap.min(16) as i64)
                    .flat_map(|e| {
                        entry_fields
                            .iter()
                            .map(move |&(o, w)| (e * entry as i64 + o, w))
                    })
                    .collect();
                a.add(
                    name,
                    off as u64,
                    cap.saturating_mul(entry).min(1 << 20),
                    fields,
                );
            };
        let live_fields = [(0, 8), (8, 8), (16, 8), (24, 4), (28, 4)];
        for s in 0..LIVE_SHARDS {
            let shard = h + offset_of!(Header, live) + s * desc;
            table(&mut a, format!("live:{s}"), shard, 32, &live_fields);
        }
        table(
            &mut a,
            "maps".into(),
            h + offset_of!(Header, maps),
            32,
            &live_fields,
        );
        for s in 0..STACK_SHARDS {
            let shard = h + offset_of!(Header, stack_index) + s * desc;
            table(
                &mut a,
                format!("stackidx:{s}"),
                shard,
                16,
                &[(-8, 8), (0, 8), (8, 8)],
            );
        }
        for c in 0..4 {
            let at = h + offset_of!(Header, chunks) + c * size_of::<ChunkDesc>();
            if let Some(off) = u64_at(bytes, at).and_then(|v| file_offset(bytes, v)) {
                // A stack record: its length word, then frames.
                let fields = (0..32).map(|w| (w * 8, 8)).collect();
                a.add(format!("chunk:{c}"), off as u64, 1 << 20, fields);
            }
        }
        a
    }

    fn resolve(&self, at: &At) -> Option<u64> {
        let base = *self.at.get(&at.anchor)?;
        base.checked_add_signed(at.off)
    }

    /// A random position: mostly a known field of a random anchor, else a
    /// random byte within it.
    fn position(&self, rng: &mut Rng) -> (At, u8) {
        let names: Vec<&String> = self.at.keys().filter(|n| *n != "end").collect();
        let name = (*rng.pick(&names)).clone();
        let fields = &self.fields[&name];
        if !fields.is_empty() && !rng.chance(4) {
            let &(off, width) = rng.pick(fields);
            return (At { anchor: name, off }, width);
        }
        let off = rng.below(self.span[&name]) as i64;
        let width = *rng.pick(&[1u8, 2, 4, 8]);
        (At { anchor: name, off }, width)
    }

    /// One random op for a file of `len` bytes (`bytes` is the seed, for
    /// the old value of a word).
    pub fn random_op(&self, rng: &mut Rng, bytes: &[u8]) -> Op {
        let len = bytes.len() as u64;
        let (at, width) = self.position(rng);
        let old = self
            .resolve(&at)
            .and_then(|o| {
                let o = o as usize;
                let mut w = [0u8; 8];
                let src = bytes.get(o..(o + width as usize).min(bytes.len()))?;
                w[..src.len()].copy_from_slice(src);
                Some(u64::from_le_bytes(w))
            })
            .unwrap_or(0);
        let span = |rng: &mut Rng| {
            let most = *rng.pick(&[8u64, 64, 4096, len.max(1)]);
            1 + rng.below(most)
        };
        match rng.below(20) {
            0..=2 => Op::Flip {
                at,
                bit: rng.below(width as u64 * 8) as u8,
            },
            3..=10 => {
                let value = if rng.chance(6) {
                    rng.next()
                } else {
                    *rng.pick(&boundary_values(len, old))
                };
                Op::Put { at, width, value }
            }
            11 => Op::Truncate { at },
            12 => Op::Delete { at, len: span(rng) },
            13 => Op::Duplicate { at, len: span(rng) },
            14 => {
                let (from, _) = self.position(rng);
                Op::Splice {
                    at,
                    from,
                    len: span(rng),
                }
            }
            15 if !self.paths.is_empty() => Op::Path {
                nth: rng.below(self.paths.len() as u64) as u32,
                to: rng.pick(&HOSTILE_PATHS).to_string(),
            },
            _ => match self.json.as_ref().and_then(|j| random_json_op(rng, j, len)) {
                Some(op) => op,
                None => Op::Put {
                    at,
                    width,
                    value: *rng.pick(&boundary_values(len, old)),
                },
            },
        }
    }

    /// `seed` with `ops` applied in order; ops whose anchor this seed lacks
    /// are skipped.
    pub fn apply(&self, seed: &[u8], ops: &[Op]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for op in ops {
            self.apply_one(&mut b, op);
        }
        b
    }

    fn apply_one(&self, b: &mut Vec<u8>, op: &Op) {
        let clamp = |o: u64, b: &Vec<u8>| (o as usize).min(b.len());
        match op {
            Op::Flip { at, bit } => {
                if let Some(o) = self.resolve(at).map(|o| o as usize + *bit as usize / 8) {
                    if let Some(byte) = b.get_mut(o) {
                        *byte ^= 1 << (bit % 8);
                    }
                }
            }
            Op::Put { at, width, value } => {
                if let Some(o) = self.resolve(at).map(|o| clamp(o, b)) {
                    let end = (o + *width as usize).min(b.len());
                    b[o..end].copy_from_slice(&value.to_le_bytes()[..end - o]);
                }
            }
            Op::Truncate { at } => {
                if let Some(o) = self.resolve(at) {
                    b.truncate(o as usize);
                }
            }
            Op::Delete { at, len } => {
                if let Some(o) = self.resolve(at).map(|o| clamp(o, b)) {
                    let end = clamp(o as u64 + len, b);
                    b.drain(o..end);
                }
            }
            Op::Duplicate { at, len } => {
                if let Some(o) = self.resolve(at).map(|o| clamp(o, b)) {
                    let end = clamp(o as u64 + len, b);
                    let copy = b[o..end].to_vec();
                    b.splice(end..end, copy);
                }
            }
            Op::Splice { at, from, len } => {
                if let (Some(o), Some(f)) = (self.resolve(at), self.resolve(from)) {
                    let (o, f) = (clamp(o, b), clamp(f, b));
                    let n = (*len as usize).min(b.len() - o).min(b.len() - f);
                    let copy = b[f..f + n].to_vec();
                    b[o..o + n].copy_from_slice(&copy);
                }
            }
            Op::Json { pointer, value } => set_json(b, pointer, value),
            Op::Path { nth, to } => {
                let Some(&(at, len)) = self.paths.get(*nth as usize) else {
                    return;
                };
                if to.len() <= len && at + len <= b.len() {
                    let padded = "/".repeat(len - to.len()) + to;
                    b[at..at + len].copy_from_slice(padded.as_bytes());
                }
            }
        }
    }
}

/// (offset, length) of each path of an `NT_FILE` note whose descriptor is
/// `d`, at file offset `at`.
fn file_note_paths(d: &[u8], at: usize) -> Vec<(usize, usize)> {
    let Some(count) = u64_at(d, 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut o = 16usize.saturating_add((count as usize).saturating_mul(24));
    while o < d.len() && out.len() < count as usize {
        let len = d[o..].iter().position(|&c| c == 0).unwrap_or(d.len() - o);
        out.push((at + o, len));
        o += len + 1;
    }
    out
}

/// A random JSON edit: a path that exists in `doc`, and a hostile value.
fn random_json_op(rng: &mut Rng, doc: &Value, len: u64) -> Option<Op> {
    let mut paths = Vec::new();
    collect_paths(doc, String::new(), &mut paths);
    let mut pointer = rng.pick(&paths).clone();
    let old = doc.pointer(&pointer)?.clone();
    // Now and then the same field of every element (every sample, every
    // region): the first index in the path becomes `*`.
    if rng.chance(3) {
        let mut segs: Vec<&str> = pointer.split('/').collect();
        if let Some(s) = segs
            .iter_mut()
            .find(|s| !s.is_empty() && s.parse::<usize>().is_ok())
        {
            *s = "*";
        }
        pointer = segs.join("/");
    }
    let old = &old;
    let value = match rng.below(7) {
        0 => Value::Null,
        6 => Value::String(rng.pick(&HOSTILE_PATHS).to_string()),
        1 => Value::String("\u{0}\u{ffff}..//x".into()),
        2 => serde_json::json!(-1),
        3 => serde_json::json!(1e300),
        4 => match old {
            Value::Array(a) => Value::Array(a.iter().cycle().take(a.len() * 64).cloned().collect()),
            _ => serde_json::json!([]),
        },
        _ => serde_json::json!(*rng.pick(&boundary_values(len, old.as_u64().unwrap_or(0)))),
    };
    Some(Op::Json { pointer, value })
}

fn collect_paths(v: &Value, at: String, out: &mut Vec<String>) {
    if out.len() > 4096 {
        return;
    }
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                collect_paths(c, format!("{at}/{k}"), out);
            }
        }
        // Arrays: the first few and the last element.
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                if i < 4 || i + 1 == a.len() {
                    collect_paths(c, format!("{at}/{i}"), out);
                }
            }
        }
        _ => {}
    }
}

/// Sets `pointer` to `value` in `doc`; a `*` segment stands for every
/// element of an array (every sample of `samples.jsonl`).
fn set_pointer(doc: &mut Value, pointer: &str, value: &Value) {
    match pointer.split_once("/*") {
        Some((head, tail)) => {
            if let Some(Value::Array(items)) = doc.pointer_mut(head) {
                for item in items {
                    set_pointer(item, tail, value);
                }
            }
        }
        None if pointer.is_empty() => *doc = value.clone(),
        None => {
            if let Some(slot) = doc.pointer_mut(pointer) {
                *slot = value.clone();
            }
        }
    }
}

/// Sets `pointer` to `value` in the JSON of `b`: a core's LEAKTRAIL note,
/// one JSON document, or JSON lines (`/N` is line N).
fn set_json(b: &mut Vec<u8>, pointer: &str, value: &Value) {
    let put = |doc: &mut Value| set_pointer(doc, pointer, value);
    if !b.starts_with(b"\x7fELF") {
        let text = String::from_utf8_lossy(b).into_owned();
        if let Ok(mut doc) = serde_json::from_str::<Value>(&text) {
            put(&mut doc);
            *b = serde_json::to_vec(&doc).unwrap_or_default();
            return;
        }
        let lines: Option<Vec<Value>> =
            text.lines().map(|l| serde_json::from_str(l).ok()).collect();
        if let Some(lines) = lines {
            let mut doc = Value::Array(lines);
            put(&mut doc);
            let mut out = Vec::new();
            for l in doc.as_array().into_iter().flatten() {
                out.extend_from_slice(serde_json::to_string(l).unwrap_or_default().as_bytes());
                out.push(b'\n');
            }
            *b = out;
        }
        return;
    }
    rewrite_note(b, put);
}
