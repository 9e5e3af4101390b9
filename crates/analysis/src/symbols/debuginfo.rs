//! Finding a file's separate debug info, where gdb, eu-stack and
//! debuginfod clients look for it, in this order:
//!
//! 1. by build id, `/usr/lib/debug/.build-id/xx/rest.debug` (what
//!    Debian's `-dbg` and Fedora's `-debuginfo` packages install);
//! 2. by the file's `.gnu_debuglink` name, next to the file, in its
//!    `.debug/` directory, and under `/usr/lib/debug/` followed by the
//!    file's directory;
//! 3. in the debuginfod client's cache, `$DEBUGINFOD_CACHE_PATH/ID/debuginfo`
//!    (else `$XDG_CACHE_HOME/debuginfod_client/…`, else
//!    `~/.cache/debuginfod_client/…`). We only read what a client already
//!    fetched: an analysis that downloads would be slow and would leak the
//!    build ids of what we analyse.
//!
//! A candidate is taken only when it is the same build: its build id is the
//! file's, or, when either lacks one, the CRC-32 of the debug file is the
//! one the debuglink records (as gdb checks). Sections of debug files are
//! often compressed (`SHF_COMPRESSED`, zlib or zstd); `object`'s
//! `uncompressed_data` inflates them, with its `compression` feature.

use std::path::{Path, PathBuf};

use object::Object;

/// The mapped separate debug file of the ELF file `obj` at `path` (whose
/// build id, hex, is `build_id`), if one is installed.
pub(crate) fn find(
    path: &str,
    obj: &object::File<'_>,
    build_id: Option<&str>,
) -> Option<memmap2::Mmap> {
    let link = obj.gnu_debuglink().ok().flatten();
    let link = link.and_then(|(name, crc)| Some((std::str::from_utf8(name).ok()?, crc)));
    for candidate in candidates(
        Path::new(path),
        build_id,
        link.map(|l| l.0),
        debuginfod_cache().as_deref(),
    ) {
        let Some(map) = candidate.to_str().and_then(super::symbolize::map_file) else {
            continue;
        };
        let Ok(dobj) = object::File::parse(&*map) else {
            continue;
        };
        let theirs = dobj.build_id().ok().flatten().map(hex);
        let same = match (build_id, theirs.as_deref(), link) {
            (Some(ours), Some(theirs), _) => ours == theirs,
            (_, _, Some((_, crc))) => crc32(&map) == crc,
            _ => false,
        };
        if same && candidate.as_path() != Path::new(path) {
            return Some(map);
        }
    }
    None
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where to look, in order (see the module's documentation).
fn candidates(
    path: &Path,
    build_id: Option<&str>,
    link: Option<&str>,
    debuginfod_cache: Option<&Path>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let id = build_id.filter(|i| i.len() > 2 && i.is_ascii());
    if let Some(id) = id {
        out.push(PathBuf::from(format!(
            "/usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        )));
    }
    if let Some(link) = link.filter(|l| !l.is_empty() && !l.contains('/')) {
        let dir = path.parent().unwrap_or(Path::new("/"));
        out.push(dir.join(link));
        out.push(dir.join(".debug").join(link));
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        out.push(Path::new("/usr/lib/debug").join(rel).join(link));
    }
    if let (Some(id), Some(cache)) = (id, debuginfod_cache) {
        out.push(cache.join(id).join("debuginfo"));
    }
    out
}

/// The debuginfod client's cache directory, as elfutils chooses it.
fn debuginfod_cache() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("DEBUGINFOD_CACHE_PATH") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(p).join("debuginfod_client"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache/debuginfod_client"))
}

/// The CRC-32 (IEEE, reflected) that `.gnu_debuglink` records. Bitwise:
/// it runs once per debug file found by name without a build id, rare
/// enough not to want a table or a dependency.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn candidates_follow_gdbs_order() {
        let c = candidates(
            Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1"),
            Some("abcdef"),
            Some("libz.so.1.debug"),
            Some(Path::new("/cache")),
        );
        let c: Vec<&str> = c.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            c,
            [
                "/usr/lib/debug/.build-id/ab/cdef.debug",
                "/usr/lib/x86_64-linux-gnu/libz.so.1.debug",
                "/usr/lib/x86_64-linux-gnu/.debug/libz.so.1.debug",
                "/usr/lib/debug/usr/lib/x86_64-linux-gnu/libz.so.1.debug",
                "/cache/abcdef/debuginfo",
            ]
        );
        // A link with a directory in it is not a name we follow.
        assert_eq!(
            candidates(Path::new("/x/y"), None, Some("../../etc/z"), None),
            Vec::<PathBuf>::new()
        );
    }
}
