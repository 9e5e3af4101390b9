//! The map job: one `leaktrail` subcommand over many snapshots, in
//! parallel, each as a child process of this binary.
//!
//! A child per input keeps the inputs apart: a corrupt core that makes one
//! analysis fail (or, in the worst case, crash) costs that input only, and
//! each child maps its own core and frees all of it on exit. Workers pull
//! the next input from a shared counter, so a slow core does not hold up a
//! queue behind it. Outputs are written to a temporary name beside the
//! final one and renamed on success, so a failed input leaves no
//! half-written file. An output bound for an object store is made the
//! same way in a local spool, then uploaded by the worker that made it
//! (the object appears only when complete).
//!
//! This is process orchestration of the binary itself rather than analysis
//! or capture, so it lives in the binary crate (see docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How one input is run.
#[derive(Clone, Debug)]
pub struct Task {
    /// The input snapshot.
    pub input: PathBuf,
    /// Where its output goes.
    pub output: PathBuf,
    /// Where the output is then sent, if to an object store (the local
    /// file is removed).
    pub upload: Option<leaktrail_store::S3Url>,
}

/// What became of one input.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The task.
    pub task: Task,
    /// `None` on success, else why it failed (the child's last stderr line
    /// and its exit status).
    pub error: Option<String>,
}

/// The whole job's settings.
pub struct Job<'a> {
    /// The binary to run (this one).
    pub exe: PathBuf,
    /// The subcommand and its arguments, before the input.
    pub command: &'a [String],
    /// Whether the subcommand writes its output through `-o FILE` (else
    /// its standard output is the output).
    pub output_flag: bool,
    /// Parallel children.
    pub workers: usize,
    /// Called after each input finishes, with (done, failed, total).
    pub progress: &'a (dyn Fn(usize, usize, usize) + Sync),
    /// Sends an output to its [`Task::upload`] URL.
    pub send: &'a (dyn Fn(&Path, &leaktrail_store::S3Url) -> Result<(), String> + Sync),
}

/// Runs `tasks` and returns their outcomes in input order.
pub fn run(job: &Job<'_>, tasks: &[Task]) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; tasks.len()]);
    std::thread::scope(|s| {
        for _ in 0..job.workers.clamp(1, tasks.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(task) = tasks.get(i) else { break };
                let outcome = run_one(job, task);
                if outcome.error.is_some() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                (job.progress)(d, failed.load(Ordering::Relaxed), tasks.len());
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// `DIR/.NAME.tmp-PID`: beside the output, so the rename stays on one
/// file system.
fn temporary(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    output.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn run_one(job: &Job<'_>, task: &Task) -> Outcome {
    let tmp = temporary(&task.output);
    let result = (|| -> Result<(), String> {
        let mut cmd = Command::new(&job.exe);
        cmd.args(job.command).arg(&task.input).stdin(Stdio::null());
        if job.output_flag {
            cmd.arg("-o").arg(&tmp).stdout(Stdio::null());
        } else {
            let file = std::fs::File::create(&tmp)
                .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
            cmd.stdout(file);
        }
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running {}: {e}", job.exe.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim_start_matches("leaktrail: ")
                .to_string();
            let status = match out.status.code() {
                Some(c) => format!("exit {c}"),
                None => format!("{}", out.status),
            };
            return Err(if last.is_empty() {
                status
            } else {
                format!("{last} ({status})")
            });
        }
        // The one output rule: only a regular file (or nothing) is replaced.
        leaktrail_recording::output::check(
            &task.output,
            leaktrail_recording::output::Kind::Seekable,
        )
        .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &task.output)
            .map_err(|e| format!("renaming to {}: {e}", task.output.display()))?;
        if let Some(url) = &task.upload {
            let sent = (job.send)(&task.output, url);
            let _ = std::fs::remove_file(&task.output);
            sent?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Outcome {
        task: task.clone(),
        error: result.err(),
    }
}

/// Output names for `inputs`: each one's file stem, or, where stems
/// collide (`a/0001.core`, `b/0001.core`), as many of its parent folders
/// as make it unique, joined with `_`.
pub fn output_names(inputs: &[PathBuf]) -> Vec<String> {
    let parts: Vec<Vec<String>> = inputs
        .iter()
        .map(|p| {
            let mut v: Vec<String> = p
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            if let Some(last) = v.last_mut() {
                if let Some((stem, _)) = last.rsplit_once('.') {
                    if !stem.is_empty() {
                        *last = stem.to_string();
                    }
                }
            }
            v
        })
        .collect();
    let name = |v: &[String], k: usize| v[v.len().saturating_sub(k)..].join("_");
    let mut names: Vec<String> = parts.iter().map(|v| name(v, 1)).collect();
    let max = parts.iter().map(|v| v.len()).max().unwrap_or(1);
    for k in 2..=max + 1 {
        let current = names.clone();
        let mut changed = false;
        for (i, n) in current.iter().enumerate() {
            if current.iter().filter(|m| *m == n).count() > 1 {
                names[i] = name(&parts[i], k);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Identical paths given twice still get distinct files.
    for i in 0..names.len() {
        let dups = names[..i].iter().filter(|n| **n == names[i]).count();
        if dups > 0 {
            names[i] = format!("{}-{}", names[i], dups + 1);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stems_made_unique_by_their_folders() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            output_names(&[
                p("rec/snapshots/0001.core"),
                p("rec/snapshots/0002-exit.core")
            ]),
            ["0001", "0002-exit"]
        );
        assert_eq!(
            output_names(&[
                p("a/snapshots/0001.core"),
                p("b/snapshots/0001.core"),
                p("c.core")
            ]),
            ["a_snapshots_0001", "b_snapshots_0001", "c"]
        );
        assert_eq!(output_names(&[p("x.core"), p("x.core")]), ["x", "x-2"]);
        assert_eq!(output_names(&[p(".hidden")]), [".hidden"]);
    }

    /// Two children run at once with two workers: each input's child
    /// marks that it started and waits (up to a minute, not a fixed sleep)
    /// until both have. Run one at a time, the first would give up.
    #[test]
    fn two_workers_run_two_children_at_once() {
        let dir = std::env::temp_dir().join(format!("leaktrail-job-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let script = format!(
            "touch \"$0.started\"; end=$(( $(date +%s) + 60 )); \
             while [ $(ls {d} | grep -c started) -lt 2 ]; do \
               [ $(date +%s) -gt $end ] && exit 1; done; echo ok",
            d = dir.display()
        );
        let command = vec!["-c".to_string(), script];
        let tasks: Vec<Task> = ["a", "b"]
            .iter()
            .map(|n| Task {
                input: dir.join(n),
                output: dir.join(format!("{n}.out")),
                upload: None,
            })
            .collect();
        let outcomes = run(
            &Job {
                exe: PathBuf::from("/bin/sh"),
                command: &command,
                output_flag: false,
                workers: 2,
                progress: &|_, _, _| {},
                send: &|_, _| Ok(()),
            },
            &tasks,
        );
        assert!(outcomes.iter().all(|o| o.error.is_none()), "{outcomes:?}");
        for t in &tasks {
            assert_eq!(std::fs::read_to_string(&t.output).expect("output"), "ok\n");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_child_is_reported_and_leaves_no_output() {
        let dir = std::env::temp_dir().join(format!("leaktrail-job-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let command = vec![
            "-c".to_string(),
            "echo partial; echo \"leaktrail: $0: broken\" >&2; exit 2".to_string(),
        ];
        let task = Task {
            input: dir.join("x.core"),
            output: dir.join("x.txt"),
            upload: None,
        };
        let outcomes = run(
            &Job {
                exe: PathBuf::from("/bin/sh"),
                command: &command,
                output_flag: false,
                workers: 1,
                progress: &|_, _, _| {},
                send: &|_, _| Ok(()),
            },
            std::slice::from_ref(&task),
        );
        let err = outcomes[0].error.as_deref().expect("failed");
        assert_eq!(err, format!("{}: broken (exit 2)", task.input.display()));
        assert!(!task.output.exists());
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "no temporary left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
