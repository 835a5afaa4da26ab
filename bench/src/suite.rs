//! The suite: one temporary database, one chatrelay, every scenario in turn
//! (each with its own account, so one scenario's backlog never reaches
//! another's extensions), then the table.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    database::BenchDatabase,
    idle_sessions::IdleSessions,
    lifecycle::LifecycleLoad,
    reference::ReferenceServer,
    report::{self, cores, mib, ms, percent, rate, thousands, Machine, Row},
    rest::RestClient,
    server::{self, Chatrelay},
    submit_grpc::GrpcLoad,
    webhooks::{self, Receiver},
    wrk::{Wrk, WrkReport},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Rest,
    Grpc,
    Get,
    Lifecycle,
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

    /// Requests completed in the webhook scenario.
    #[arg(long, default_value_t = 5_000)]
    pub webhook_requests: usize,

    /// Scenarios to leave out (comma-separated); the reference always runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Scenario>,
}

/// One API key per scenario.
struct Keys {
    rest: String,
    grpc: String,
    get: String,
    lifecycle: String,
    lifecycle_half: String,
    webhooks: String,
    /// As many accounts as the idle sessions need.
    idle: Vec<String>,
}

const GIB: u64 = 1 << 30;

pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let machine = Machine::detect();
    let binary = options
        .chatrelay
        .clone()
        .unwrap_or_else(server::default_binary);
    let database = BenchDatabase::create(options.postgres.as_deref()).await?;
    progress(&format!(
        "{} at {}; scratch directory {}",
        database.description,
        database.url,
        database.dir().display()
    ));
    let outcome = run_on(&options, &binary, &database).await;
    if outcome.is_err() {
        let log = database.path("chatrelay.log");
        if let Ok(text) = std::fs::read_to_string(&log) {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!("last lines of chatrelay's log:");
            for line in tail.into_iter().rev() {
                eprintln!("  {line}");
            }
        }
    }
    let description = database.description.clone();
    let removed = database.remove().await;
    let (rows, notes) = outcome?;
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
        "- chatrelay: `{} serve`, default settings",
        binary.display()
    );
    println!();
    print!("{}", report::table(&rows));
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- {note}");
        }
    }
    Ok(())
}

async fn run_on(
    options: &RunOptions,
    binary: &Path,
    database: &BenchDatabase,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let receiver = Receiver::start().await?;
    progress("creating accounts");
    let account = |name: &'static str, webhook: Option<String>| async move {
        server::create_account(binary, &database.url, name, webhook.as_deref()).await
    };
    let keys = Keys {
        rest: account("bench-rest", None).await?,
        grpc: account("bench-grpc", None).await?,
        get: account("bench-get", None).await?,
        lifecycle: account("bench-lifecycle", None).await?,
        lifecycle_half: account("bench-lifecycle-half", None).await?,
        webhooks: account("bench-webhooks", Some(receiver.url())).await?,
        idle: Vec::new(),
    };
    let mut keys = keys;
    if !options.skip.contains(&Scenario::Idle) {
        let per_account = options.sessions_per_account.max(1);
        for n in 0..options.idle_sessions.div_ceil(per_account) {
            let name = format!("bench-idle-{n}");
            let key = server::create_account(binary, &database.url, &name, None).await?;
            keys.idle.push(key);
        }
    }
    let server = Chatrelay::start(binary, &database.url, &database.path("chatrelay.log")).await?;
    progress(&format!(
        "chatrelay (pid {}) serving REST on {}, gRPC on {}",
        server.pid, server.http, server.grpc
    ));
    let mut suite = Suite {
        options,
        server: &server,
        wrk: Wrk {
            threads: options.wrk_threads,
            connections: options.connections,
        },
        submit_script: write_script(database, "submit.lua", include_str!("../lua/submit.lua"))?,
        get_script: write_script(database, "get.lua", include_str!("../lua/get.lua"))?,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let outcome = suite.scenarios(&keys, &receiver).await;
    let Suite { rows, notes, .. } = suite;
    receiver.stop();
    let stopped = server.stop().await;
    outcome?;
    stopped?;
    Ok((rows, notes))
}

struct Suite<'a> {
    options: &'a RunOptions,
    server: &'a Chatrelay,
    wrk: Wrk,
    submit_script: PathBuf,
    get_script: PathBuf,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Suite<'_> {
    fn warmup(&self) -> Duration {
        Duration::from_secs(self.options.warmup)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.options.duration)
    }

    fn runs(&self, scenario: Scenario) -> bool {
        !self.options.skip.contains(&scenario)
    }

    async fn scenarios(&mut self, keys: &Keys, receiver: &Receiver) -> anyhow::Result<()> {
        let http = self.server.http;
        let conns = self.options.connections;

        // The physical reference, measured first, with the same wrk settings.
        let reference_rps = {
            let reference = ReferenceServer::start(&std::env::current_exe()?).await?;
            let url = format!("http://{}/api/chat/submit/", reference.addr);
            let measured = self
                .wrk_with_warmup(&url, &self.submit_script, "", None)
                .await;
            reference.stop().await;
            let (report, _) = measured?;
            self.progress_wrk("reference", &report);
            self.rows.push(Row {
                scenario: format!(
                    "reference: bare axum handler parses + returns the submit JSON (wrk, {conns} conns)"
                ),
                throughput: rate(report.requests_per_sec),
                p50: ms(Some(report.p50)),
                p99: ms(Some(report.p99)),
                vs_reference: "100%".into(),
                ..Row::default()
            });
            report.requests_per_sec
        };
        let vs_reference = |per_sec: f64| percent(per_sec / reference_rps);

        // (1) REST submit.
        let mut rest_rps = None;
        if self.runs(Scenario::Rest) {
            let url = format!("http://{http}/api/chat/submit/");
            let (report, cpu) = self
                .wrk_with_warmup(&url, &self.submit_script, &keys.rest, Some(self.server))
                .await?;
            self.progress_wrk("REST submit", &report);
            self.note_wrk_errors("REST submit", &report);
            let ratio = report.requests_per_sec / reference_rps;
            rest_rps = Some(report.requests_per_sec);
            self.rows.push(Row {
                scenario: format!("1. REST `POST /api/chat/submit/` (wrk, {conns} conns)"),
                throughput: rate(report.requests_per_sec),
                p50: ms(Some(report.p50)),
                p99: ms(Some(report.p99)),
                vs_reference: vs_reference(report.requests_per_sec),
                server_cpu: cores(cpu),
                target: "≥ 15% of reference".into(),
                met: Some(ratio >= 0.15),
            });
        }

        // (2) Submit over gRPC directly.
        if self.runs(Scenario::Grpc) {
            let load = GrpcLoad {
                concurrency: conns as usize,
                channels: self.options.grpc_channels,
                warmup: self.warmup(),
                duration: self.duration(),
            };
            let start = Instant::now();
            let (report, cpu) = tokio::join!(
                load.run(self.server.grpc, &keys.grpc, start),
                self.server
                    .cpu_cores_between(start + load.warmup, start + load.warmup + load.duration)
            );
            let mut report = report?;
            let per_sec = report.calls as f64 / load.duration.as_secs_f64();
            if report.errors > 0 {
                self.notes.push(format!(
                    "gRPC submit: {} of {} calls failed, first: {}",
                    report.errors,
                    report.calls + report.errors,
                    report.first_error.as_deref().unwrap_or("?")
                ));
            }
            let (p50, p99) = (
                report.latencies.percentile(50.0),
                report.latencies.percentile(99.0),
            );
            progress(&format!(
                "gRPC submit: {} p50 {} p99 {}",
                rate(per_sec),
                ms(p50),
                ms(p99)
            ));
            let (target, met) = match rest_rps {
                Some(rest) => (
                    format!("REST ≥ 70% of gRPC (is {})", percent(rest / per_sec)),
                    Some(rest / per_sec >= 0.70),
                ),
                None => ("REST ≥ 70% of gRPC".into(), None),
            };
            self.rows.push(Row {
                scenario: format!(
                    "2. gRPC `SubmitMessage` (tonic driver, {conns} in flight, {} channels)",
                    load.channels
                ),
                throughput: rate(per_sec),
                p50: ms(p50),
                p99: ms(p99),
                vs_reference: vs_reference(per_sec),
                server_cpu: cores(cpu),
                target,
                met,
            });
        }

        // (3) REST GET of one request.
        if self.runs(Scenario::Get) {
            let id = RestClient::new(http, &keys.get)?.submit().await?;
            let url = format!("http://{http}/api/chat/requests/{id}/");
            let (report, cpu) = self
                .wrk_with_warmup(&url, &self.get_script, &keys.get, Some(self.server))
                .await?;
            self.progress_wrk("REST GET", &report);
            self.note_wrk_errors("REST GET", &report);
            let ratio = report.requests_per_sec / reference_rps;
            self.rows.push(Row {
                scenario: format!("3. REST `GET /api/chat/requests/{{id}}/` (wrk, {conns} conns)"),
                throughput: rate(report.requests_per_sec),
                p50: ms(Some(report.p50)),
                p99: ms(Some(report.p99)),
                vs_reference: vs_reference(report.requests_per_sec),
                server_cpu: cores(cpu),
                target: "≥ 25% of reference".into(),
                met: Some(ratio >= 0.25),
            });
        }

        // (4) Full lifecycles, flat out and then at half that rate.
        if self.runs(Scenario::Lifecycle) {
            let extensions = self.options.extensions;
            let full = LifecycleLoad {
                extensions,
                submitters: conns as usize,
                pace: None,
                warmup: self.warmup(),
                duration: self.duration(),
            };
            let mut report = full.run(self.server, &keys.lifecycle).await?;
            let (p50, p99) = (
                report.dispatch.percentile(50.0),
                report.dispatch.percentile(99.0),
            );
            progress(&format!(
                "lifecycles flat out: {} completed, {} submitted; dispatch p50 {} p99 {}",
                rate(report.completed_per_sec),
                rate(report.submitted_per_sec),
                ms(p50),
                ms(p99)
            ));
            self.note_lifecycle("lifecycles flat out", &report);
            let full_rate = report.completed_per_sec;
            self.rows.push(Row {
                scenario: format!(
                    "4a. lifecycles: {extensions} extensions answer at once, {conns} REST submitters flat out \
                     (submitted {}); latency = dispatch, submit → `new_request`",
                    rate(report.submitted_per_sec)
                ),
                throughput: rate(full_rate),
                p50: ms(p50),
                p99: ms(p99),
                vs_reference: vs_reference(full_rate),
                server_cpu: cores(report.server_cpu),
                target: "≥ 3,000 lifecycles/s".into(),
                met: Some(full_rate >= 3_000.0),
            });

            let half_rate = (full_rate / 2.0).max(1.0);
            let half = LifecycleLoad {
                pace: Some(half_rate),
                submitters: (conns as usize * 2).max(64),
                ..full
            };
            let mut report = half.run(self.server, &keys.lifecycle_half).await?;
            let (p50, p99) = (
                report.dispatch.percentile(50.0),
                report.dispatch.percentile(99.0),
            );
            progress(&format!(
                "lifecycles paced at {}: {} completed; dispatch p50 {} p99 {}",
                rate(half_rate),
                rate(report.completed_per_sec),
                ms(p50),
                ms(p99)
            ));
            self.note_lifecycle("lifecycles at half rate", &report);
            self.rows.push(Row {
                scenario: format!(
                    "4b. lifecycles paced at half of 4a ({} submitted); latency = dispatch",
                    rate(report.submitted_per_sec)
                ),
                throughput: rate(report.completed_per_sec),
                p50: ms(p50),
                p99: ms(p99),
                vs_reference: vs_reference(report.completed_per_sec),
                server_cpu: cores(report.server_cpu),
                target: "dispatch p99 ≤ 10 ms".into(),
                met: p99.map(|p99| p99 <= Duration::from_millis(10) && full_rate >= 3_000.0 / 2.0),
            });
            if full_rate < 1_500.0 {
                self.notes.push(format!(
                    "4b ran at half of the measured 4a rate ({}), below half of the 3,000/s target, \
                     so its dispatch target counts as not met",
                    rate(half_rate)
                ));
            }
        }

        // (6) Webhooks, before the idle sessions so their closing does not overlap.
        if self.runs(Scenario::Webhooks) {
            let requests = self.options.webhook_requests;
            let report = webhooks::run(
                self.server,
                receiver,
                &keys.webhooks,
                requests,
                self.options.extensions,
                conns as usize,
            )
            .await?;
            progress(&format!(
                "webhooks: {} of {} delivered, {} ({} POSTs); last one {:.1} s after the first submit",
                report.delivered,
                report.requests,
                rate(report.per_sec),
                report.posts,
                report.total.as_secs_f64()
            ));
            if report.delivered < report.requests {
                self.notes.push(format!(
                    "webhooks: only {} of {} webhooks arrived within the deadline",
                    report.delivered, report.requests
                ));
            }
            self.rows.push(Row {
                scenario: format!(
                    "6. webhook deliveries to a local receiver ({} requests completed by {} extensions; \
                     all delivered {:.1} s after the first submit)",
                    thousands(requests as u64),
                    self.options.extensions,
                    report.total.as_secs_f64()
                ),
                throughput: rate(report.per_sec),
                vs_reference: vs_reference(report.per_sec),
                server_cpu: cores(report.server_cpu),
                ..Row::default()
            });
        }

        // (5) Idle extension sessions: memory, and submit latency with them open.
        if self.runs(Scenario::Idle) {
            self.idle_sessions(keys, &vs_reference).await?;
        }
        Ok(())
    }

    async fn idle_sessions(
        &mut self,
        keys: &Keys,
        vs_reference: &dyn Fn(f64) -> String,
    ) -> anyhow::Result<()> {
        let count = self.options.idle_sessions;
        let url = format!("http://{}/api/chat/submit/", self.server.http);
        let (without, cpu_without) = self
            .wrk_with_warmup(&url, &self.submit_script, &keys.rest, Some(self.server))
            .await?;
        self.progress_wrk("REST submit, no idle sessions", &without);
        let rss_before = self.server.rss_bytes()?;
        let per_account = self.options.sessions_per_account.max(1);
        let sessions = IdleSessions::open(self.server.http, &keys.idle, per_account, count).await;
        let rss_after = self.settled_rss().await?;
        progress(&format!(
            "{} idle sessions open ({} failed) in {:.1} s; RSS {} → {}",
            sessions.connected,
            sessions.failed,
            sessions.connect_time.as_secs_f64(),
            mib(rss_before),
            mib(rss_after)
        ));
        let measured = self
            .wrk_with_warmup(&url, &self.submit_script, &keys.rest, Some(self.server))
            .await;
        let ended = sessions.ended();
        let (connected, failed, first_error) = (
            sessions.connected,
            sessions.failed,
            sessions.first_error.clone(),
        );
        let connect_secs = sessions.connect_time.as_secs_f64();
        sessions.close().await;
        let (with, cpu_with) = measured?;
        self.progress_wrk("REST submit, idle sessions open", &with);
        if failed > 0 {
            self.notes.push(format!(
                "idle sessions: {failed} of {count} failed to open, first: {}",
                first_error.as_deref().unwrap_or("?")
            ));
        }
        if ended > 0 {
            self.notes.push(format!(
                "idle sessions: the server ended {ended} of them while they were held"
            ));
        }
        self.note_wrk_errors("REST submit with idle sessions", &with);

        let per_session = rss_after.saturating_sub(rss_before) as f64 / connected.max(1) as f64;
        self.rows.push(Row {
            scenario: format!(
                "5a. {} idle extension sessions held ({} accounts, opened in {:.1} s); \
                 RSS of chatrelay (edge + core) before → with them",
                thousands(connected),
                keys.idle.len(),
                connect_secs
            ),
            throughput: format!(
                "{} → {} ({:.1} KiB/session)",
                mib(rss_before),
                mib(rss_after),
                per_session / 1024.0
            ),
            target: format!("≤ 1 GiB RSS with {} sessions", thousands(count as u64)),
            met: Some(rss_after <= GIB && connected as usize == count),
            ..Row::default()
        });
        self.rows.push(Row {
            scenario: format!(
                "5b. REST submit, no idle sessions (wrk, {} conns)",
                self.options.connections
            ),
            throughput: rate(without.requests_per_sec),
            p50: ms(Some(without.p50)),
            p99: ms(Some(without.p99)),
            vs_reference: vs_reference(without.requests_per_sec),
            server_cpu: cores(cpu_without),
            ..Row::default()
        });
        let p50_ratio = with.p50.as_secs_f64() / without.p50.as_secs_f64();
        let p99_ratio = with.p99.as_secs_f64() / without.p99.as_secs_f64();
        self.rows.push(Row {
            scenario: format!(
                "5c. REST submit with {} idle sessions connected",
                thousands(connected)
            ),
            throughput: rate(with.requests_per_sec),
            p50: ms(Some(with.p50)),
            p99: ms(Some(with.p99)),
            vs_reference: vs_reference(with.requests_per_sec),
            server_cpu: cores(cpu_with),
            target: format!("p50, p99 ≤ 1.25× 5b (are {p50_ratio:.2}×, {p99_ratio:.2}×)"),
            met: Some(p50_ratio <= 1.25 && p99_ratio <= 1.25),
        });
        Ok(())
    }

    /// Resident memory once it stops growing (sessions settle in the core).
    async fn settled_rss(&self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = self.server.rss_bytes()?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.server.rss_bytes()?;
            if now.abs_diff(last) * 200 < last || Instant::now() >= deadline {
                return Ok(now);
            }
            last = now;
        }
    }

    /// A wrk run after a warm-up run of the same load; with `server`, also
    /// the cores chatrelay used during the measured run.
    async fn wrk_with_warmup(
        &self,
        url: &str,
        script: &Path,
        api_key: &str,
        server: Option<&Chatrelay>,
    ) -> anyhow::Result<(WrkReport, Option<f64>)> {
        if self.options.warmup > 0 {
            self.wrk.run(url, script, api_key, self.warmup()).await?;
        }
        let cpu_before = server.and_then(|server| server.cpu_seconds().ok());
        let started = Instant::now();
        let report = self.wrk.run(url, script, api_key, self.duration()).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = server
            .and_then(|server| server.cpu_seconds().ok())
            .zip(cpu_before)
            .map(|(after, before)| (after - before) / elapsed);
        Ok((report, cpu))
    }

    fn progress_wrk(&self, what: &str, report: &WrkReport) {
        progress(&format!(
            "{what}: {} p50 {} p99 {}",
            rate(report.requests_per_sec),
            ms(Some(report.p50)),
            ms(Some(report.p99))
        ));
    }

    fn note_wrk_errors(&mut self, what: &str, report: &WrkReport) {
        if let Some(note) = report.error_note() {
            self.notes.push(format!("{what}: {note}"));
        }
    }

    fn note_lifecycle(&mut self, what: &str, report: &crate::lifecycle::LifecycleReport) {
        if report.submit_errors > 0 {
            self.notes
                .push(format!("{what}: {} submits failed", report.submit_errors));
        }
        if report.frame_errors > 0 {
            self.notes.push(format!(
                "{what}: the server sent {} error frames in answer to results",
                report.frame_errors
            ));
        }
        if report.not_dispatched > 0 {
            self.notes.push(format!(
                "{what}: {} requests submitted in the measured window had not reached an extension \
                 2 s after the submitters stopped (queued behind the backlog); dispatch percentiles \
                 cover only those that had",
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

/// Progress goes to stderr; the table alone goes to stdout.
fn progress(what: &str) {
    eprintln!("chatrelay-bench: {what}");
}
