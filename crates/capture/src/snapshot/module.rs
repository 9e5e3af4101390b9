//! Which ELF modules a process has loaded, and their build ids.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use object::elf::{FileHeader64, ProgramHeader64, NT_GNU_BUILD_ID, PT_NOTE};
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader};
use object::Endianness;

use super::maps::Mapping;
use super::metadata::Module;

/// Groups the file-backed mappings of `maps` by path into modules and reads
/// each one's build id from the file. Files that are not ELF (fonts, locale
/// archives, data files) are left out.
pub(crate) fn modules(pid: i32, maps: &[Mapping]) -> Vec<Module> {
    let mut by_path: BTreeMap<&str, Vec<&Mapping>> = BTreeMap::new();
    for m in maps.iter().filter(|m| m.is_file()) {
        by_path.entry(m.path.as_str()).or_default().push(m);
    }
    let mut out = Vec::new();
    for (path, ms) in by_path {
        let Some(first) = ms.iter().find(|m| m.offset == 0) else {
            continue;
        };
        // map_files works for deleted files and across mount namespaces;
        // it needs privileges, so fall back to the path itself.
        let file = File::open(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            first.start, first.end
        ))
        .or_else(|_| File::open(format!("/proc/{pid}/root{path}")))
        .or_else(|_| File::open(path));
        let Ok(file) = file else {
            continue;
        };
        let Some(build_id) = elf_build_id(&file) else {
            continue;
        };
        out.push(Module {
            path: path.to_string(),
            base: first.start,
            start: ms.iter().map(|m| m.start).min().unwrap_or(first.start),
            end: ms.iter().map(|m| m.end).max().unwrap_or(first.end),
            build_id: build_id.map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
        });
    }
    out.sort_by_key(|m| m.base);
    out
}

/// `None` if the file is not a 64-bit ELF file; `Some(None)` if it is but
/// has no build id. Reads only the headers and the notes.
fn elf_build_id(file: &File) -> Option<Option<Vec<u8>>> {
    let mut head = [0u8; 64];
    file.read_exact_at(&mut head, 0).ok()?;
    let hdr = FileHeader64::<Endianness>::parse(&head[..]).ok()?;
    let endian = hdr.endian().ok()?;
    let entry = std::mem::size_of::<ProgramHeader64<Endianness>>();
    if hdr.e_phentsize.get(endian) as usize != entry {
        return Some(None);
    }
    let count = hdr.e_phnum.get(endian) as usize;
    let mut table = vec![0u8; (count * entry).min(1 << 20)];
    file.read_exact_at(&mut table, hdr.e_phoff.get(endian))
        .ok()?;
    let phdrs =
        object::pod::slice_from_bytes::<ProgramHeader64<Endianness>>(&table, table.len() / entry)
            .map(|(s, _)| s)
            .ok()?;
    Some(notes_build_id(file, endian, phdrs))
}

fn notes_build_id(
    file: &File,
    endian: Endianness,
    phdrs: &[ProgramHeader64<Endianness>],
) -> Option<Vec<u8>> {
    for ph in phdrs.iter().filter(|p| p.p_type(endian) == PT_NOTE) {
        let len = ph.p_filesz(endian).min(1 << 20) as usize;
        let mut b = vec![0u8; len];
        if file.read_exact_at(&mut b, ph.p_offset(endian)).is_err() {
            continue;
        }
        let Ok(mut notes) =
            NoteIterator::<FileHeader64<Endianness>>::new(endian, ph.p_align(endian), &b)
        else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"GNU" && note.n_type(endian) == NT_GNU_BUILD_ID {
                return Some(note.desc().to_vec());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_executable_has_a_readable_header() {
        let exe = File::open("/proc/self/exe").unwrap();
        // Rust test binaries are ELF; whether they carry a build id depends
        // on the linker, so only the outer Option is checked.
        assert!(elf_build_id(&exe).is_some());
        let not_elf = File::open("/proc/self/cmdline").unwrap();
        assert!(elf_build_id(&not_elf).is_none());
    }
}
