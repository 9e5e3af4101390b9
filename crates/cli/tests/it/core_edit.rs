//! Editing core files in tests: reading program headers and notes, and
//! rewriting the LEAKTRAIL note's JSON. Shared with the fuzz harness
//! (`tests/fuzz/`), so tolerant of the corrupt files it makes: a field
//! that is not there ends the walk instead of panicking.

use serde_json::Value;

/// An ELF64 program header: (type, offset, vaddr, filesz).
pub type Phdr = (u32, u64, u64, u64);

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64_at(b, at).expect("a word inside the file")
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The program headers of `core`, as far as they are in the file.
pub fn phdrs(core: &[u8]) -> Vec<Phdr> {
    let (Some(phoff), Some(phnum)) = (u64_at(core, 32), u16_at(core, 56)) else {
        return Vec::new();
    };
    (0..phnum as usize)
        .map_while(|i| {
            let p = (phoff as usize).checked_add(i * 56)?;
            Some((
                u32_at(core, p)?,
                u64_at(core, p + 8)?,
                u64_at(core, p + 16)?,
                u64_at(core, p + 32)?,
            ))
        })
        .collect()
}

/// The file offset of `vaddr` in `core`, if a PT_LOAD holds it.
pub fn file_offset(core: &[u8], vaddr: u64) -> Option<usize> {
    phdrs(core)
        .iter()
        .find(|&&(k, _, v, n)| k == 1 && v <= vaddr && vaddr - v < n)
        .map(|&(_, off, v, _)| (off + (vaddr - v)) as usize)
}

/// The notes of the PT_NOTE at `off..off + size`: (header offset, name
/// with its NUL, desc offset, desc size).
pub fn notes(core: &[u8], off: u64, size: u64) -> Vec<(u64, Vec<u8>, u64, u64)> {
    let pad = |n: u64| (n + 3) & !3;
    let mut out = Vec::new();
    let mut at = off;
    while at.saturating_add(12) <= off.saturating_add(size) {
        let (Some(namesz), Some(descsz)) =
            (u32_at(core, at as usize), u32_at(core, at as usize + 4))
        else {
            break;
        };
        let name_at = at as usize + 12;
        let Some(name) = core.get(name_at..name_at + namesz as usize) else {
            break;
        };
        let desc = at + 12 + pad(namesz as u64);
        out.push((at, name.to_vec(), desc, descsz as u64));
        at = desc + pad(descsz as u64);
    }
    out
}

/// Passes the LEAKTRAIL note's JSON through `edit`: the notes are
/// rewritten at the end of the file and PT_NOTE pointed at them. Returns
/// whether there was such a note.
pub fn rewrite_note(core: &mut Vec<u8>, edit: impl FnOnce(&mut Value)) -> bool {
    let ph = phdrs(core);
    let Some((i, &(_, off, _, size))) = ph.iter().enumerate().find(|(_, p)| p.0 == 4) else {
        return false;
    };
    let pad = |n: usize| (n + 3) & !3;
    let mut out = Vec::new();
    let mut edit = Some(edit);
    for (head, name, desc, descsz) in notes(core, off, size) {
        let kind = u32_at(core, head as usize + 8).unwrap_or(0);
        let Some(d) = core.get(desc as usize..(desc + descsz) as usize) else {
            return false;
        };
        let mut d = d.to_vec();
        if name.starts_with(leaktrail_format::NOTE_NAME.as_bytes()) {
            if let (Ok(mut v), Some(edit)) = (serde_json::from_slice::<Value>(&d), edit.take()) {
                edit(&mut v);
                d = serde_json::to_vec(&v).expect("JSON");
            }
        }
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&name);
        out.resize(out.len() + pad(name.len()) - name.len(), 0);
        out.extend_from_slice(&d);
        out.resize(pad(out.len()), 0);
    }
    if edit.is_some() {
        return false;
    }
    core.resize(pad(core.len()), 0);
    let new_off = core.len() as u64;
    core.extend_from_slice(&out);
    let Some(p) = u64_at(core, 32).map(|phoff| phoff as usize + i * 56) else {
        return false;
    };
    put_u64(core, p + 8, new_off);
    put_u64(core, p + 32, out.len() as u64);
    true
}
