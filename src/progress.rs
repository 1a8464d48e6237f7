//! The progress display of `etl run` on a terminal: a line for the run, and a line per active
//! unit with its pages or files, records, bytes and rate (an export job's reported percentage;
//! a wait for the rate budget with its reason and remaining time).
//!
//! Why it listens to `tracing` instead of being called: the runner, the sources and the HTTP
//! client already say what happens (`unit started`, `export job in progress`, `waiting for the
//! rate budget`), and the runner adds cheap `etl::progress` trace events per decoded chunk and
//! written batch. A [`Layer`] turns those into bars, so no library crate knows a terminal
//! exists, and without a terminal (cron, CI, Kubernetes) the layer is not installed at all:
//! only the structured log is written, and the trace events cost one disabled-callsite check.
//!
//! Log lines keep working while bars are drawn: the log writer ([`LogWriter`]) prints through
//! the bars (`MultiProgress::suspend`), so a line never lands in the middle of a bar.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// The display of the run in progress, if any (a process runs one pipeline).
static ACTIVE: Mutex<Option<Bars>> = Mutex::new(None);

/// Whether `etl run` shows progress bars: only when stderr is a terminal and logs are text.
pub fn wanted(json_logs: bool) -> bool {
    !json_logs && std::io::stderr().is_terminal()
}

struct UnitBar {
    bar: ProgressBar,
    started: Instant,
    payloads: u64,
    rows: u64,
    bytes: u64,
    job: Option<String>,
}

impl UnitBar {
    fn refresh(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mut msg = format!(
            "{} page(s)/file(s), {} records, {}, {:.0} records/s",
            self.payloads,
            self.rows,
            indicatif::HumanBytes(self.bytes),
            self.rows as f64 / secs
        );
        if let Some(job) = &self.job {
            msg = format!("{job}; {msg}");
        }
        self.bar.set_message(msg);
    }
}

struct Bars {
    multi: MultiProgress,
    run: ProgressBar,
    units: HashMap<String, UnitBar>,
    /// A wait for a rate budget: its reason and when it ends.
    wait: Option<(String, Instant)>,
}

impl Bars {
    fn refresh_run(&mut self) {
        let msg = match &self.wait {
            Some((why, until)) if *until > Instant::now() => {
                format!("waiting {:.0}s: {why}", (*until - Instant::now()).as_secs_f64().ceil())
            }
            _ => {
                self.wait = None;
                String::new()
            }
        };
        self.run.set_message(msg);
    }
}

/// Handle of the display: [`Display::finish`] clears it before the summary is printed.
pub struct Display {
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Display {
    /// Starts the display for `units` if [`Layer`] is installed (a terminal); else does nothing.
    pub fn start(units: &[etl_core::Unit]) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
            return Self { ticker: None, stop };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let run = multi.add(ProgressBar::new(units.len() as u64));
        run.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} unit(s) {elapsed} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        run.set_prefix("etl run");
        *lock() = Some(Bars {
            multi,
            run,
            units: HashMap::new(),
            wait: None,
        });
        let flag = std::sync::Arc::clone(&stop);
        // Redraws the remaining wait and the rates even when no event arrives.
        let ticker = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(bars) = lock().as_mut() {
                    bars.refresh_run();
                    for u in bars.units.values() {
                        u.refresh();
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Self {
            ticker: Some(ticker),
            stop,
        }
    }

    /// Removes the bars (the summary table follows).
    pub fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker {
            let _ = t.join();
        }
        if let Some(bars) = lock().take() {
            for u in bars.units.values() {
                u.bar.finish_and_clear();
            }
            bars.run.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Bars>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The fields of an event that the display reads.
#[derive(Default)]
struct Fields {
    message: String,
    unit: Option<String>,
    rows: Option<u64>,
    bytes: Option<u64>,
    progress: Option<String>,
    job: Option<String>,
    wait_ms: Option<u64>,
    limits: Option<String>,
    budget: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = || format!("{value:?}");
        match field.name() {
            "message" => self.message = text(),
            "unit" => self.unit = Some(text()),
            "progress" => self.progress = Some(text()),
            "job" => self.job = Some(text()),
            "limits" => self.limits = Some(text()),
            "budget" => self.budget = Some(text()),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "unit" => self.unit = Some(value.to_string()),
            _ => self.record_debug(field, &value),
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows" => self.rows = Some(value),
            "bytes" => self.bytes = Some(value),
            "wait_ms" => self.wait_ms = Some(value),
            _ => self.record_debug(field, &value),
        }
    }
}

/// The `tracing` layer that feeds the display. Install it only on a terminal ([`wanted`]).
pub struct Layer;

impl Layer {
    pub fn new() -> Self {
        INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
        Self
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let mut guard = lock();
        let Some(bars) = guard.as_mut() else { return };
        let progress_target = event.metadata().target() == "etl::progress";
        match (f.message.as_str(), f.unit) {
            ("unit started", Some(unit)) => {
                let bar = bars.multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {spinner} {prefix} {msg}").expect("a valid template"));
                bar.set_prefix(unit.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                let u = UnitBar {
                    bar,
                    started: Instant::now(),
                    payloads: 0,
                    rows: 0,
                    bytes: 0,
                    job: None,
                };
                u.refresh();
                bars.units.insert(unit, u);
            }
            ("unit done", Some(unit)) if progress_target => {
                if let Some(u) = bars.units.remove(&unit) {
                    u.bar.finish_and_clear();
                    bars.multi.remove(&u.bar);
                }
                bars.run.inc(1);
            }
            ("unit committed by another worker; skipped", Some(_)) => bars.run.inc(1),
            ("export job in progress", Some(unit)) => {
                if let Some(u) = bars.units.get_mut(&unit) {
                    let job = f.job.unwrap_or_default();
                    u.job = Some(format!("export job {job} at {}%", f.progress.unwrap_or_default()));
                    u.refresh();
                }
            }
            (_, Some(unit)) if progress_target => {
                if let Some(u) = bars.units.get_mut(&unit) {
                    match f.message.as_str() {
                        "payload decoded" => u.payloads += 1,
                        _ => {
                            u.rows += f.rows.unwrap_or(0);
                            u.bytes += f.bytes.unwrap_or(0);
                        }
                    }
                }
            }
            ("waiting for the rate budget", _) => {
                let why = format!(
                    "rate budget of the {} ({})",
                    f.budget.unwrap_or_default(),
                    f.limits.unwrap_or_default()
                );
                bars.wait = Some((why, Instant::now() + Duration::from_millis(f.wait_ms.unwrap_or(0))));
                bars.refresh_run();
            }
            ("the server rate-limited us; every request of this budget waits", _) => {
                let why = format!(
                    "the server rate-limited the {} (Retry-After)",
                    f.budget.unwrap_or_default()
                );
                bars.wait = Some((why, Instant::now() + Duration::from_millis(f.wait_ms.unwrap_or(0))));
                bars.refresh_run();
            }
            _ => {}
        }
    }
}

/// The log's writer: through the bars while they are shown, straight to stderr otherwise.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The display never logs while it holds the lock, so waiting for it cannot deadlock.
        if let Some(bars) = lock().as_ref() {
            return bars
                .multi
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|()| buf.len());
        }
        std::io::stderr().write_all(buf).map(|()| buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
