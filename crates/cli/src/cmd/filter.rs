//! The buffer filters of `bufs`, shared by every command that looks at a
//! subset of the live buffers (`flamegraph` too).

use std::path::Path;

use leaktrail_analysis::bufs::{self, Filter};
use leaktrail_analysis::profile::Profile;
use leaktrail_recording::duration;

use crate::bad_input;

/// The buffer filters `bufs` has, for commands that draw a subset.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only buffers of the size class whose largest size is N (see `caches`).
    #[arg(long, value_name = "N")]
    pub class: Option<u64>,
    /// Only buffers of LO..HI requested bytes (inclusive; either end may be left out).
    #[arg(long, value_name = "LO..HI")]
    pub size: Option<String>,
    /// Only buffers allocated at least this long before the newest one (e.g. 30s, 10m).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Only buffers allocated at most this long before the newest one.
    #[arg(long, value_name = "AGE")]
    pub newer_than: Option<String>,
    /// Only buffers allocated by this thread id.
    #[arg(long, value_name = "TID")]
    pub thread: Option<u32>,
    /// Only buffers whose stack has a function whose name contains FN.
    #[arg(long, value_name = "FN")]
    pub stack_contains: Option<String>,
}

impl FilterArgs {
    /// The filter, or a bad-input error naming the flag.
    pub fn filter(&self) -> anyhow::Result<Filter> {
        let mut f = Filter::default();
        f.class = self.class;
        f.size = self.size.as_deref().map(size_range).transpose()?;
        f.older_than_ns = age("--older-than", &self.older_than)?;
        f.newer_than_ns = age("--newer-than", &self.newer_than)?;
        f.thread = self.thread;
        f.stack_contains = self.stack_contains.clone();
        Ok(f)
    }

    /// What the filter keeps, in words (empty for everything).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.class {
            parts.push(format!("class {c}"));
        }
        if let Some(s) = &self.size {
            parts.push(format!("size {s}"));
        }
        if let Some(a) = &self.older_than {
            parts.push(format!("older than {a}"));
        }
        if let Some(a) = &self.newer_than {
            parts.push(format!("newer than {a}"));
        }
        if let Some(t) = self.thread {
            parts.push(format!("thread {t}"));
        }
        if let Some(f) = &self.stack_contains {
            parts.push(format!("stacks with {f}"));
        }
        parts.join(", ")
    }

    /// Opens `snap` and profiles the buffers the filter keeps.
    pub fn profile(&self, snap: &Path) -> anyhow::Result<Profile> {
        let filter = self.filter()?;
        Ok(Profile::open_with(
            &super::local(snap)?,
            |audit, symbolizer| {
                let chosen = bufs::select(audit, &filter, symbolizer, false, false);
                chosen.buffers.iter().map(bufs::Buf::block).collect()
            },
        )?)
    }
}

fn size_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let Some((lo, hi)) = text.split_once("..") else {
        bad_input!("--size {text:?}: expected LO..HI, e.g. 2049..4096 or 4097..");
    };
    let num = |s: &str, default: u64| -> anyhow::Result<u64> {
        if s.trim().is_empty() {
            return Ok(default);
        }
        match s.trim().parse() {
            Ok(n) => Ok(n),
            Err(_) => bad_input!("--size {text:?}: {s:?} is not a number of bytes"),
        }
    };
    Ok((num(lo, 0)?, num(hi.trim_start_matches('='), u64::MAX)?))
}

fn age(flag: &str, text: &Option<String>) -> anyhow::Result<Option<u64>> {
    match text {
        None => Ok(None),
        Some(t) => match duration::parse(t) {
            Ok(d) => Ok(Some(d.as_nanos() as u64)),
            Err(e) => bad_input!("{flag} {t:?}: {e}"),
        },
    }
}
