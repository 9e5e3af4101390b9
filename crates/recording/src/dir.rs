//! The recording directory: what `watch` writes and every analysis reads.
//!
//! ```text
//! leaktrail-<comm>-<pid>-<YYYYMMDDTHHMMSSZ>/      mode 0700
//!   meta.json          who was watched, how, and how it ended   (0600)
//!   samples.jsonl      one JSON object per sample, appended     (0600)
//!   smaps/000000.json  per-mapping detail of some samples       (0600)
//! ```
//!
//! [`Meta`], [`Sample`] and [`Detail`] are the records, serialised with
//! serde; the README's "Recording directory" section is their reference.
//! `meta.json` and every detail file are written to a temporary name and
//! renamed, so a reader never sees half of one. `samples.jsonl` is appended
//! one whole line per `write(2)`: rewriting it on every sample would cost
//! O(n²) over a long watch, and appending keeps every sample gathered so
//! far even if the watcher is killed. A reader ignores a last line without
//! its newline (the only damage a crash can do).
//!
//! The format is versioned by `meta.json`'s `format` and `version`; readers
//! refuse versions newer than [`VERSION`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::maps::{Mapping, MemoryLimit, RegionBytes};
use crate::snapshot::metadata::MAX_SPAN;
use crate::Error;

pub mod snapshots;

/// `meta.json`'s `format` value.
pub const FORMAT: &str = "leaktrail-recording";
/// The newest recording version this crate reads and the one it writes.
pub const VERSION: u32 = 1;

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written.
    pub version: u32,
    /// The watched process.
    pub pid: i32,
    /// Its `comm`.
    pub comm: String,
    /// Its command line.
    pub cmdline: Vec<String>,
    /// Whether `watch` started it (`watch -- CMD`) rather than attached.
    pub launched: bool,
    /// Wall-clock time of sample 0, in milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// The sampling interval asked for, in milliseconds.
    pub interval_ms: u64,
    /// The memory limit the process would run into, if known.
    pub memory_limit: Option<MemoryLimit>,
    /// How the watch ended; `null` while it runs (or if the watcher died).
    pub end: Option<End>,
}

/// Why a watch stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// The process exited.
    Exited,
    /// `--duration` passed.
    Duration,
    /// The user interrupted the watch.
    Interrupted,
}

/// How and when a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Why.
    pub reason: EndReason,
    /// Exit status of a launched process that exited normally.
    pub exit_code: Option<i32>,
    /// Signal that killed a launched process.
    pub signal: Option<i32>,
}

/// One line of `samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Index, from 0, without gaps.
    pub i: u64,
    /// Seconds since sample 0.
    pub t: f64,
    /// Resident bytes (`smaps_rollup` `Rss`).
    pub rss: u64,
    /// Proportional set size.
    pub pss: u64,
    /// Anonymous resident bytes.
    pub anon: u64,
    /// Swapped-out bytes.
    pub swap: u64,
    /// Resident bytes per region, on samples that read the full `smaps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<RegionBytes>,
    /// Whether `smaps/<i>.json` holds this sample's mappings.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detail: bool,
}

/// `smaps/NNNNNN.json`: the mappings of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The sample's index.
    pub i: u64,
    /// The sample's time, seconds since sample 0.
    pub t: f64,
    /// Every mapping, in address order, classified.
    pub mappings: Vec<Mapping>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in milliseconds (UTC).
pub fn utc_stamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The default recording directory name:
/// `leaktrail-<comm>-<pid>-<YYYYMMDDTHHMMSSZ>`, with anything in `comm`
/// that is not safe in a file name replaced by `_`.
pub fn default_dir_name(comm: &str, pid: i32, unix_ms: u64) -> String {
    let comm: String = comm
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("leaktrail-{comm}-{pid}-{}", utc_stamp(unix_ms))
}

pub use crate::output::write_atomically;

fn detail_name(i: u64) -> String {
    format!("{i:06}.json")
}

/// Checks that the input `path` is a regular file (following symbolic
/// links) before it is opened: a pipe would block the reader forever and a
/// device could be endless, so either is one clear line instead.
pub fn expect_regular_file(path: &Path) -> Result<(), Error> {
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if m.is_file() {
        return Ok(());
    }
    Err(Error::malformed(
        path,
        format!(
            "expected a regular file, found {}",
            crate::output::describe(&m.file_type())
        ),
    ))
}

/// Reads the text file `path` of a recording, which must be a regular file.
fn read_text(path: &Path) -> std::io::Result<String> {
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "expected a regular file",
            ));
        }
    }
    std::fs::read_to_string(path)
}

/// Checks that `dir` can become a recording: it does not exist and its
/// parent is a directory we may write in, or it is an empty directory we
/// may write in. (Called before starting a target, so that a bad `--out`
/// costs nothing.)
pub fn check_new_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
            if entries.next().is_some() {
                return Err(Error::malformed(dir, "expected a new or empty directory for the recording, found one with files in it"));
            }
            writable_dir(dir)
        }
        Ok(_) => Err(Error::malformed(
            dir,
            "expected a new or empty directory for the recording, found a file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            match std::fs::metadata(parent) {
                Ok(m) if m.is_dir() => writable_dir(parent),
                Ok(_) => Err(Error::malformed(parent, "not a directory")),
                Err(e) => Err(Error::io(parent, e)),
            }
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Whether we may create files in the directory `dir`.
fn writable_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::malformed(dir, "a path with a NUL byte"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes a recording as a watch goes.
#[derive(Debug)]
pub struct RecordingWriter {
    dir: PathBuf,
    samples: File,
}

impl RecordingWriter {
    /// Creates the directory (mode 0700; it may exist if empty) and writes
    /// `meta.json`.
    pub fn create(dir: &Path, meta: &Meta) -> Result<RecordingWriter, Error> {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                check_new_dir(dir)?;
                // It holds process memory: ours alone, like one we created.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::write(dir, e))?;
            }
            Err(e) => return Err(Error::write(dir, e)),
        }
        let smaps = dir.join("smaps");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&smaps)
            .map_err(|e| Error::write(&smaps, e))?;
        let writer_path = dir.join("samples.jsonl");
        let samples = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&writer_path)
            .map_err(|e| Error::write(&writer_path, e))?;
        let w = RecordingWriter {
            dir: dir.to_path_buf(),
            samples,
        };
        w.write_meta(meta)?;
        Ok(w)
    }

    /// The recording's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// (Re)writes `meta.json`.
    pub fn write_meta(&self, meta: &Meta) -> Result<(), Error> {
        let mut text = serde_json::to_vec_pretty(meta).map_err(|e| Error::Encode {
            what: "encoding meta.json".into(),
            source: e,
        })?;
        text.push(b'\n');
        write_atomically(&self.dir.join("meta.json"), &text)
    }

    /// Appends one sample as one line, with one `write(2)`.
    pub fn append(&mut self, sample: &Sample) -> Result<(), Error> {
        let mut line = serde_json::to_vec(sample).map_err(|e| Error::Encode {
            what: "encoding a sample".into(),
            source: e,
        })?;
        line.push(b'\n');
        self.samples
            .write_all(&line)
            .map_err(|e| Error::write(self.dir.join("samples.jsonl"), e))
    }

    /// Writes `smaps/<i>.json`.
    pub fn write_detail(&self, detail: &Detail) -> Result<(), Error> {
        let text = serde_json::to_vec(detail).map_err(|e| Error::Encode {
            what: "encoding mappings".into(),
            source: e,
        })?;
        write_atomically(&self.dir.join("smaps").join(detail_name(detail.i)), &text)
    }
}

/// Which sample of a recording: `first`, `last`, an index (`12`), or a
/// time since the start (`30s`, `2m`; the nearest sample with detail).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleSelector {
    /// Sample 0 (or the first with detail).
    First,
    /// The last sample with detail.
    Last,
    /// That sample index exactly.
    Index(u64),
    /// The sample with detail nearest to this time since the start.
    Time(Duration),
}

impl SampleSelector {
    /// Parses `first`, `last`, `N` or a duration.
    pub fn parse(text: &str) -> Result<SampleSelector, String> {
        match text.trim() {
            "first" => Ok(SampleSelector::First),
            "last" => Ok(SampleSelector::Last),
            t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t
                .parse()
                .map(SampleSelector::Index)
                .map_err(|_| format!("sample index {t:?} is too large")),
            t => crate::duration::parse(t)
                .map(SampleSelector::Time)
                .map_err(|e| {
                    format!("expected first, last, a sample index or a time such as 30s: {e}")
                }),
        }
    }
}

/// A recording read back: its meta and its samples.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The directory.
    pub dir: PathBuf,
    /// `meta.json`.
    pub meta: Meta,
    /// Every complete line of `samples.jsonl`, in order.
    pub samples: Vec<Sample>,
}

impl Recording {
    /// Reads `meta.json` and `samples.jsonl`. A last line without newline
    /// (a watcher that died mid-write) is ignored.
    pub fn open(dir: &Path) -> Result<Recording, Error> {
        let meta_path = dir.join("meta.json");
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such recording directory"),
            ));
        }
        let text = read_text(&meta_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::malformed(dir, "not a leaktrail recording (no meta.json)")
            } else {
                Error::io(&meta_path, e)
            }
        })?;
        let meta = parse_meta(&text).map_err(|why| Error::malformed(&meta_path, why))?;
        let samples_path = dir.join("samples.jsonl");
        let text = read_text(&samples_path).map_err(|e| Error::io(&samples_path, e))?;
        let samples = parse_samples(&text).map_err(|why| Error::malformed(&samples_path, why))?;
        Ok(Recording {
            dir: dir.to_path_buf(),
            meta,
            samples,
        })
    }

    /// Reads the per-mapping detail of sample `i`.
    pub fn detail(&self, i: u64) -> Result<Detail, Error> {
        let path = self.dir.join("smaps").join(detail_name(i));
        let text = read_text(&path).map_err(|e| Error::io(&path, e))?;
        let detail: Detail = serde_json::from_str(&text)
            .map_err(|e| Error::malformed(&path, format!("expected per-mapping detail: {e}")))?;
        check_mappings(&detail.mappings).map_err(|why| Error::malformed(&path, why))?;
        Ok(detail)
    }

    /// The sample a selector names; it must have per-mapping detail.
    pub fn select(&self, sel: SampleSelector) -> Result<&Sample, Error> {
        let with_detail: Vec<&Sample> = self.samples.iter().filter(|s| s.detail).collect();
        let none = || {
            Error::malformed(
                &self.dir,
                "the recording has no sample with per-mapping detail",
            )
        };
        match sel {
            SampleSelector::First => with_detail.first().copied().ok_or_else(none),
            SampleSelector::Last => with_detail.last().copied().ok_or_else(none),
            SampleSelector::Index(i) => match self.samples.iter().find(|s| s.i == i) {
                Some(s) if s.detail => Ok(s),
                found => {
                    let near: Vec<String> = nearest(&with_detail, |s| s.i as f64, i as f64)
                        .iter()
                        .map(|s| s.i.to_string())
                        .collect();
                    Err(Error::malformed(
                        &self.dir,
                        format!(
                            "sample {i} {}; samples with detail near it: {}",
                            if found.is_some() {
                                "has no per-mapping detail"
                            } else {
                                "does not exist"
                            },
                            if near.is_empty() {
                                "none".to_string()
                            } else {
                                near.join(", ")
                            }
                        ),
                    ))
                }
            },
            SampleSelector::Time(d) => nearest(&with_detail, |s| s.t, d.as_secs_f64())
                .first()
                .copied()
                .ok_or_else(none),
        }
    }
}

/// The (at most two) samples closest to `target` by `key`, closest first.
fn nearest<'a>(
    samples: &[&'a Sample],
    key: impl Fn(&Sample) -> f64,
    target: f64,
) -> Vec<&'a Sample> {
    let mut v: Vec<&Sample> = samples.to_vec();
    v.sort_by(|a, b| (key(a) - target).abs().total_cmp(&(key(b) - target).abs()));
    v.truncate(2);
    v
}

/// Refuses mappings that no `smaps` could hold: wider than the 57-bit
/// address space, with more bytes resident (or proportional, dirty,
/// anonymous, swapped) than mapped, or overlapping. So every sum over a
/// sample's mappings fits in a `u64`.
fn check_mappings(mappings: &[Mapping]) -> Result<(), String> {
    for m in mappings {
        let span = m.end.checked_sub(m.start).filter(|&s| s <= MAX_SPAN);
        let counters = [m.rss, m.pss, m.private_dirty, m.anonymous, m.swap];
        if !span.is_some_and(|s| counters.iter().all(|&v| v <= s)) {
            return Err(format!(
                "mapping {:#x}-{:#x} (rss {}, swap {}) is wider than the address space or holds more than it maps",
                m.start, m.end, m.rss, m.swap
            ));
        }
    }
    match crate::maps::first_overlap(mappings.iter().map(|m| (m.start, m.end)).collect()) {
        Some((a, b)) => Err(format!(
            "mappings {:#x}-{:#x} and {:#x}-{:#x} overlap",
            a.0, a.1, b.0, b.1
        )),
        None => Ok(()),
    }
}

/// Parses and checks `meta.json`.
pub fn parse_meta(text: &str) -> Result<Meta, String> {
    #[derive(Deserialize)]
    struct Head {
        format: Option<String>,
        version: Option<u32>,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| format!("expected JSON: {e}"))?;
    if head.format.as_deref() != Some(FORMAT) {
        return Err(format!(
            "expected format {FORMAT:?}, found {:?}",
            head.format.unwrap_or_default()
        ));
    }
    match head.version {
        Some(v) if v <= VERSION && v >= 1 => {}
        v => {
            return Err(format!(
                "recording version {v:?} is not one this leaktrail reads (1..={VERSION}); upgrade leaktrail"
            ))
        }
    }
    serde_json::from_str(text).map_err(|e| format!("expected recording metadata: {e}"))
}

/// Parses `samples.jsonl`, ignoring an unterminated last line.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, String> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| format!("line {}: expected a sample: {e}", n + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_764_146_000_000), "20251126T083320Z");
        assert_eq!(utc_stamp(951_782_400_000), "20000229T000000Z");
        assert_eq!(
            default_dir_name("my server (v2)/x", 42, 0),
            "leaktrail-my_server__v2__x-42-19700101T000000Z"
        );
    }

    #[test]
    fn selectors() {
        assert_eq!(SampleSelector::parse("first"), Ok(SampleSelector::First));
        assert_eq!(SampleSelector::parse("last"), Ok(SampleSelector::Last));
        assert_eq!(SampleSelector::parse("12"), Ok(SampleSelector::Index(12)));
        assert_eq!(
            SampleSelector::parse("1m30s"),
            Ok(SampleSelector::Time(Duration::from_secs(90)))
        );
        assert!(SampleSelector::parse("").is_err());
        assert!(SampleSelector::parse("-3").is_err());
        assert!(SampleSelector::parse("12x").is_err());
    }

    #[test]
    fn samples_tolerate_a_torn_last_line() {
        let text = "{\"i\":0,\"t\":0.0,\"rss\":1,\"pss\":1,\"anon\":0,\"swap\":0}\n{\"i\":1,\"t\":0.1,\"rss\":2,\"ps";
        let s = parse_samples(text).unwrap();
        assert_eq!(s.len(), 1);
        assert!(parse_samples("").unwrap().is_empty());
        assert!(parse_samples("{\"i\":0}\n").is_err());
    }

    #[test]
    fn meta_versions() {
        assert!(parse_meta("{}").is_err());
        assert!(parse_meta("not json").is_err());
        let e = parse_meta(r#"{"format":"leaktrail-recording","version":99}"#).unwrap_err();
        assert!(e.contains("99"), "{e}");
    }

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("leaktrail-rec-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let meta = Meta {
            format: FORMAT.into(),
            version: VERSION,
            pid: 1,
            comm: "x".into(),
            cmdline: vec!["x".into()],
            launched: false,
            start_unix_ms: 5,
            interval_ms: 100,
            memory_limit: None,
            end: None,
        };
        let mut w = RecordingWriter::create(&dir, &meta).unwrap();
        let s = Sample {
            i: 0,
            t: 0.0,
            rss: 10,
            pss: 9,
            anon: 8,
            swap: 0,
            regions: Some(RegionBytes::default()),
            detail: true,
        };
        w.append(&s).unwrap();
        w.write_detail(&Detail {
            i: 0,
            t: 0.0,
            mappings: vec![],
        })
        .unwrap();
        let r = Recording::open(&dir).unwrap();
        assert_eq!(r.meta, meta);
        assert_eq!(r.samples, vec![s]);
        assert_eq!(r.select(SampleSelector::Last).unwrap().i, 0);
        assert!(r.select(SampleSelector::Index(3)).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("meta.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(RecordingWriter::create(&dir, &meta).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
