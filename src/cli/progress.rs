//! Progress on stderr, for every command that can run long, `--json` or not (JSON goes to
//! stdout only).
//!
//! On a terminal it is an indicatif spinner with the elapsed time and what is being done. Not
//! on a terminal (CI logs), every new activity is a plain line, and while one lasts a line
//! naming it and its elapsed time follows at least once a minute, so a job is never silent.
//! `--quiet` silences it all.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: OnceLock<bool> = OnceLock::new();

/// Set once from the command line.
pub fn set_quiet(quiet: bool) {
    let _ = QUIET.set(quiet);
}

/// A line on stderr, unless `--quiet`.
pub fn say(line: impl AsRef<str>) {
    if !*QUIET.get().unwrap_or(&false) {
        eprintln!("{}", line.as_ref());
    }
}

/// How often a plain line repeats the current activity: every minute, or every
/// `KATA_REPRO_PROGRESS_SECONDS`.
fn interval() -> Duration {
    std::env::var("KATA_REPRO_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

struct Activity {
    message: String,
    since: Instant,
    done: bool,
}

struct Shared {
    activity: Mutex<Activity>,
    wake: Condvar,
    started: Instant,
}

/// One command's progress reporter.
pub struct Progress {
    mode: Mode,
    bar: ProgressBar,
    shared: Arc<Shared>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        let mode = if *QUIET.get().unwrap_or(&false) {
            Mode::Quiet
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Mode::Bar
        } else {
            Mode::Lines
        };
        let target = match mode {
            Mode::Bar => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("valid template"),
        );
        if mode == Mode::Bar {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        let shared = Arc::new(Shared {
            activity: Mutex::new(Activity {
                message: String::new(),
                since: Instant::now(),
                done: false,
            }),
            wake: Condvar::new(),
            started: Instant::now(),
        });
        let heartbeat = (mode == Mode::Lines).then(|| {
            let shared = shared.clone();
            std::thread::spawn(move || heartbeat(&shared, interval()))
        });
        Self {
            mode,
            bar,
            shared,
            heartbeat,
        }
    }

    /// What is being done now: the spinner's message, or a plain line.
    pub fn set(&self, message: impl Into<String>) {
        let message = message.into();
        {
            let mut a = self.shared.activity.lock().expect("not poisoned");
            if a.message == message {
                return;
            }
            a.message = message.clone();
            a.since = Instant::now();
        }
        match self.mode {
            Mode::Bar => {
                // The spinner's clock is the new activity's.
                self.bar.reset_elapsed();
                self.bar.set_message(message);
            }
            Mode::Lines => eprintln!("[{}] {message}", clock(self.shared.started.elapsed())),
            Mode::Quiet => {}
        }
    }

    /// What is being done now, without a line of its own: the spinner's message, and what the
    /// next plain progress line names (for activities that change many times a second).
    pub fn note(&self, message: impl Into<String>) {
        let message = message.into();
        if self.mode == Mode::Bar {
            self.bar.set_message(message.clone());
        }
        let mut a = self.shared.activity.lock().expect("not poisoned");
        if a.message != message {
            a.message = message;
            a.since = Instant::now();
        }
    }

    /// A line that stays (a finished step, a result).
    pub fn line(&self, line: impl AsRef<str>) {
        match self.mode {
            Mode::Bar => self.bar.println(line.as_ref()),
            Mode::Lines => eprintln!("{}", line.as_ref()),
            Mode::Quiet => {}
        }
    }

    /// A bar for byte or item counts, drawn only on a terminal.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.shared.activity.lock().expect("not poisoned").done = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        self.bar.finish_and_clear();
    }
}

/// Repeats the current activity with its elapsed time every `every`, until done. `done` is
/// read before every wait: it may have been set before this thread first took the lock, and
/// its notification is then gone.
fn heartbeat(shared: &Shared, every: Duration) {
    let mut a = shared.activity.lock().expect("not poisoned");
    while !a.done {
        let (next, timeout) = shared.wake.wait_timeout(a, every).expect("not poisoned");
        a = next;
        if !a.done && timeout.timed_out() && !a.message.is_empty() {
            eprintln!(
                "[{}] {} (for {})",
                clock(shared.started.elapsed()),
                a.message,
                clock(a.since.elapsed())
            );
        }
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

/// A job's events, shown on stderr.
pub struct JobProgress {
    progress: Progress,
    /// The steps of the component being built, for `step i/n`.
    steps: std::sync::atomic::AtomicUsize,
}

impl Default for JobProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl JobProgress {
    pub fn new() -> Self {
        Self {
            progress: Progress::new(),
            steps: Default::default(),
        }
    }

    pub fn show(&self, event: kata_repro::job::Event<'_>) {
        use kata_repro::builder::Event as Step;
        use kata_repro::job::Event;
        use std::sync::atomic::Ordering;
        let prefix = |label: &str| {
            if label.is_empty() {
                String::new()
            } else {
                format!("{label}: ")
            }
        };
        match event {
            Event::Phase { label, what } => self.progress.set(format!("{}{what}", prefix(label))),
            Event::Crate { label, name } => self
                .progress
                .bar()
                .set_message(format!("{}verifying crates: {name}", prefix(label))),
            Event::Note(line) => self.progress.line(line),
            Event::Step { label, event } => {
                let label = prefix(label);
                match event {
                    Step::ComponentStart { component, steps } => {
                        self.steps.store(steps, Ordering::Relaxed);
                        self.progress.set(format!("{label}{component}: starting"));
                    }
                    Step::StepStart {
                        component,
                        step,
                        index,
                        estimate,
                    } => {
                        let last = estimate
                            .map(|e| format!(" (took {} last time)", clock(e)))
                            .unwrap_or_default();
                        let total = self.steps.load(Ordering::Relaxed);
                        self.progress.set(format!(
                            "{label}{component}: step {}/{total} {step}{last}",
                            index + 1
                        ));
                    }
                    Step::StepEnd {
                        component,
                        step,
                        duration,
                    } => self.progress.line(format!(
                        "  {label}built {component}: {step} ({:.1}s)",
                        duration.as_secs_f64()
                    )),
                    Step::Remote { component, stage } => {
                        self.progress.line(format!("  {label}{component}: {stage}"))
                    }
                    Step::ComponentCached {
                        component,
                        remote: false,
                    } => self.progress.line(format!(
                        "  {label}cached {component}: every step's result is in the store"
                    )),
                    Step::ComponentCached {
                        component,
                        remote: true,
                    } => self.progress.line(format!(
                        "  {label}cached {component}: taken from the remote cache, every output \
                         checked against its digest"
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(done: bool) -> Arc<Shared> {
        Arc::new(Shared {
            activity: Mutex::new(Activity {
                message: "working".into(),
                since: Instant::now(),
                done,
            }),
            wake: Condvar::new(),
            started: Instant::now(),
        })
    }

    /// Runs the heartbeat on a thread and says whether it ended within `limit`.
    fn ends_within(shared: &Arc<Shared>, limit: Duration, before: impl FnOnce()) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            heartbeat(&s, Duration::from_secs(3600));
            let _ = tx.send(());
        });
        before();
        rx.recv_timeout(limit).is_ok()
    }

    #[test]
    fn a_heartbeat_told_to_stop_before_it_started_stops_at_once() {
        // The notification was sent before the thread waited: only the flag tells it.
        assert!(ends_within(&shared(true), Duration::from_secs(10), || {}));
    }

    #[test]
    fn a_heartbeat_stops_when_told() {
        let s = shared(false);
        let stop = s.clone();
        assert!(ends_within(&s, Duration::from_secs(10), move || {
            std::thread::sleep(Duration::from_millis(50));
            stop.activity.lock().unwrap().done = true;
            stop.wake.notify_all();
        }));
    }

    #[test]
    fn clock_reads_like_a_duration() {
        assert_eq!(clock(Duration::from_secs(6)), "6s");
        assert_eq!(clock(Duration::from_secs(245)), "4m05s");
        assert_eq!(clock(Duration::from_secs(3723)), "1h02m03s");
    }
}
