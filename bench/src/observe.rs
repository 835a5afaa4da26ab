//! Where the CPU goes while a scenario runs: chatrelay's CPU time per thread
//! (/proc/PID/task), PostgreSQL's server processes when that is the back end,
//! the whole machine's busy time (/proc/stat — the load generator and
//! anything else running), and, with `--perf DIR`, a `perf record` profile
//! of chatrelay over the measured window. On PostgreSQL it also counts the
//! database's commits (`pg_stat_database`), which its CPU follows more
//! closely than the requests served.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::Connection;
use tokio::{process::Command, sync::Mutex};

use crate::report::thousands;

/// CPU counters at one instant, in clock ticks.
pub struct Snapshot {
    at: Instant,
    machine_busy: u64,
    /// tid → (thread name, user + system ticks)
    threads: HashMap<u32, (String, u64)>,
    /// pid → ticks of each `postgres` process, when watched.
    postgres: HashMap<u32, u64>,
    /// The database's commits so far, when counted.
    commits: Option<u64>,
}

/// CPU used between two snapshots, in cores (1.0 = one core busy throughout).
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub chatrelay: f64,
    /// PostgreSQL's server processes, when that is the back end.
    pub postgres: Option<f64>,
    pub machine: f64,
    /// The database's commits per second, when counted (PostgreSQL).
    pub commits_per_sec: Option<f64>,
    /// Per thread name: (threads, cores together, cores of the busiest one).
    pub threads: BTreeMap<String, (usize, f64, f64)>,
}

impl Usage {
    /// `1.01 of 1.98` — chatrelay's cores of the machine's busy cores;
    /// `0.36 + pg 0.80 of 1.98` with PostgreSQL.
    pub fn cell(&self) -> String {
        match self.postgres {
            Some(postgres) => format!(
                "{:.2} + pg {postgres:.2} of {:.2}",
                self.chatrelay, self.machine
            ),
            None => format!("{:.2} of {:.2}", self.chatrelay, self.machine),
        }
    }

    /// `tokio-rt-worker ×2 0.74 (max 0.37), sqlx-sqlite-wor ×4 0.29 (max 0.25)`,
    /// busiest first, threads under 1% of a core left out.
    pub fn threads_line(&self) -> String {
        let mut groups: Vec<_> = self
            .threads
            .iter()
            .filter(|(_, (_, cores, _))| *cores >= 0.01)
            .collect();
        groups.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        groups
            .iter()
            .map(|(name, (count, cores, max))| {
                if *count > 1 {
                    format!("{name} ×{count} {cores:.2} (max {max:.2})")
                } else {
                    format!("{name} {cores:.2}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `; PostgreSQL 3,324 commits/s, 2.22 per request` when commits were
    /// counted, for a scenario serving `per_sec` requests; else nothing.
    pub fn commits_note(&self, per_sec: f64) -> String {
        let Some(commits) = self.commits_per_sec else {
            return String::new();
        };
        let mut note = format!(
            "; PostgreSQL {} commits/s",
            thousands(commits.round() as u64)
        );
        if per_sec > 0.0 {
            note += &format!(", {:.2} per request", commits / per_sec);
        }
        note
    }
}

pub struct Observer {
    pid: u32,
    ticks_per_sec: f64,
    perf_dir: Option<PathBuf>,
    watch_postgres: bool,
    /// A connection to the benchmark's PostgreSQL database, for its counters.
    stats: Option<Mutex<sqlx::PgConnection>>,
}

impl Observer {
    pub fn new(pid: u32, perf_dir: Option<PathBuf>, watch_postgres: bool) -> Self {
        Self {
            pid,
            ticks_per_sec: clock_ticks_per_sec(),
            perf_dir,
            watch_postgres,
            stats: None,
        }
    }

    /// Also counts the commits of the PostgreSQL database at `url`.
    pub async fn counting_commits(mut self, url: &str) -> anyhow::Result<Self> {
        let conn = sqlx::PgConnection::connect(url)
            .await
            .context("cannot connect to the benchmark database for its counters")?;
        self.stats = Some(Mutex::new(conn));
        Ok(self)
    }

    /// The database's commits so far. Each backend adds its own about once
    /// a second, so a count is up to a second behind.
    async fn commits(&self) -> Option<u64> {
        let mut conn = self.stats.as_ref()?.lock().await;
        let (commits,): (i64,) = sqlx::query_as(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| eprintln!("chatrelay-bench: cannot read the commit count: {e}"))
        .ok()?;
        u64::try_from(commits).ok()
    }

    pub async fn snapshot(&self) -> Option<Snapshot> {
        let commits = self.commits().await;
        let at = Instant::now();
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let machine_busy = machine_busy_ticks(&stat)?;
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.pid)).ok()? {
            let Ok(entry) = entry else { continue };
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(thread) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| thread_ticks(&stat))
            {
                threads.insert(tid, thread);
            }
        }
        let postgres = if self.watch_postgres {
            postgres_ticks()
        } else {
            HashMap::new()
        };
        Some(Snapshot {
            at,
            machine_busy,
            threads,
            postgres,
            commits,
        })
    }

    pub fn usage(&self, before: &Snapshot, after: &Snapshot) -> Usage {
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let cores = |ticks: u64| ticks as f64 / self.ticks_per_sec / seconds;
        let postgres_ticks = after
            .postgres
            .iter()
            .map(|(pid, ticks)| {
                ticks.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0))
            })
            .sum();
        let mut usage = Usage {
            machine: cores(after.machine_busy.saturating_sub(before.machine_busy)),
            postgres: self.watch_postgres.then(|| cores(postgres_ticks)),
            commits_per_sec: before
                .commits
                .zip(after.commits)
                .map(|(before, after)| after.saturating_sub(before) as f64 / seconds),
            ..Usage::default()
        };
        for (tid, (name, ticks)) in &after.threads {
            let earlier = before.threads.get(tid).map_or(0, |(_, ticks)| *ticks);
            let used = cores(ticks.saturating_sub(earlier));
            usage.chatrelay += used;
            let group = usage.threads.entry(name.clone()).or_default();
            group.0 += 1;
            group.1 += used;
            group.2 = group.2.max(used);
        }
        usage
    }

    /// Sleeps until `from`, then measures until `to`; with `--perf`, also
    /// records a profile named `name` over the window.
    pub async fn window(&self, name: &str, from: Instant, to: Instant) -> Option<Usage> {
        tokio::time::sleep_until(from.into()).await;
        let perf = self.start_perf(name, to.saturating_duration_since(Instant::now()));
        let before = self.snapshot().await;
        tokio::time::sleep_until(to.into()).await;
        let after = self.snapshot().await;
        if let Some((child, data)) = perf {
            self.finish_perf(child, data).await;
        }
        Some(self.usage(&before?, &after?))
    }

    fn start_perf(&self, name: &str, length: Duration) -> Option<(tokio::process::Child, PathBuf)> {
        let dir = self.perf_dir.as_ref()?;
        let data = dir.join(format!("{name}.data"));
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p"])
            .arg(self.pid.to_string())
            .arg("-o")
            .arg(&data)
            .args(["--", "sleep"])
            .arg(format!("{:.1}", length.as_secs_f64().max(0.1)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| eprintln!("chatrelay-bench: cannot run perf: {e}"))
            .ok()?;
        Some((child, data))
    }

    /// Waits for `perf record` and writes its flat report beside the data.
    async fn finish_perf(&self, mut child: tokio::process::Child, data: PathBuf) {
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        let report = Command::new("perf")
            .arg("report")
            .arg("-i")
            .arg(&data)
            .args([
                "--stdio",
                "--no-children",
                "-g",
                "none",
                "--percent-limit",
                "0.7",
            ])
            .args(["--sort", "comm,dso,sym"])
            .stderr(Stdio::null())
            .output()
            .await;
        if let Ok(report) = report {
            let _ = std::fs::write(data.with_extension("txt"), report.stdout);
        }
    }
}

/// Busy ticks of the whole machine from /proc/stat's `cpu` line: everything
/// but idle and iowait.
fn machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(total - idle)
}

/// pid → CPU ticks of every process named `postgres` (the server and its
/// backends; a backend that exits between two snapshots is not counted).
fn postgres_ticks() -> HashMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, ticks) = thread_ticks(&stat)?;
            (name == "postgres").then_some((pid, ticks))
        })
        .collect()
}

/// (name, utime + stime) from a /proc/PID/stat or /proc/PID/task/TID/stat line.
fn thread_ticks(stat: &str) -> Option<(String, u64)> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    // After "(comm) ": state is field 3; utime is field 14, stime field 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name.to_string(), ticks))
}

fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat_lines() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        // user + nice + system + irq + softirq + steal
        assert_eq!(machine_busy_ticks(stat), Some(161));
        let thread = "4242 (tokio-rt-worker) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 1 0";
        assert_eq!(thread_ticks(thread), Some(("tokio-rt-worker".into(), 290)));
    }

    #[test]
    fn notes_the_commits_per_request_only_where_counted() {
        let counted = Usage {
            commits_per_sec: Some(3_324.4),
            ..Usage::default()
        };
        assert_eq!(
            counted.commits_note(1_500.0),
            "; PostgreSQL 3,324 commits/s, 2.22 per request"
        );
        assert_eq!(counted.commits_note(0.0), "; PostgreSQL 3,324 commits/s");
        assert_eq!(Usage::default().commits_note(1_500.0), "");
    }
}
