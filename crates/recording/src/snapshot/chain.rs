//! Incremental snapshots: a core that stores only the pages that changed
//! since an earlier one (its *base*), and names it.
//!
//! The incremental file is a complete core in every other way (every
//! thread's registers, every note); the memory it leaves to its base is a
//! PT_LOAD without file bytes whose range our note lists in
//! [`Metadata::inherited`](super::metadata::Metadata::inherited), and the
//! note's [`base`](super::metadata::Metadata::base) names the base by file
//! and content id. [`resolve`] (called by [`Snapshot::open`]) opens the
//! chain and replaces each inherited segment by the base's segments over
//! the same range, so every reader sees a whole snapshot.
//!
//! A chain is only as good as its files: [`materialize`] writes a
//! standalone copy (what gdb needs), and [`drop_snapshot`] deletes one
//! snapshot after folding what its dependents inherit from it into them,
//! so the ones after it stay readable.
//!
//! A missing base, or one whose content id is not the one named (a file
//! replaced under the same name), is a [`Error::Malformed`] naming both.

use std::path::{Path, PathBuf};

use leaktrail_format::{NOTE_NAME, NOTE_TYPE};

use super::elf::{self, Layout, ProgramHeader};
use super::metadata::{BaseRef, Metadata};
use super::note;
use super::{Segment, Snapshot};
use crate::output::{self, OutputFile};
use crate::Error;

/// Longest chain we follow: deeper is a loop, or a recording that should
/// have had a full snapshot long ago.
const MAX_DEPTH: usize = 256;

/// Opens the chain behind `own` (the `depth`-th link) and resolves its
/// inherited segments; `own` as it is when it has no base.
pub(super) fn resolve(mut own: Snapshot, depth: usize) -> Result<Snapshot, Error> {
    let Some(r) = own.metadata().and_then(|m| m.base.clone()) else {
        return Ok(own);
    };
    let bad = |why: String| Error::Malformed {
        what: own.path.display().to_string(),
        why,
    };
    if depth >= MAX_DEPTH {
        return Err(bad(format!(
            "a chain of more than {MAX_DEPTH} incremental snapshots (or a loop); materialize one"
        )));
    }
    let base_path = base_path(&own.path, &r).map_err(&bad)?;
    let base = match Snapshot::open_at(&base_path, depth + 1) {
        Ok(b) => b,
        Err(e) => {
            return Err(bad(format!(
                "incremental snapshot whose base {} cannot be read ({e}); keep a chain's files together, \
                 delete with `leaktrail snapshot --drop`, or `--materialize` a standalone copy first",
                base_path.display()
            )))
        }
    };
    let found = base.metadata().map_or("", |m| m.id.as_str());
    if found != r.id {
        return Err(bad(format!(
            "its base {} is another snapshot (content id {}, this one was taken against {}); \
             the base was replaced",
            base_path.display(),
            if found.is_empty() { "none" } else { found },
            r.id
        )));
    }
    let mut inherited: Vec<(u64, u64)> = own
        .metadata()
        .map(|m| m.inherited.iter().map(|r| (r[0], r[1])).collect())
        .unwrap_or_default();
    inherited.sort_unstable();
    let mut segments = Vec::with_capacity(own.segments.len());
    let mut sources = Vec::with_capacity(own.segments.len());
    let mut used = 0usize;
    for (s, src) in own.segments.iter().zip(&own.sources) {
        if s.filesz != 0 || inherited.binary_search(&(s.vaddr, s.end())).is_err() {
            segments.push(*s);
            sources.push(*src);
            continue;
        }
        used += 1;
        // The base's segments over [vaddr, end), clipped, in this one's
        // permissions; what the base does not hold reads as zeros.
        let mut at = s.vaddr;
        let first = base.segments.partition_point(|b| b.end() <= s.vaddr);
        for (b, bsrc) in base.segments[first..].iter().zip(&base.sources[first..]) {
            if b.vaddr >= s.end() {
                break;
            }
            let lo = b.vaddr.max(s.vaddr);
            let hi = b.end().min(s.end());
            if lo > at {
                segments.push(zeros(at, lo - at, s.flags));
                sources.push(0);
            }
            let rel = lo - b.vaddr;
            let filesz = b.filesz.saturating_sub(rel).min(hi - lo);
            segments.push(Segment {
                vaddr: lo,
                memsz: hi - lo,
                offset: if filesz > 0 { b.offset + rel } else { 0 },
                filesz,
                flags: s.flags,
            });
            sources.push(bsrc + 1);
            at = hi;
        }
        if at < s.end() {
            segments.push(zeros(at, s.end() - at, s.flags));
            sources.push(0);
        }
    }
    if used != inherited.len() {
        return Err(bad(
            "its note lists inherited ranges that are not segments without file bytes".into(),
        ));
    }
    own.segments = segments;
    own.sources = sources;
    own.bases = std::iter::once(base.map).chain(base.bases).collect();
    Ok(own)
}

fn zeros(vaddr: u64, memsz: u64, flags: u32) -> Segment {
    Segment {
        vaddr,
        memsz,
        offset: 0,
        filesz: 0,
        flags,
    }
}

/// Where the base `r` of the snapshot at `path` is: a bare file name is
/// beside it; an absolute path is itself. Anything else (`../x`, `a/b`) is
/// refused: a note must not send readers around the file system.
fn base_path(path: &Path, r: &BaseRef) -> Result<PathBuf, String> {
    let p = Path::new(&r.file);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    if r.file.is_empty() || r.file.contains('/') || r.file == "." || r.file == ".." {
        return Err(format!(
            "its base is named {:?}: neither a file name nor an absolute path",
            r.file
        ));
    }
    Ok(path.parent().unwrap_or(Path::new(".")).join(p))
}

/// The base of the snapshot at `path`, if it is incremental.
pub fn base_of(snap: &Snapshot) -> Option<PathBuf> {
    let r = snap.metadata()?.base.as_ref()?;
    base_path(snap.path(), r).ok()
}

/// Writes `snap` (with its chain resolved) to `out` as a standalone core:
/// every byte of memory in the file, no base. The content id is kept.
pub fn materialize(snap: &Snapshot, out: &Path) -> Result<PathBuf, Error> {
    rewrite(snap, out, u32::MAX, None)
}

/// Deletes the snapshot at `path`, first rewriting every snapshot beside
/// it whose base it is so that it inherits from `path`'s own base instead
/// (taking into itself the pages `path` held). Returns the rewritten
/// files. Snapshots elsewhere that name it by absolute path are not
/// found; they become unreadable.
pub fn drop_snapshot(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let doomed = Snapshot::open(path)?;
    let id = doomed.metadata().map(|m| m.id.clone()).unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut rewritten = Vec::new();
    let entries = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .map_err(|e| Error::io(dir, e))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "core") && p.is_file())
        .collect();
    candidates.sort();
    for c in candidates {
        if c.file_name() == path.file_name() {
            continue;
        }
        // Only our own cores name a base; a file that does not open is
        // not a dependent of anything we can fold.
        let Ok(snap) = Snapshot::open(&c) else {
            continue;
        };
        let Some(r) = snap.metadata().and_then(|m| m.base.as_ref()) else {
            continue;
        };
        let names_it = Some(&r.file) == name.as_ref() || Path::new(&r.file) == path;
        if r.id != id || !names_it {
            continue;
        }
        // Its own pages and the doomed one's stay in the file; what the
        // doomed one inherited is inherited from its base now.
        let new_base = doomed.metadata().and_then(|m| m.base.clone());
        rewrite(&snap, &c, 2, new_base)?;
        rewritten.push(c);
    }
    drop(doomed);
    std::fs::remove_file(path).map_err(|e| Error::write(path, e))?;
    Ok(rewritten)
}

/// Writes `snap` to `out`: the bytes of segments from chain links below
/// `keep` in the file, those from further links inherited from `base`
/// (which must be the link `keep`).
fn rewrite(
    snap: &Snapshot,
    out: &Path,
    keep: u32,
    base: Option<BaseRef>,
) -> Result<PathBuf, Error> {
    let mut meta: Metadata = snap.metadata().cloned().unwrap_or_default();
    let mut loads: Vec<(usize, bool)> = Vec::with_capacity(snap.segments.len());
    meta.inherited.clear();
    for (i, (s, &src)) in snap.segments.iter().zip(&snap.sources).enumerate() {
        let inherit = base.is_some() && s.filesz > 0 && src >= keep;
        if inherit {
            meta.inherited.push([s.vaddr, s.end()]);
        }
        loads.push((i, inherit));
    }
    meta.base = if meta.inherited.is_empty() {
        None
    } else {
        base
    };
    let mut written = 0u64;
    let layout = Layout::new(loads.len());
    let file = OutputFile::create(out, output::suffixed_temporary(out), output::Kind::Seekable)?;
    let mut phdrs = vec![ProgramHeader::default()];
    let mut offset = layout.data_offset;
    for &(i, inherit) in &loads {
        let s = &snap.segments[i];
        let bytes: &[u8] = if inherit { &[] } else { snap.segment_bytes(i) };
        write_at(&file, bytes, offset)?;
        phdrs.push(ProgramHeader {
            kind: elf::PT_LOAD,
            flags: s.flags,
            offset,
            vaddr: s.vaddr,
            filesz: bytes.len() as u64,
            memsz: s.memsz,
            align: elf::PAGE,
        });
        offset += bytes.len() as u64;
        written += bytes.len() as u64;
    }
    meta.capture.written_bytes = written;
    meta.capture.inherited_bytes = meta.inherited.iter().map(|r| r[1] - r[0]).sum();
    let mut notes = Vec::new();
    for (name, kind, desc) in &snap.raw_notes {
        if name == NOTE_NAME && *kind == NOTE_TYPE {
            note::push(&mut notes, NOTE_NAME, NOTE_TYPE, &meta.to_json());
        } else {
            note::push(&mut notes, name, *kind, desc);
        }
    }
    write_at(&file, &notes, offset)?;
    phdrs[0] = ProgramHeader::notes(offset, notes.len() as u64);
    write_at(&file, &layout.headers(&phdrs), 0)?;
    file.commit()
}

fn write_at(file: &OutputFile, bytes: &[u8], offset: u64) -> Result<(), Error> {
    std::os::unix::fs::FileExt::write_all_at(file.file(), bytes, offset)
        .map_err(|e| Error::write(file.writing(), e))
}
