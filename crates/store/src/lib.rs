//! Recordings and snapshots in an S3-compatible object store.
//!
//! A fleet's snapshots do not fit one disk, so leaktrail can write them to
//! `s3://BUCKET/PREFIX` and read them back from there. Endpoint and
//! credentials come from the usual AWS environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ALLOW_HTTP`), read by the `object_store` crate.
//!
//! * [`S3Url`] is a parsed `s3://` URL; [`is_url`] tells one from a path.
//! * [`Store::upload`] sends a local file as a multipart upload, part by
//!   part, and completes it last: S3 makes an object visible only when its
//!   upload completes, so a writer killed halfway leaves no partial object
//!   (only parts the server expires), and a reader never sees half a core.
//! * [`local`] turns an input that may be a URL into a local path: the
//!   objects under the URL are mirrored into a cache directory and fetched
//!   again only when their ETag changed. We download whole objects rather
//!   than read ranges because every reader maps a core (`memmap2`) and
//!   jumps around in it: one download, then page-cache speed, and the next
//!   command over the same recording costs a listing.
//!
//! `object_store` is asynchronous; we run it on a Tokio runtime with one
//! worker thread owned by each [`Store`], so callers stay synchronous.
//!
//! ```no_run
//! use leaktrail_store::{S3Url, Store};
//! let url = S3Url::parse("s3://fleet/api/web-1/0001.core")?;
//! let store = Store::for_url(&url)?;
//! store.upload("0001.core".as_ref(), &url.key, |done, total| eprintln!("{done}/{total}"))?;
//! # Ok::<(), leaktrail_store::Error>(())
//! ```
#![deny(missing_docs)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};

/// Bytes per part of a multipart upload: S3's smallest part but the last.
pub const PART_BYTES: usize = 5 << 20;

/// Everything that can go wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not an `s3://BUCKET/KEY` URL.
    #[error("{url}: {why} (expected s3://BUCKET/PREFIX)")]
    Url {
        /// What was given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The store refused or failed a request.
    #[error("{url}: {source}")]
    Store {
        /// The object or prefix.
        url: String,
        /// What `object_store` said.
        source: object_store::Error,
    },
    /// Nothing under a URL.
    #[error("{0}: no such object or prefix in the store")]
    Missing(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error is the user's input (a bad URL, a missing
    /// object, a local file that is not there) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Url { .. } | Error::Missing(_) => true,
            Error::Store { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

/// A parsed `s3://BUCKET/KEY` URL (KEY may be empty: the whole bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key or prefix, without leading or trailing `/`.
    pub key: String,
}

impl S3Url {
    /// Parses `s3://BUCKET[/KEY]`.
    pub fn parse(s: &str) -> Result<S3Url, Error> {
        let bad = |why: &str| Error::Url {
            url: s.to_string(),
            why: why.to_string(),
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.trim_matches('/').to_string(),
        })
    }

    /// The URL of `rel` under this one.
    pub fn join(&self, rel: &str) -> S3Url {
        let key = match (self.key.as_str(), rel.trim_matches('/')) {
            ("", r) => r.to_string(),
            (k, "") => k.to_string(),
            (k, r) => format!("{k}/{r}"),
        };
        S3Url {
            bucket: self.bucket.clone(),
            key,
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Whether `p` is an `s3://` URL rather than a local path.
pub fn is_url(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// One bucket of an S3-compatible store, and the runtime that drives it.
pub struct Store {
    s3: AmazonS3,
    bucket: String,
    rt: tokio::runtime::Runtime,
}

impl Store {
    /// The bucket of `url`, configured from the AWS environment variables.
    pub fn for_url(url: &S3Url) -> Result<Store, Error> {
        let fail = |source| Error::Store {
            url: url.to_string(),
            source,
        };
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .build()
            .map_err(fail)?;
        // One worker of its own: the connections' tasks keep running
        // between our calls, so one the server closed while we computed
        // is seen closed rather than written to.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        Ok(Store {
            s3,
            bucket: url.bucket.clone(),
            rt,
        })
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Uploads the file `local` to `key`, [`PART_BYTES`] a part, calling
    /// `progress(bytes sent, total)` after each part. The object appears
    /// only when the last part is in; on an error the upload is aborted.
    pub fn upload(
        &self,
        local: &Path,
        key: &str,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: local.to_path_buf(),
            source,
        };
        let fail = |source| Error::Store {
            url: self.url(key),
            source,
        };
        let mut file = std::fs::File::open(local).map_err(io)?;
        let total = file.metadata().map_err(io)?.len();
        self.rt.block_on(async {
            let mut upload = self.s3.put_multipart(&Key::from(key)).await.map_err(fail)?;
            let mut sent = 0u64;
            loop {
                let mut part = Vec::with_capacity(PART_BYTES);
                (&mut file)
                    .take(PART_BYTES as u64)
                    .read_to_end(&mut part)
                    .map_err(io)?;
                if part.is_empty() && sent > 0 {
                    break;
                }
                let n = part.len() as u64;
                if let Err(e) = upload.put_part(PutPayload::from(part)).await {
                    let _ = upload.abort().await;
                    return Err(fail(e));
                }
                sent += n;
                progress(sent, total);
                if n < PART_BYTES as u64 {
                    break;
                }
            }
            upload.complete().await.map_err(fail)?;
            Ok(())
        })
    }

    /// Uploads every regular file under `dir` (names starting with `.`
    /// left out: temporaries) to `prefix/RELATIVE_PATH`, except those
    /// `skip` says are there already. Returns how many it sent.
    pub fn upload_dir(
        &self,
        dir: &Path,
        prefix: &S3Url,
        skip: impl Fn(&Path) -> bool,
    ) -> Result<usize, Error> {
        let mut sent = 0;
        for file in files_under(dir)? {
            if skip(&file) {
                continue;
            }
            let rel = file.strip_prefix(dir).unwrap_or(&file);
            let key = prefix.join(&rel.to_string_lossy()).key;
            self.upload(&file, &key, |_, _| {})?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Writes `bytes` as the object `key` in one request: it replaces the
    /// previous object whole, so a reader gets the old one or the new one.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        self.rt
            .block_on(self.s3.put(&Key::from(key), PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|source| Error::Store {
                url: self.url(key),
                source,
            })
    }

    /// Sends the file `local` to `key`: one `put` up to [`PART_BYTES`], a
    /// multipart [`upload`](Self::upload) beyond. Either way the object
    /// appears whole or not at all. Returns its size.
    pub fn send(&self, local: &Path, key: &str) -> Result<u64, Error> {
        let io = |source| Error::Io {
            path: local.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(local).map_err(io)?.len();
        if size > PART_BYTES as u64 {
            self.upload(local, key, |_, _| {})?;
        } else {
            self.put(key, std::fs::read(local).map_err(io)?)?;
        }
        Ok(size)
    }

    /// Sends the files under `dir` that changed since `synced` last saw
    /// them to `prefix/RELATIVE_PATH`, leaving out those `skip` names (and
    /// hidden names: temporaries). Files in folders go before the files
    /// beside them, so an index that names a detail file (a recording's
    /// `samples.jsonl` naming `smaps/N.json`) never arrives before it. A
    /// `.jsonl` file is sent up to its last newline: a line being appended
    /// is left for the next time. Small files are one `put` (the object
    /// is replaced whole), larger ones a multipart [`upload`](Self::upload).
    /// Returns the bytes sent.
    pub fn sync_dir(
        &self,
        dir: &Path,
        prefix: &S3Url,
        synced: &mut Synced,
        skip: impl Fn(&Path) -> bool,
    ) -> Result<u64, Error> {
        let mut files = files_under(dir)?;
        // Deeper first; by name within a depth.
        files.sort_by_key(|f| std::cmp::Reverse(f.components().count()));
        let mut sent = 0u64;
        for file in files {
            if skip(&file) {
                continue;
            }
            let io = |source| Error::Io {
                path: file.clone(),
                source,
            };
            let meta = std::fs::metadata(&file).map_err(io)?;
            let stamp = (meta.len(), meta.modified().ok());
            if synced.0.get(&file) == Some(&stamp) {
                continue;
            }
            let rel = file.strip_prefix(dir).unwrap_or(&file);
            let key = prefix.join(&rel.to_string_lossy()).key;
            if file.extension().is_some_and(|e| e == "jsonl") && meta.len() <= PART_BYTES as u64 {
                let mut bytes = std::fs::read(&file).map_err(io)?;
                let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                bytes.truncate(whole);
                sent += bytes.len() as u64;
                self.put(&key, bytes)?;
            } else {
                sent += self.send(&file, &key)?;
            }
            synced.0.insert(file, stamp);
        }
        Ok(sent)
    }

    /// Every object under `url` taken as a prefix (or `url` itself when
    /// it names one object), with its ETag.
    pub fn list(&self, url: &S3Url) -> Result<Vec<Object>, Error> {
        Ok(self
            .objects(url)?
            .into_iter()
            .map(|m| Object {
                url: S3Url {
                    bucket: self.bucket.clone(),
                    key: m.location.to_string(),
                },
                size: m.size,
                e_tag: m.e_tag,
            })
            .collect())
    }

    fn objects(&self, url: &S3Url) -> Result<Vec<object_store::ObjectMeta>, Error> {
        let fail = |source| Error::Store {
            url: url.to_string(),
            source,
        };
        self.rt.block_on(async {
            let key = Key::from(url.key.as_str());
            if !url.key.is_empty() {
                match self.s3.head(&key).await {
                    Ok(meta) => return Ok(vec![meta]),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            let prefix = (!url.key.is_empty()).then_some(&key);
            let mut list = self.s3.list(prefix);
            let mut out = Vec::new();
            while let Some(meta) = list.next().await {
                out.push(meta.map_err(fail)?);
            }
            Ok(out)
        })
    }

    /// Mirrors `url` (one object, or every object under it as a prefix)
    /// into `cache/BUCKET/KEY`, fetching only objects whose ETag changed
    /// since the last time; returns the local path of `url`.
    pub fn mirror(&self, url: &S3Url, cache: &Path) -> Result<PathBuf, Error> {
        self.mirror_some(url, cache, |_| true)
    }

    /// [`mirror`](Self::mirror) of the objects whose key below `url`
    /// `wanted` accepts (all of them when `url` names one object).
    pub fn mirror_some(
        &self,
        url: &S3Url,
        cache: &Path,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<PathBuf, Error> {
        let root = cache.join(&self.bucket);
        let mut objects = self.objects(url)?;
        let below = |k: &str| -> String {
            k.strip_prefix(url.key.as_str())
                .unwrap_or(k)
                .trim_start_matches('/')
                .to_string()
        };
        if !(objects.len() == 1 && objects[0].location.as_ref() == url.key) {
            objects.retain(|m| wanted(&below(m.location.as_ref())));
        }
        if objects.is_empty() {
            return Err(Error::Missing(url.to_string()));
        }
        for meta in &objects {
            let local = root.join(meta.location.as_ref());
            let tag_file = cache
                .join(".etags")
                .join(&self.bucket)
                .join(meta.location.as_ref());
            let tag = meta.e_tag.clone().unwrap_or_default();
            let have = std::fs::read_to_string(&tag_file).ok();
            if local.is_file() && !tag.is_empty() && have.as_deref() == Some(tag.as_str()) {
                continue;
            }
            self.download(&meta.location, &local)?;
            write_file(&tag_file, tag.as_bytes())?;
        }
        Ok(root.join(&url.key))
    }

    /// Downloads one object to `local`, under a temporary name first.
    fn download(&self, key: &Key, local: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: local.to_path_buf(),
            source,
        };
        let parent = local.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io)?;
        let tmp = parent.join(format!(
            ".{}.part",
            local.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut out = std::fs::File::create(&tmp).map_err(io)?;
        self.rt.block_on(async {
            let fail = |source| Error::Store {
                url: self.url(key.as_ref()),
                source,
            };
            let mut stream = self.s3.get(key).await.map_err(fail)?.into_stream();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk.map_err(fail)?).map_err(io)?;
            }
            Ok::<(), Error>(())
        })?;
        std::fs::rename(&tmp, local).map_err(io)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    std::fs::write(path, bytes).map_err(io)
}

/// Every regular file under `dir`, hidden names left out, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| Error::Io {
            path: d.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What [`Store::sync_dir`] has sent: each file's length and change time.
#[derive(Debug, Default)]
pub struct Synced(std::collections::HashMap<PathBuf, (u64, Option<std::time::SystemTime>)>);

/// An object listed by [`Store::list`].
#[derive(Clone, Debug)]
pub struct Object {
    /// Its URL.
    pub url: S3Url,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, if the store gave one.
    pub e_tag: Option<String>,
}

/// Where mirrored objects are kept: `$LEAKTRAIL_CACHE`, else
/// `$XDG_CACHE_HOME/leaktrail/s3`, else `~/.cache/leaktrail/s3`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LEAKTRAIL_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("leaktrail/s3")
}

/// `input` itself when it is a local path; for an `s3://` URL, its
/// local mirror (see [`Store::mirror`]).
pub fn local(input: &Path) -> Result<PathBuf, Error> {
    local_some(input, |_| true)
}

/// [`local`], mirroring only the objects whose key below the URL
/// `wanted` accepts (see [`Store::mirror_some`]).
pub fn local_some(input: &Path, wanted: impl Fn(&str) -> bool) -> Result<PathBuf, Error> {
    if !is_url(input) {
        return Ok(input.to_path_buf());
    }
    let url = S3Url::parse(&input.to_string_lossy())?;
    Store::for_url(&url)?.mirror_some(&url, &cache_dir(), wanted)
}

/// Whether `key`, relative to a recording, is part of its watch series
/// (`meta.json`, `samples.jsonl`, `smaps/`): what `trend` and `maps`
/// read, without the snapshots.
pub fn is_series(key: &str) -> bool {
    key == "meta.json" || key == "samples.jsonl" || key.starts_with("smaps/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let u = S3Url::parse("s3://fleet/api/web-1/").expect("url");
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("fleet", "api/web-1"));
        assert_eq!(
            u.join("snapshots/0001.core").to_string(),
            "s3://fleet/api/web-1/snapshots/0001.core"
        );
        assert_eq!(S3Url::parse("s3://b").expect("bucket").key, "");
        assert!(S3Url::parse("s3:///k").is_err());
        assert!(S3Url::parse("/tmp/x").is_err());
        assert!(is_url(Path::new("s3://b/k")) && !is_url(Path::new("rec")));
    }
}
