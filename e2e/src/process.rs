//! A group of child processes, each with its own log file, killed when the group is
//! dropped. The fitsched stack and the control plane are both such groups.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Processes started by name (`scorer`, `kube-apiserver`...). A restarted name writes a
/// new log (`<name>.log`, `<name>-2.log`...), so nothing a test may need is overwritten.
pub struct Processes {
    log_dir: PathBuf,
    procs: Vec<Proc>,
    starts: HashMap<String, usize>,
}

impl Processes {
    pub fn new(log_dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let log_dir = log_dir.into();
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        Ok(Self { log_dir, procs: Vec::new(), starts: HashMap::new() })
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Starts `cmd` as `name`, its stdout and stderr into the name's next log file.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<()> {
        let log = self.next_log(name);
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        self.procs.push(Proc { name: name.to_owned(), child, log });
        Ok(())
    }

    /// The OS process id of a running process.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.iter().find(|p| p.name == name).map(|p| p.child.id())
    }

    /// Fails, with the tail of its log, when a process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited ({status}); its log ends:\n{}", p.name, tail(&p.log, 30));
            }
        }
        Ok(())
    }

    /// Kills one process by name and waits for it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.procs.iter().position(|p| p.name == name).with_context(|| format!("no process {name}"))?;
        let mut p = self.procs.remove(i);
        p.child.kill()?;
        p.child.wait()?;
        Ok(())
    }

    /// Everything `name` logged so far, over all its starts, in start order.
    pub fn log(&self, name: &str) -> String {
        let starts = self.starts.get(name).copied().unwrap_or(0);
        (1..=starts).filter_map(|i| std::fs::read_to_string(self.numbered_log(name, i)).ok()).collect()
    }

    /// Polls `GET <url>` until it answers 200, failing early (with the log's tail) when
    /// a process died.
    pub fn wait_http_ok(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        let agent = http_agent(Duration::from_millis(500));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = agent.get(url).call()
                && r.status() == 200
            {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("{url} did not answer 200 within {timeout:?} (logs in {})", self.log_dir.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `GET http://<addr>/health` until it answers 200.
    pub fn wait_healthy(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        self.wait_http_ok(&format!("http://{addr}/health"), Duration::from_secs(30))
    }

    fn next_log(&mut self, name: &str) -> PathBuf {
        let n = self.starts.entry(name.to_owned()).or_default();
        *n += 1;
        let n = *n;
        self.numbered_log(name, n)
    }

    fn numbered_log(&self, name: &str, i: usize) -> PathBuf {
        self.log_dir.join(if i == 1 { format!("{name}.log") } else { format!("{name}-{i}.log") })
    }

    /// Stops every process, the last started first (agents before the scorer, the API
    /// server before etcd).
    pub fn stop_all(&mut self) {
        for mut p in self.procs.drain(..).rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A memory figure of a running process from `/proc/<pid>/status`, in KiB: `VmRSS`
/// (resident now) or `VmHWM` (peak resident).
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// An HTTP client that returns 4xx/5xx as responses, not errors.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

/// A fitsched binary's `/metrics` text (Prometheus), from its HTTP address.
pub fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut r = http_agent(Duration::from_secs(5)).get(&format!("http://{addr}/metrics")).call()?;
    Ok(r.body_mut().read_to_string()?)
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
