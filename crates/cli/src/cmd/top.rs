//! `leaktrail top`: a live view of a traced process, memray's live mode for
//! C, C++, Rust and Node.js programs.
//!
//! Each refresh reads `/proc/PID/smaps` (RSS per region) and the tracer's
//! audit region straight out of the running process (`process_vm_readv`:
//! the process is never stopped; a shard caught mid-update is re-read),
//! then ranks the allocation stacks by how much their live bytes grew
//! since `top` started. The cost is one read of the audit (tens of bytes
//! per live buffer, plus the stacks) and one smaps read per refresh, both
//! in our process; the target pays only the kernel's page-table walk for
//! smaps. Only the stacks on screen are symbolized, once each. The status
//! line shows what the last refresh cost, so the cost is never a guess.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};
use leaktrail_analysis::audit_dump;
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_capture::memory::LiveProcess;
use leaktrail_capture::{procfs, watch};
use leaktrail_format::StackId;
use leaktrail_recording::audit;
use leaktrail_recording::maps::Region;
use leaktrail_report::heap::count;
use leaktrail_report::text::{bytes, rate, seconds, signed_bytes};

use crate::bad_input;
use crate::cmd::watch::parse_duration;

/// Flags of `leaktrail top`.
#[derive(clap::Args)]
#[command(after_help = "\
A live view of a process started with `leaktrail run`: its RSS per region, \
the bytes malloc holds, and the allocation sites whose live bytes grew the \
most since top started, refreshed in place. q, Esc or Ctrl-C quits and \
restores the terminal. Each refresh reads the tracer's tables out of the \
running process without stopping it (the status line says what it cost).

Examples:
  leaktrail run --every 0 -- ./server &   # then, with its pid:
  leaktrail top -p 1234
  leaktrail top -p 1234 --interval 5s")]
pub struct Args {
    /// The process (started with `leaktrail run`).
    #[arg(short, long, value_name = "PID")]
    pub pid: i32,
    /// Time between refreshes: 500ms, 1s, 5s...
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// One site's line: its growth since top started and what it holds now.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteRow {
    /// Live bytes now minus at top's first read (0 for a new site).
    pub grew: i64,
    /// Live bytes now.
    pub bytes: u64,
    /// Live buffers now.
    pub count: u64,
    /// `function (file:line)`.
    pub site: String,
}

/// What one refresh shows.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The process.
    pub pid: i32,
    /// Its command name.
    pub comm: String,
    /// Seconds since top's first read.
    pub elapsed: f64,
    /// RSS now and at the first read.
    pub rss: (u64, u64),
    /// RSS per region, in [`Region::ALL`] order.
    pub regions: Vec<(&'static str, u64)>,
    /// The tracer's own resident bytes (not in `regions`).
    pub tracer: u64,
    /// Live malloc'd bytes now and at the first read.
    pub live_bytes: (u64, u64),
    /// Live buffers now and at the first read.
    pub live_count: (u64, u64),
    /// The sites, fastest-growing first, then by live bytes.
    pub sites: Vec<SiteRow>,
    /// What the last refresh took.
    pub read_cost: Duration,
}

/// The screen for `view` in `width` x `height` characters, plain (the
/// caller colours it).
pub fn screen(view: &View, width: usize, height: usize) -> Vec<String> {
    let hours = view.elapsed / 3600.0;
    let per_hour = |d: f64| if hours > 0.0 { d / hours } else { 0.0 };
    let mut lines = vec![
        format!(
            "leaktrail top: pid {} ({})  watched {}  q quits",
            view.pid,
            view.comm,
            seconds(view.elapsed)
        ),
        format!(
            "rss {} ({} since start, {})",
            bytes(view.rss.0 as f64),
            signed_bytes(view.rss.0 as f64 - view.rss.1 as f64),
            rate(per_hour(view.rss.0 as f64 - view.rss.1 as f64))
        ),
        view.regions
            .iter()
            .map(|(name, b)| format!("{name} {}", bytes(*b as f64)))
            .collect::<Vec<_>>()
            .join("   "),
        format!(
            "malloc'd {} in {} buffers ({} since start); leaktrail's own {}",
            bytes(view.live_bytes.0 as f64),
            count(view.live_count.0),
            signed_bytes(view.live_bytes.0 as f64 - view.live_bytes.1 as f64),
            bytes(view.tracer as f64)
        ),
        String::new(),
        "fastest-growing sites since top started".to_string(),
        format!(
            "{:>12} {:>14} {:>11} {:>9}  site",
            "grew", "rate", "live", "buffers"
        ),
    ];
    let status = format!(
        "refresh read the audit and smaps in {:.1} ms, without stopping the process",
        view.read_cost.as_secs_f64() * 1e3
    );
    // The blank line and the status below the table, and the "more" line
    // when not every site fits.
    let mut room = height.saturating_sub(lines.len() + 2);
    if view.sites.len() > room {
        room = room.saturating_sub(1);
    }
    for s in view.sites.iter().take(room) {
        lines.push(format!(
            "{:>12} {:>14} {:>11} {:>9}  {}",
            signed_bytes(s.grew as f64),
            rate(per_hour(s.grew as f64)),
            bytes(s.bytes as f64),
            count(s.count),
            s.site
        ));
    }
    if view.sites.len() > room {
        lines.push(format!(
            "… {} more sites",
            count((view.sites.len() - room) as u64)
        ));
    } else if view.sites.is_empty() {
        lines.push("(no live buffers)".into());
    }
    lines.push(String::new());
    lines.push(status);
    lines
        .into_iter()
        .map(|l| crate::term::fit(&l, width))
        .collect()
}

/// Reads of smaps and the audit per refresh before a failure is reported.
const REREADS: usize = 5;

/// The state kept between refreshes.
struct Top {
    pid: i32,
    comm: String,
    header: Option<u64>,
    symbolizer: Symbolizer,
    start: Instant,
    first: Option<(u64, u64, u64)>,
    base: HashMap<StackId, u64>,
    names: HashMap<StackId, String>,
}

impl Top {
    /// Opens `pid`; with `wait`, a process whose tracer has not set its
    /// tables up yet is looked at again at each refresh (`run --live`
    /// opens the view as the tracer starts).
    fn open(pid: i32, wait: bool) -> anyhow::Result<Top> {
        let live = LiveProcess::open(pid).with_context(|| format!("reading process {pid}"))?;
        let header = header_of(&live, pid);
        if header.is_none() && !wait {
            bad_input!(
                "process {pid} has no leaktrail audit region: top watches a process started with `leaktrail run` (try `leaktrail watch -p {pid}` for its RSS alone)"
            );
        };
        let comm = procfs::read_stat(pid).map(|s| s.comm).unwrap_or_default();
        let _ = &live;
        Ok(Top {
            pid,
            comm,
            header,
            symbolizer: audit_dump::live_symbolizer(&live.mappings),
            start: Instant::now(),
            first: None,
            base: HashMap::new(),
            names: HashMap::new(),
        })
    }

    /// Whether the process is still there (not reaped, not a zombie).
    fn alive(&self) -> bool {
        procfs::read_stat(self.pid).is_ok_and(|s| s.state != 'Z' && s.state != 'X')
    }

    /// Reads the process once; `None` once it has gone.
    fn refresh(&mut self) -> anyhow::Result<Option<View>> {
        let began = Instant::now();
        // The audit's tables grow while we read: one mapped after our
        // smaps read is "not in captured memory". Read both again, a few
        // times; a process that keeps failing is an error.
        let mut attempt = 0;
        let (live, decoded) = loop {
            attempt += 1;
            let live = match LiveProcess::open(self.pid) {
                Ok(l) => l,
                Err(leaktrail_capture::Error::Exited { .. }) => return Ok(None),
                Err(_) if !self.alive() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if self.header.is_none() {
                self.header = header_of(&live, self.pid);
            }
            match self
                .header
                .map(|h| audit_dump::decode_settled(&live.memory, h))
            {
                None => break (live, None),
                Some(Ok(d)) => break (live, Some(d)),
                Some(Err(_)) if !self.alive() => return Ok(None),
                Some(Err(_)) if attempt < REREADS => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        };
        let read_cost = began.elapsed();
        let ranges = decoded.as_ref().map_or(&[][..], |d| d.ranges.as_slice());
        let in_tracer = |start: u64, end: u64| ranges.iter().any(|&(a, b)| start < b && a < end);
        let mut per_region: HashMap<Region, u64> = HashMap::new();
        let mut tracer = 0;
        let mut rss = 0;
        for m in &live.mappings {
            rss += m.rss;
            if m.region == Region::Tracer || in_tracer(m.start, m.end) {
                tracer += m.rss;
            } else {
                *per_region.entry(m.region).or_default() += m.rss;
            }
        }
        let regions = Region::ALL
            .iter()
            .map(|r| (r.name(), per_region.get(r).copied().unwrap_or(0)))
            .collect();
        let mut by_stack: HashMap<StackId, (u64, u64)> = HashMap::new();
        for b in decoded.iter().flat_map(|d| &d.live) {
            let e = by_stack.entry(b.stack).or_default();
            e.0 += b.size;
            e.1 += 1;
        }
        let live_bytes: u64 = by_stack.values().map(|v| v.0).sum();
        let live_count: u64 = by_stack.values().map(|v| v.1).sum();
        let first = *self.first.get_or_insert_with(|| {
            self.base = by_stack.iter().map(|(&k, v)| (k, v.0)).collect();
            (rss, live_bytes, live_count)
        });
        let mut rows: Vec<(StackId, i64, u64, u64)> = by_stack
            .iter()
            .map(|(&k, &(b, c))| {
                let base = self.base.get(&k).copied().unwrap_or(0);
                (k, b as i64 - base as i64, b, c)
            })
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        // Only what can be on screen is symbolized (once per stack).
        rows.truncate(200);
        let sites = rows
            .into_iter()
            .map(|(k, grew, b, c)| {
                let site = self
                    .names
                    .entry(k)
                    .or_insert_with(|| {
                        let pcs = decoded
                            .as_ref()
                            .and_then(|d| d.stacks.get(&k))
                            .map_or(&[][..], |v| v.as_slice());
                        leaktrail_report::diagnosis::site(&self.symbolizer.stack(pcs))
                    })
                    .clone();
                SiteRow {
                    grew,
                    bytes: b,
                    count: c,
                    site,
                }
            })
            .collect();
        Ok(Some(View {
            pid: self.pid,
            comm: self.comm.clone(),
            elapsed: self.start.elapsed().as_secs_f64(),
            rss: (rss, first.0),
            regions,
            tracer,
            live_bytes: (live_bytes, first.1),
            live_count: (live_count, first.2),
            sites,
            read_cost,
        }))
    }
}

/// The audit header of `pid` in `live`: the region whose pid is its own.
fn header_of(live: &LiveProcess, pid: i32) -> Option<u64> {
    audit::find_headers(&live.memory)
        .into_iter()
        .find(|&a| audit::decode(&live.memory, a).is_ok_and(|d| d.pid == pid as u32))
}

/// The alternate screen in raw mode, left (and the cursor shown again)
/// when dropped, also on an error or a panic.
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        terminal::enable_raw_mode().context("top needs a terminal")?;
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }

    fn draw(&self, lines: &[String]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        let colour = crate::term::get().color;
        for (i, l) in lines.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, i as u16))?;
            if colour {
                out.write_all(crate::term::paint(l).as_bytes())?;
            } else {
                out.write_all(l.as_bytes())?;
            }
        }
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

fn quits(k: &KeyEvent) -> bool {
    matches!(
        k.code,
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc
    ) || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL))
}

/// What `top` prints once the screen is gone: the last view's gist.
fn farewell(view: Option<&View>, gone: bool) -> String {
    let Some(v) = view else {
        return String::new();
    };
    let mut s = format!(
        "leaktrail top: pid {} ({}) watched for {}{}; rss {} ({})",
        v.pid,
        v.comm,
        seconds(v.elapsed),
        if gone { ", until it exited" } else { "" },
        bytes(v.rss.0 as f64),
        signed_bytes(v.rss.0 as f64 - v.rss.1 as f64)
    );
    if let Some(top) = v.sites.first().filter(|s| s.grew > 0) {
        s.push_str(&format!(
            "; grew most: {} ({})",
            top.site,
            signed_bytes(top.grew as f64)
        ));
    }
    s.push('\n');
    s
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.interval.is_zero() {
        bad_input!("--interval must be longer than 0");
    }
    let top = Top::open(args.pid, false)?;
    watch::install_interrupt_handler();
    let farewell = show(top, args.interval)?;
    // One line, not a table: never fitted (a terminal wraps it).
    std::io::stdout().write_all(farewell.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `run --live`: the live view of `pid` (traced, its tracer started)
/// until it exits or the user quits; returns top's last line.
pub fn live(pid: i32, interval: Duration) -> anyhow::Result<String> {
    show(Top::open(pid, true)?, interval)
}

/// Draws the view until the process goes, `q`, or a signal; returns the
/// line to print once the screen is gone.
fn show(mut top: Top, interval: Duration) -> anyhow::Result<String> {
    let (last, gone) = {
        let tty = Screen::enter()?;
        let mut last: Option<View> = None;
        let mut gone = false;
        'refresh: loop {
            let due = Instant::now() + interval;
            match top.refresh()? {
                Some(v) => last = Some(v),
                None => {
                    gone = true;
                    break;
                }
            }
            let draw = |v: &View| -> std::io::Result<()> {
                let (w, h) = terminal::size().unwrap_or((80, 24));
                tty.draw(&screen(v, w as usize, h as usize))
            };
            if let Some(v) = &last {
                draw(v)?;
            }
            loop {
                if watch::interrupted().load(std::sync::atomic::Ordering::SeqCst) {
                    break 'refresh;
                }
                let wait = due.saturating_duration_since(Instant::now());
                match terminal_input(wait) {
                    Input::None => break,
                    // The window closed (tmux killed, ssh gone): crossterm's
                    // reader spins on a hung-up terminal, so stop here.
                    Input::HungUp => break 'refresh,
                    Input::Ready => {
                        if !event::poll(Duration::ZERO)? {
                            continue;
                        }
                    }
                    Input::Unknown => {
                        if wait.is_zero() || !event::poll(wait)? {
                            break;
                        }
                    }
                }
                match event::read()? {
                    Event::Key(k) if quits(&k) => break 'refresh,
                    Event::Resize(..) => {
                        if let Some(v) = &last {
                            draw(v)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        drop(tty);
        (last, gone)
    };
    Ok(farewell(last.as_ref(), gone))
}

/// What the terminal has for us after waiting up to some time.
enum Input {
    /// Nothing: the wait ended.
    None,
    /// Bytes to read.
    Ready,
    /// The terminal hung up or is gone.
    HungUp,
    /// Standard input is not the terminal (crossterm reads /dev/tty):
    /// leave the wait to crossterm.
    Unknown,
}

/// Waits up to `wait` for input on the terminal when it is standard input.
fn terminal_input(wait: Duration) -> Input {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(0) } == 0 {
        return Input::Unknown;
    }
    let mut p = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd that lives across the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Input::HungUp
    } else if n > 0 {
        Input::Ready
    } else {
        Input::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            pid: 42,
            comm: "server".into(),
            elapsed: 3600.0,
            rss: (10 << 20, 8 << 20),
            regions: vec![("heap", 6 << 20), ("anon", 1 << 20)],
            tracer: 300 << 10,
            live_bytes: (5 << 20, 4 << 20),
            live_count: (3000, 2000),
            sites: vec![
                SiteRow {
                    grew: 1 << 20,
                    bytes: 2 << 20,
                    count: 512,
                    site: "grow_cache (app.c:46)".into(),
                },
                SiteRow {
                    grew: 0,
                    bytes: 3 << 20,
                    count: 2000,
                    site: "fill_pool (app.c:20)".into(),
                },
            ],
            read_cost: Duration::from_micros(1500),
        }
    }

    #[test]
    fn the_screen_ranks_growth_and_fits_its_height() {
        let lines = screen(&view(), 100, 24);
        assert_eq!(
            lines[0],
            "leaktrail top: pid 42 (server)  watched 1h00m  q quits"
        );
        assert_eq!(lines[1], "rss 10.0 MiB (+2.0 MiB since start, +2.0 MiB/h)");
        assert_eq!(lines[2], "heap 6.0 MiB   anon 1.0 MiB");
        assert_eq!(
            lines[7],
            "    +1.0 MiB     +1.0 MiB/h     2.0 MiB       512  grow_cache (app.c:46)"
        );
        assert_eq!(
            lines[8],
            "         0 B          0 B/h     3.0 MiB     2,000  fill_pool (app.c:20)"
        );
        assert!(lines.last().expect("status").contains("1.5 ms"));
        // Too short for any site: the count of them.
        let lines = screen(&view(), 100, 10);
        assert!(lines.len() <= 10, "{lines:#?}");
        assert!(lines.contains(&"… 2 more sites".to_string()), "{lines:#?}");
    }

    #[test]
    fn the_farewell_names_the_fastest_grower() {
        assert_eq!(
            farewell(Some(&view()), false),
            "leaktrail top: pid 42 (server) watched for 1h00m; rss 10.0 MiB (+2.0 MiB); grew most: grow_cache (app.c:46) (+1.0 MiB)\n"
        );
        assert_eq!(farewell(None, true), "");
    }
}
