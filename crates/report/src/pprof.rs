//! pprof export: a snapshot's live memory as a gzipped `profile.proto`
//! that `go tool pprof`, Pyroscope and speedscope open.
//!
//! The messages are written out by hand below with `prost`'s derive, field
//! for field as in `github.com/google/pprof/proto/profile.proto`, so no
//! `protoc` is needed to build. Sample types are `inuse_objects/count` and
//! `inuse_space/bytes` (the default); each of those samples is one
//! allocation site in one size class, labelled with the class
//! (`size_class`, bytes). When the tracer counted per site (audit format
//! 2), `alloc_objects/count` and `alloc_space/bytes` follow, as in Go's
//! heap profiles: one more sample per site with its allocations and bytes
//! since the start (its `inuse_*` 0), so a site whose buffers were all
//! freed still shows. The per-class totals go into the comments.
//! Frames carry their function, file and line, functions their file and
//! start line (DWARF's `decl_line`); inlined calls become extra lines of
//! their caller's location, innermost first, as pprof expects;
//! mappings carry the module's path and build id.

use std::collections::HashMap;
use std::io::Write;

use leaktrail_analysis::profile::Profile;
use leaktrail_analysis::symbolize::{Frame, FrameKind};
use prost::Message;

use crate::flamegraph::frame_name;

/// `perftools.profiles.Profile`.
#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    /// What each value of a sample measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Memory mappings of the process.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Code locations.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string, indexed by the other fields; entry 0 is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Frames to drop (regexp, string index).
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Frames to keep (regexp, string index).
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When the profile was taken, ns since the epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long it covers.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between samples.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Events between samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The sample type shown by default (string index of its type).
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// `ValueType`: a type and a unit, as string indices.
#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    /// E.g. "inuse_space".
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// E.g. "bytes".
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `Sample`: a stack and its values.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Location ids, innermost first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// `Label`: a string or numeric tag on a sample.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Key (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index), or 0.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// Unit of `num` (string index).
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// `Mapping`: one mapped object file.
#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    /// Id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// First address.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// One past the last.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// Path (string index).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Build id (string index).
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Locations in it have functions.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// ... file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// ... line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// ... inlined frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// `Location`: one address, with the lines (inlined calls) it stands for.
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    /// Id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its mapping (0: none).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Runtime address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Innermost first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Several functions folded together.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// `Line`: a function and a line in it.
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line (0: unknown).
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Source column (0: unknown).
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// `Function`.
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    /// Id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Name (string index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Linker name (string index).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (string index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line (0: unknown).
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// Interns strings, functions and locations while a profile is built.
#[derive(Default)]
struct Builder {
    p: PprofProfile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    locations: HashMap<(u64, Vec<(u64, i64)>), u64>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.p.string_table.len() as i64;
        self.p.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, f: &Frame) -> u64 {
        let name = frame_name(f);
        let file = f.file.clone().unwrap_or_default();
        if let Some(&id) = self.functions.get(&(name.clone(), file.clone())) {
            return id;
        }
        let id = self.p.function.len() as u64 + 1;
        let (n, fl) = (self.string(&name), self.string(&file));
        self.p.function.push(Function {
            id,
            name: n,
            system_name: n,
            filename: fl,
            start_line: f.start_line.map_or(0, i64::from),
        });
        self.functions.insert((name, file), id);
        id
    }

    fn mapping_of(&self, address: u64) -> u64 {
        self.p
            .mapping
            .iter()
            .find(|m| m.memory_start <= address && address < m.memory_limit)
            .map_or(0, |m| m.id)
    }

    /// The location of one physical frame: `group` is the frame and the
    /// calls inlined into it, innermost first.
    fn location(&mut self, group: &[&Frame]) -> u64 {
        // A JS frame is keyed by its function and line, not by the code
        // address: each tier V8 compiles a function to (and each code
        // object at a reused address) would otherwise be a location of
        // its own (issue 14), unlike growth and the flame graph.
        let address = match group.last() {
            Some(f) if f.kind == FrameKind::Js => 0,
            Some(f) => f.address,
            None => 0,
        };
        let lines: Vec<Line> = group
            .iter()
            .map(|f| Line {
                function_id: self.function(f),
                line: f.line.map_or(0, i64::from),
                column: f.column.map_or(0, i64::from),
            })
            .collect();
        let key = (
            address,
            lines.iter().map(|l| (l.function_id, l.line)).collect(),
        );
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = self.p.location.len() as u64 + 1;
        let mapping_id = self.mapping_of(address);
        self.p.location.push(Location {
            id,
            mapping_id,
            address,
            line: lines,
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }
}

impl Builder {
    /// The locations of a stack, innermost first: one per physical frame,
    /// with the calls inlined into it.
    fn stack(&mut self, frames: &[Frame]) -> Vec<u64> {
        let mut location_id = Vec::new();
        let mut group: Vec<&Frame> = Vec::new();
        for f in frames {
            group.push(f);
            if !f.inlined {
                location_id.push(self.location(&group));
                group.clear();
            }
        }
        if !group.is_empty() {
            location_id.push(self.location(&group));
        }
        location_id
    }
}

/// The pprof message for `profile`.
pub fn message(profile: &Profile) -> PprofProfile {
    let mut b = Builder::default();
    b.string("");
    let objects = ValueType {
        r#type: b.string("inuse_objects"),
        unit: b.string("count"),
    };
    let space = ValueType {
        r#type: b.string("inuse_space"),
        unit: b.string("bytes"),
    };
    b.p.default_sample_type = space.r#type;
    b.p.sample_type = vec![objects, space.clone()];
    b.p.period_type = Some(space);
    // pprof's period is the sampling interval, as Go's and tcmalloc's heap
    // profiles give it; the values are already scaled estimates.
    b.p.period = profile.sample_rate.max(1).min(i64::MAX as u64) as i64;
    b.p.time_nanos = profile.time_unix_ns as i64;
    for (i, m) in profile.modules.iter().enumerate() {
        let filename = b.string(&m.path);
        let build_id = b.string(m.build_id.as_deref().unwrap_or(""));
        b.p.mapping.push(Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.start.saturating_sub(m.base),
            filename,
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
    }
    let counted = profile.counted.as_ref();
    if counted.is_some() {
        let alloc_objects = ValueType {
            r#type: b.string("alloc_objects"),
            unit: b.string("count"),
        };
        let alloc_space = ValueType {
            r#type: b.string("alloc_space"),
            unit: b.string("bytes"),
        };
        b.p.sample_type.extend([alloc_objects, alloc_space]);
    }
    let key = b.string("size_class");
    let unit = b.string("bytes");
    for e in &profile.entries {
        let location_id = b.stack(&e.frames);
        let mut value = vec![e.count as i64, e.bytes as i64];
        if counted.is_some() {
            value.extend([0, 0]);
        }
        b.p.sample.push(Sample {
            location_id,
            value,
            label: vec![Label {
                key,
                str: 0,
                num: e.class.min(i64::MAX as u64) as i64,
                num_unit: unit,
            }],
        });
    }
    for site in counted.iter().flat_map(|c| &c.sites) {
        let location_id = b.stack(&site.frames);
        let space = site.bytes.min(i64::MAX as u64) as i64;
        b.p.sample.push(Sample {
            location_id,
            value: vec![0, 0, site.allocs as i64, space],
            label: vec![],
        });
    }
    let mut comments = vec![format!(
        "leaktrail: live buffers of {} (pid {})",
        profile.path.display(),
        profile.pid.map_or("?".into(), |p| p.to_string())
    )];
    if profile.stackless {
        comments.push(leaktrail_analysis::profile::STACKLESS.to_string());
    }
    if let Some(t) = profile.before_attach {
        comments.push(leaktrail_analysis::profile::before_attach_note(t));
    }
    if profile.sample_rate != 0 {
        comments.push(format!(
            "sampled: one block per {} bytes allocated on average; values are estimates (each sampled block weighted by 1/(1-exp(-size/{})))",
            profile.sample_rate, profile.sample_rate
        ));
    }
    for (class, (allocs, frees)) in &profile.class_totals {
        comments.push(format!(
            "size class {class} B: {allocs} allocations, {frees} frees in total"
        ));
    }
    for c in comments {
        let i = b.string(&c);
        b.p.comment.push(i);
    }
    b.p
}

/// The gzipped encoding of [`message`], as pprof files are stored.
pub fn gzipped(profile: &Profile) -> std::io::Result<Vec<u8>> {
    let raw = message(profile).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    gz.finish()
}
