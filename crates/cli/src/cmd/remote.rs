//! A recording bound for an object store (`run`, `watch`, and `attach`
//! `--out s3://BUCKET/PREFIX`).
//!
//! The recording is made as usual, in a local spool
//! (`$LEAKTRAIL_CACHE/spool/CMD-PID/rec`), and goes up as it is made:
//!
//! * each snapshot from the capture's `SnapshotHook`, once complete
//!   ([`Remote::upload_snapshot`]; a multipart upload, visible only when
//!   whole);
//! * the watch series (`meta.json`, `samples.jsonl`, `smaps/`) from the
//!   sampler ([`Remote::on_sample`]): the first sample at once, on the
//!   sampler's thread, then on a thread of its own at most every
//!   [`SERIES_PERIOD`] (longer for a long series: see [`Series`]), each
//!   file a whole object replacing the previous one;
//! * whatever is left when the recording ends ([`Remote::finish`]).
//!
//! A recorder that takes `--out` builds a [`Remote`] with [`Remote::to`]
//! before it starts anything (a bad URL or store costs nothing), records
//! into [`Remote::dir`], and wires the two hooks and `finish` as `run` and
//! `watch` do.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use leaktrail_capture::supervise::{RecordOptions, SampleHook, SnapshotHook};
use leaktrail_store::{S3Url, Store, Synced};

/// The shortest time between two uploads of the watch series.
pub const SERIES_PERIOD: Duration = Duration::from_secs(5);

/// Bytes per second the series uploads may average: a long series (a day
/// of 1 s samples is some 25 MB) goes up less often rather than costing
/// the square of its length.
const SERIES_RATE: f64 = 64.0 * 1024.0;

/// A recording made in a local spool and sent to `url`.
pub struct Remote {
    /// Where the recording goes.
    pub url: S3Url,
    store: Arc<Store>,
    spool: PathBuf,
    sent: Arc<Mutex<Vec<PathBuf>>>,
    series: Arc<Series>,
}

/// The state of the watch series' uploads, shared by the sampler, the
/// uploading thread and [`Remote::finish`].
pub struct Series {
    synced: Mutex<Synced>,
    tick: Mutex<Option<SyncSender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    problem: Mutex<Option<String>>,
}

impl Remote {
    /// Checks the URL and the store's configuration; `what` names the
    /// spool (`run`, `watch`, `attach`).
    pub fn to(out: &Path, what: &str) -> anyhow::Result<Remote> {
        let url = S3Url::parse(&out.to_string_lossy())?;
        let store = Arc::new(Store::for_url(&url)?);
        let dir = leaktrail_store::cache_dir()
            .join("spool")
            .join(format!("{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Remote {
            url,
            store,
            spool: dir.join("rec"),
            sent: Arc::default(),
            series: Arc::new(Series {
                synced: Mutex::default(),
                tick: Mutex::new(None),
                thread: Mutex::new(None),
                problem: Mutex::new(None),
            }),
        })
    }

    /// The local directory to record into.
    pub fn dir(&self) -> &Path {
        &self.spool
    }

    /// Makes `record` record into the spool and stream here: each snapshot
    /// uploaded once complete, after the hook already set (an export), and
    /// the series as it is sampled, before the sample hook already set (a
    /// live line).
    pub fn stream(&self, record: &mut RecordOptions) {
        record.out = Some(self.spool.clone());
        let (upload, before) = (self.snapshot_uploader(), record.after_snapshot.take());
        record.after_snapshot = Some(SnapshotHook(Arc::new(move |snap: &Path| {
            if let Some(h) = &before {
                (h.0)(snap)?;
            }
            upload(snap)
        })));
        let (series, shown) = (self.on_sample(), record.on_sample.take());
        record.on_sample = Some(SampleHook(Arc::new(move |meta, samples| {
            series(samples.len());
            if let Some(h) = &shown {
                (h.0)(meta, samples);
            }
        })));
    }

    /// What to upload a finished snapshot with, from any thread (the
    /// capture's `SnapshotHook`): `SNAPSHOT_DIR/NAME` goes to
    /// `URL/snapshots/NAME`.
    pub fn snapshot_uploader(&self) -> impl Fn(&Path) -> Result<(), String> + Send + Sync {
        let (store, url, sent) = (self.store.clone(), self.url.clone(), self.sent.clone());
        move |snap: &Path| {
            let name = snap.file_name().unwrap_or_default().to_string_lossy();
            let key = url.join(&format!("snapshots/{name}")).key;
            store
                .upload(snap, &key, |_, _| {})
                .map_err(|e| format!("upload: {e}"))?;
            locked(&sent).push(snap.to_path_buf());
            Ok(())
        }
    }

    /// What the sampler calls after each sample (`count` so far): the
    /// first is sent before it returns, so the recording is in the store
    /// as soon as its first line is printed; later ones wake the uploading
    /// thread and never wait for the network.
    pub fn on_sample(&self) -> impl Fn(usize) + Send + Sync {
        let (store, url, dir, series) = (
            self.store.clone(),
            self.url.clone(),
            self.spool.clone(),
            self.series.clone(),
        );
        move |count: usize| {
            if count == 1 {
                series.sync(&store, &dir, &url);
                if let Some(p) = &*locked(&series.problem) {
                    // Said now, not only at the end: the store may be down.
                    eprintln!("leaktrail: sending the series to {url}: {p} (tried again as the recording goes on)");
                }
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                *locked(&series.tick) = Some(tx);
                let (store, url, dir, s) =
                    (store.clone(), url.clone(), dir.clone(), series.clone());
                let thread = std::thread::spawn(move || s.upload_loop(rx, &store, &dir, &url));
                *locked(&series.thread) = Some(thread);
                return;
            }
            if let Some(tx) = &*locked(&series.tick) {
                // Full: a sync is due already; gone: the recording ended.
                let _ = tx.try_send(());
            }
        }
    }

    /// Stops the series' uploads and sends what is not in the store yet
    /// (the series as it ended, any snapshot whose upload failed, files
    /// written at the end). The spool stays until [`Remote::remove_spool`]:
    /// on an error it is the only copy.
    pub fn finish(&self, dir: &Path) -> anyhow::Result<()> {
        locked(&self.series.tick).take();
        if let Some(t) = locked(&self.series.thread).take() {
            let _ = t.join();
        }
        if let Some(p) = locked(&self.series.problem).take() {
            eprintln!("leaktrail: while recording, the series could not be sent: {p}");
        }
        let sent = locked(&self.sent).clone();
        let mut synced = locked(&self.series.synced);
        self.store
            .sync_dir(dir, &self.url, &mut synced, |p| sent.iter().any(|s| s == p))
            .with_context(|| {
                format!(
                    "uploading the recording to {} (kept in {})",
                    self.url,
                    dir.display()
                )
            })?;
        Ok(())
    }

    /// Removes the local spool (once [`Remote::finish`] succeeded).
    pub fn remove_spool(&self) {
        let _ = std::fs::remove_dir_all(self.spool.parent().unwrap_or(&self.spool));
    }
}

impl Series {
    /// Sends the changed series files; a failure is kept for `finish` to
    /// say (the recording goes on: the next sync may succeed).
    fn sync(&self, store: &Store, dir: &Path, url: &S3Url) -> u64 {
        let mut synced = locked(&self.synced);
        let in_snapshots = |p: &Path| {
            p.strip_prefix(dir)
                .is_ok_and(|r| r.starts_with("snapshots"))
        };
        match store.sync_dir(dir, url, &mut synced, in_snapshots) {
            Ok(n) => n,
            Err(e) => {
                *locked(&self.problem) = Some(e.to_string());
                0
            }
        }
    }

    /// Until the sampler hangs up: on each tick, a sync if the last one is
    /// [`SERIES_PERIOD`] old, or as long ago as its bytes take at
    /// [`SERIES_RATE`].
    fn upload_loop(&self, ticks: Receiver<()>, store: &Store, dir: &Path, url: &S3Url) {
        let mut last = Instant::now();
        let mut wait = SERIES_PERIOD;
        while ticks.recv().is_ok() {
            if last.elapsed() < wait {
                continue;
            }
            let bytes = self.sync(store, dir, url);
            last = Instant::now();
            wait = SERIES_PERIOD.max(Duration::from_secs_f64(bytes as f64 / SERIES_RATE));
        }
    }
}

/// The value behind `m`, also after a panic elsewhere (what it guards
/// stays consistent: whole assignments only).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
