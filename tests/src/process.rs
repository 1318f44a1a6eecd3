//! Child processes that cannot outlive the test.
//!
//! Every program is started through `sh` with a watchdog: the shell keeps a pipe from the
//! test process on fd 3, forks a reader that sends SIGTERM to the program's PID when the
//! pipe closes, then `exec`s the program (same PID). The pipe closes when the guard drops
//! (normal end or panic) and also when the test process dies in any way, so no Envoy or
//! `warden` is left behind. Output goes to a log file; its tail is printed when a test
//! panics. Processes are only ever signalled by their own PID.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const WATCHDOG: &str =
    r#"exec 3<&0; (read _ <&3; kill -TERM $$ 2>/dev/null) & exec "$@" </dev/null 3<&-"#;

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name used in logs and messages (`envoy-frontend`).
    pub name: String,
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (default: inherit).
    pub cwd: Option<PathBuf>,
}

impl ProcessSpec {
    /// A spec with no arguments.
    pub fn new(name: &str, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }
}

/// A running child process; stopped (SIGTERM, then SIGKILL after 3 s) when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    watchdog: Option<ChildStdin>,
    log: PathBuf,
}

impl Process {
    /// Starts `spec`, sending stdout and stderr to `<log_dir>/<name>.log`.
    pub fn spawn(spec: &ProcessSpec, log_dir: &Path) -> Result<Self> {
        let log = log_dir.join(format!("{}.log", spec.name));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg(&spec.name)
            .arg(&spec.program)
            .args(&spec.args);
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::piped()).stdout(out).stderr(err);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let watchdog = child.stdin.take();
        Ok(Self {
            name: spec.name.clone(),
            child,
            watchdog,
            log,
        })
    }

    /// The process id (the program's own: the shell `exec`s it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the captured stdout+stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `max_bytes` of the log.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        tail(&self.log, max_bytes)
    }

    /// Fails (with the log tail) if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); last output:\n{}",
                self.name,
                self.log_tail(4000)
            ),
        }
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, ...) to this process by PID.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} ({}) failed", self.pid(), self.name);
        }
        Ok(())
    }

    /// Stops the process and waits for it; returns whether it was still running.
    pub fn stop(&mut self) -> bool {
        let running = matches!(self.child.try_wait(), Ok(None));
        // Closing the pipe makes the watchdog send SIGTERM to our (not yet reaped) child.
        drop(self.watchdog.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return running;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        running
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        let report = format!(
            "----- {} (pid {}), log {} -----\n{}\n----- end {} -----",
            self.name,
            self.pid(),
            self.log.display(),
            self.log_tail(6000),
            self.name
        );
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            // Kept for `report_failure`: a scenario returning `Err` drops its processes
            // (and their log directory) before the harness sees the error.
            LOG_TAILS.with(|tails| tails.borrow_mut().push(report));
        }
    }
}

thread_local! {
    static LOG_TAILS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Passes `result` through; on `Err` first prints the log tails of every process this
/// thread (one test) started. Used by the scenario macro.
pub fn report_failure<T>(result: Result<T>) -> Result<T> {
    let tails = LOG_TAILS.with(|tails| std::mem::take(&mut *tails.borrow_mut()));
    if result.is_err() {
        for tail in tails {
            eprintln!("{tail}");
        }
    }
    result
}

/// The last `max_bytes` of a file, lossily decoded.
pub fn tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
