//! The corpus: every input that ever failed, as a seed name and the ops
//! that make it, one JSON file each under `fixtures/corrupt/`.
//!
//! ```json
//! {"what": "over the allocation cap: ...", "seed": "full",
//!  "file": "snapshots/0001.core", "recording": false,
//!  "ops": [{"op": "put", "at": {"anchor": "audit", "off": 6168},
//!           "width": 8, "value": 1099511627776}]}
//! ```
//!
//! `what` is the failure the input first showed, kept for the reader.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::mutate::Op;
use crate::target::Finding;

/// One input: a seed file and what was done to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seed: String,
    pub file: String,
    /// Read as the seed's recording (else the file alone, as a core).
    #[serde(default)]
    pub recording: bool,
    pub ops: Vec<Op>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    what: String,
    #[serde(flatten)]
    entry: Entry,
}

/// Every entry under `dir`, by file name, in name order.
pub fn load(dir: &Path) -> Vec<(String, Entry)> {
    let mut out: Vec<(String, Entry)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).expect("read a corpus entry");
            let saved: Saved = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("corpus entry {name}: {err}"));
            (name, saved.entry)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes `e` under `dir` as the next numbered entry, named after the
/// finding.
pub fn save(dir: &Path, e: &Entry, f: &Finding) {
    std::fs::create_dir_all(dir).expect("create the corpus directory");
    let n = load(dir).len() + 1;
    let slug: String = f
        .kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .join("-");
    let path = dir.join(format!("{n:03}-{}-{slug}.json", e.seed));
    let saved = Saved {
        what: f.line.clone(),
        entry: e.clone(),
    };
    let mut text = serde_json::to_string_pretty(&saved).expect("JSON");
    text.push('\n');
    std::fs::write(&path, text).expect("write a corpus entry");
    eprintln!("fuzz: saved {}", path.display());
}

/// The smallest entry that still fails as `f` did (by `still_fails`):
/// drop each op in turn, then halve each range op's length and move each
/// truncation toward the end, until nothing more can go.
pub fn minimise(
    mut e: Entry,
    _f: &Finding,
    mut still_fails: impl FnMut(&Entry) -> Option<Finding>,
) -> Entry {
    let mut changed = true;
    while changed {
        changed = false;
        let mut i = 0;
        while i < e.ops.len() && e.ops.len() > 1 {
            let mut t = e.clone();
            t.ops.remove(i);
            if still_fails(&t).is_some() {
                e = t;
                changed = true;
            } else {
                i += 1;
            }
        }
        for i in 0..e.ops.len() {
            loop {
                let mut t = e.clone();
                let shrunk = match &mut t.ops[i] {
                    Op::Delete { len, .. } | Op::Duplicate { len, .. } | Op::Splice { len, .. }
                        if *len > 1 =>
                    {
                        *len /= 2;
                        true
                    }
                    _ => false,
                };
                if !shrunk || still_fails(&t).is_none() {
                    break;
                }
                e = t;
                changed = true;
            }
        }
    }
    e
}
