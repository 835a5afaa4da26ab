//! The suite: one temporary database, one chatrelay, every scenario in turn
//! (each with accounts of its own, so one scenario's backlog never reaches
//! another's extensions), then the table.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    database::BenchDatabase,
    lifecycle::LifecycleReport,
    observe::{Observer, Usage},
    report::{self, ms, percent, rate, thousands, Machine, Row},
    server::{self, Chatrelay},
    webhooks::Receiver,
    wrk::{Wrk, WrkReport},
};

mod scenarios;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Rest,
    Grpc,
    Get,
    Lifecycle,
    Conversation,
    Live,
    Webhooks,
    Idle,
}

/// `chatrelay-bench run`.
#[derive(clap::Args, Clone, Debug)]
pub struct RunOptions {
    /// The release `chatrelay` binary to benchmark [default: `chatrelay` next
    /// to this binary].
    #[arg(long)]
    pub chatrelay: Option<PathBuf>,

    /// Run on PostgreSQL: a server URL the harness may create (and then
    /// drop) a database from, e.g. postgres://postgres@127.0.0.1:5432/test.
    /// Without it: a SQLite file in a temporary directory.
    #[arg(long)]
    pub postgres: Option<String>,

    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,

    /// Seconds of load before each measurement, not counted.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,

    /// Concurrent connections (wrk) or calls in flight (gRPC, submitters).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,

    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub wrk_threads: u32,

    /// HTTP/2 connections the gRPC driver spreads its calls over.
    #[arg(long, default_value_t = 4)]
    pub grpc_channels: usize,

    /// Simulated extensions in the lifecycle and webhook scenarios.
    #[arg(long, default_value_t = 8)]
    pub extensions: usize,

    /// Idle extension sessions held open.
    #[arg(long, default_value_t = 10_000)]
    pub idle_sessions: usize,

    /// Idle sessions per account: the service's default
    /// CHATRELAY_MAX_SESSIONS_PER_ACCOUNT, so the idle sessions are spread
    /// over as many accounts as that needs.
    #[arg(long, default_value_t = 100)]
    pub sessions_per_account: usize,

    /// Requests queued in the one chat of the conversation scenario (8).
    #[arg(long, default_value_t = 1_000)]
    pub conversation_requests: usize,

    /// Submits per second in the live-status scenario [default: half of
    /// the flat-out lifecycle rate, or 1,500/s if that scenario is skipped].
    #[arg(long)]
    pub live_rate: Option<f64>,

    /// Open SSE streams, and pending long-polls, in the live-status memory
    /// scenario (7c).
    #[arg(long, default_value_t = 1_000)]
    pub live_held: usize,

    /// With --postgres: start a second `chatrelay serve` on the same
    /// database and measure live status (7a, 7b) across the two — the SSE
    /// stream and the long-polls on the second core, the extensions and
    /// submits on the first.
    #[arg(long, requires = "postgres")]
    pub second_core: bool,

    /// Requests completed in the webhook scenario.
    #[arg(long, default_value_t = 5_000)]
    pub webhook_requests: usize,

    /// Scenarios to leave out (comma-separated); the reference always runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Scenario>,

    /// Keep the database and the scratch directory (chatrelay's log) after
    /// the run instead of removing them.
    #[arg(long)]
    pub keep_database: bool,

    /// Also profile chatrelay with `perf record` over each measured window:
    /// DIR/<scenario>.data and a flat report DIR/<scenario>.txt.
    #[arg(long, value_name = "DIR")]
    pub perf: Option<PathBuf>,
}

/// API keys: one account per scenario, and as many as the idle sessions need.
struct Keys {
    rest: String,
    grpc: String,
    get: String,
    lifecycle: String,
    lifecycle_half: String,
    lifecycle_floor: String,
    conversation: String,
    live: String,
    live_held: String,
    webhooks: String,
    idle: Vec<String>,
}

/// What the suite found: the table, notes on anything that went wrong, and
/// where chatrelay's CPU went in each scenario.
#[derive(Default)]
struct Findings {
    rows: Vec<Row>,
    notes: Vec<String>,
    /// Per scenario: where the CPU went, and the requests it served per second.
    cpu: Vec<(String, Usage, f64)>,
}

const GIB: u64 = 1 << 30;

pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let machine = Machine::detect();
    let binary = options
        .chatrelay
        .clone()
        .unwrap_or_else(server::default_binary);
    if let Some(dir) = &options.perf {
        std::fs::create_dir_all(dir)?;
    }
    let database = BenchDatabase::create(options.postgres.as_deref()).await?;
    progress(&format!(
        "{} at {}; scratch directory {}",
        database.description,
        database.url,
        database.dir().display()
    ));
    let outcome = run_on(&options, &binary, &database).await;
    if outcome.is_err() {
        print_log_tail(&database.path("chatrelay.log"));
    }
    let description = database.description.clone();
    let removed = if options.keep_database {
        progress(&database.keep());
        Ok(())
    } else {
        database.remove().await
    };
    let findings = outcome?;
    removed?;

    println!("### chatrelay benchmark: {description}");
    println!();
    println!("- machine: {machine}");
    println!(
        "- load: wrk {} threads × {} connections; gRPC driver {} calls in flight over {} channels; \
         {} s measured per scenario after {} s warm-up; load generator on the same machine, loopback",
        options.wrk_threads,
        options.connections,
        options.connections,
        options.grpc_channels,
        options.duration,
        options.warmup
    );
    println!(
        "- chatrelay: `{} serve`, default settings; CPU column: cores chatrelay used of the cores \
         the whole machine was busy (the rest is the load generator and anything else running)",
        binary.display()
    );
    println!();
    print!("{}", report::table(&findings.rows));
    if !findings.notes.is_empty() {
        println!();
        for note in &findings.notes {
            println!("- {note}");
        }
    }
    println!();
    println!(
        "chatrelay's threads (cores used in the measured window){}:",
        if options.postgres.is_some() {
            ", and the database's commits"
        } else {
            ""
        }
    );
    println!();
    for (scenario, usage, per_sec) in &findings.cpu {
        println!(
            "- {scenario}: {}{}",
            usage.threads_line(),
            usage.commits_note(*per_sec)
        );
    }
    Ok(())
}

async fn run_on(
    options: &RunOptions,
    binary: &Path,
    database: &BenchDatabase,
) -> anyhow::Result<Findings> {
    let receiver = Receiver::start().await?;
    progress("creating accounts");
    let account = |name: String, webhook: Option<String>| async move {
        server::create_account(binary, &database.url, &name, webhook.as_deref()).await
    };
    let mut keys = Keys {
        rest: account("bench-rest".into(), None).await?,
        grpc: account("bench-grpc".into(), None).await?,
        get: account("bench-get".into(), None).await?,
        lifecycle: account("bench-lifecycle".into(), None).await?,
        lifecycle_half: account("bench-lifecycle-half".into(), None).await?,
        lifecycle_floor: account("bench-lifecycle-floor".into(), None).await?,
        conversation: account("bench-conversation".into(), None).await?,
        live: account("bench-live".into(), None).await?,
        live_held: account("bench-live-held".into(), None).await?,
        webhooks: account("bench-webhooks".into(), Some(receiver.url())).await?,
        idle: Vec::new(),
    };
    if !options.skip.contains(&Scenario::Idle) {
        let accounts = options
            .idle_sessions
            .div_ceil(options.sessions_per_account.max(1));
        for n in 0..accounts {
            keys.idle
                .push(account(format!("bench-idle-{n}"), None).await?);
        }
    }
    let server = Chatrelay::start(binary, &database.url, &database.path("chatrelay.log")).await?;
    progress(&format!(
        "chatrelay (pid {}) serving REST on {}, gRPC on {}",
        server.pid, server.http, server.grpc
    ));
    let second = if options.second_core {
        let second =
            Chatrelay::start(binary, &database.url, &database.path("chatrelay-2.log")).await?;
        progress(&format!(
            "second core (pid {}) serving REST on {}",
            second.pid, second.http
        ));
        Some(second)
    } else {
        None
    };
    let mut observer = Observer::new(server.pid, options.perf.clone(), options.postgres.is_some());
    if options.postgres.is_some() {
        observer = observer.counting_commits(&database.url).await?;
    }
    let mut suite = Suite {
        options,
        database_url: &database.url,
        server: &server,
        second: second.as_ref(),
        observer,
        wrk: Wrk {
            threads: options.wrk_threads,
            connections: options.connections,
        },
        submit_script: write_script(database, "submit.lua", include_str!("../../lua/submit.lua"))?,
        get_script: write_script(database, "get.lua", include_str!("../../lua/get.lua"))?,
        reference_rps: 0.0,
        lifecycle_rate: None,
        found: Findings::default(),
    };
    let outcome = suite.scenarios(&keys, &receiver).await;
    let found = std::mem::take(&mut suite.found);
    receiver.stop();
    let stopped = server.stop().await;
    let second_stopped = match second {
        Some(second) => second.stop().await,
        None => Ok(()),
    };
    outcome?;
    stopped?;
    second_stopped?;
    Ok(found)
}

struct Suite<'a> {
    options: &'a RunOptions,
    /// chatrelay's `DATABASE_URL`.
    database_url: &'a str,
    server: &'a Chatrelay,
    /// The second core of `--second-core`, where live status is followed.
    second: Option<&'a Chatrelay>,
    observer: Observer,
    wrk: Wrk,
    submit_script: PathBuf,
    get_script: PathBuf,
    reference_rps: f64,
    /// Lifecycles/s of 4a, once it ran.
    lifecycle_rate: Option<f64>,
    found: Findings,
}

/// The performance targets (issue 18), which differ by back end.
struct Targets {
    /// REST submit, as a share of the reference.
    submit: f64,
    /// REST GET by id, as a share of the reference.
    get: f64,
    /// Lifecycles/s with 8 extensions (4a).
    lifecycles: f64,
    /// Dispatch p99 at half of 4a's rate (4b).
    dispatch_p99: Duration,
}

const SQLITE_TARGETS: Targets = Targets {
    submit: 0.30,
    get: 0.50,
    lifecycles: 12_000.0,
    dispatch_p99: Duration::from_millis(5),
};

const POSTGRES_TARGETS: Targets = Targets {
    submit: 0.15,
    get: 0.20,
    lifecycles: 6_000.0,
    dispatch_p99: Duration::from_millis(10),
};

/// Idle extension sessions that must fit in 1 GiB of chatrelay's memory.
const IDLE_SESSIONS_PER_GIB: u64 = 20_000;

impl Suite<'_> {
    fn targets(&self) -> &'static Targets {
        if self.options.postgres.is_some() {
            &POSTGRES_TARGETS
        } else {
            &SQLITE_TARGETS
        }
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs(self.options.warmup)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.options.duration)
    }

    fn runs(&self, scenario: Scenario) -> bool {
        !self.options.skip.contains(&scenario)
    }

    fn conns(&self) -> u32 {
        self.options.connections
    }

    fn vs_reference(&self, per_sec: f64) -> String {
        percent(per_sec / self.reference_rps)
    }

    /// A wrk run after a warm-up run of the same load; with a name, also
    /// where chatrelay's CPU went during the measured run.
    async fn wrk_measured(
        &self,
        name: Option<&str>,
        url: &str,
        script: &Path,
        api_key: &str,
    ) -> anyhow::Result<(WrkReport, Option<Usage>)> {
        if self.options.warmup > 0 {
            self.wrk.run(url, script, api_key, self.warmup()).await?;
        }
        let from = Instant::now();
        let observe = async {
            match name {
                Some(name) => {
                    self.observer
                        .window(name, from, from + self.duration())
                        .await
                }
                None => None,
            }
        };
        let (report, cpu) =
            tokio::join!(self.wrk.run(url, script, api_key, self.duration()), observe);
        Ok((report?, cpu))
    }

    fn add_wrk_row(
        &mut self,
        scenario: String,
        report: &WrkReport,
        cpu: Option<Usage>,
        target: &str,
        met: Option<bool>,
    ) {
        self.progress_wrk(&scenario, report);
        if let Some(note) = report.error_note() {
            self.found.notes.push(format!("{scenario}: {note}"));
        }
        self.add_cpu(&scenario, &cpu, report.requests_per_sec);
        self.found.rows.push(Row {
            throughput: rate(report.requests_per_sec),
            p50: ms(Some(report.p50)),
            p99: ms(Some(report.p99)),
            vs_reference: self.vs_reference(report.requests_per_sec),
            cpu: cpu.map(|cpu| cpu.cell()).unwrap_or_default(),
            target: target.to_string(),
            met,
            scenario,
        });
    }

    /// Records where the CPU went in `scenario`, which served `per_sec`
    /// requests a second.
    fn add_cpu(&mut self, scenario: &str, cpu: &Option<Usage>, per_sec: f64) {
        if let Some(cpu) = cpu {
            let label = scenario.split(['(', ':']).next().unwrap_or(scenario).trim();
            self.found
                .cpu
                .push((label.to_string(), cpu.clone(), per_sec));
        }
    }

    fn progress_wrk(&self, what: &str, report: &WrkReport) {
        progress(&format!(
            "{what}: {} p50 {} p99 {}",
            rate(report.requests_per_sec),
            ms(Some(report.p50)),
            ms(Some(report.p99))
        ));
    }

    fn note_lifecycle(&mut self, what: &str, report: &LifecycleReport) {
        if report.submit_errors > 0 {
            self.found
                .notes
                .push(format!("{what}: {} submits failed", report.submit_errors));
        }
        if report.frame_errors > 0 {
            self.found.notes.push(format!(
                "{what}: the server answered {} results with an error frame",
                report.frame_errors
            ));
        }
        if report.not_dispatched > 0 {
            self.found.notes.push(format!(
                "{what}: {} requests submitted in the measured window had not reached an extension \
                 30 s after the submitters stopped (queued behind the backlog); the dispatch \
                 percentiles cover only those that had",
                thousands(report.not_dispatched)
            ));
        }
    }
}

fn write_script(database: &BenchDatabase, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = database.path(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn print_log_tail(log: &Path) {
    if let Ok(text) = std::fs::read_to_string(log) {
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        eprintln!("last lines of chatrelay's log ({}):", log.display());
        for line in tail.into_iter().rev() {
            eprintln!("  {line}");
        }
    }
}

/// Progress goes to stderr; the table alone goes to stdout.
fn progress(what: &str) {
    eprintln!("chatrelay-bench: {what}");
}
