//! The scenarios, one method each, in the order the suite runs them; each
//! adds its rows (and notes) to the findings.

use std::time::{Duration, Instant};

use super::{progress, Keys, Scenario, Suite, GIB, IDLE_SESSIONS_PER_GIB};
use crate::{
    conversation,
    idle_sessions::IdleSessions,
    lifecycle::{LifecycleLoad, LifecycleReport},
    live::{HeldOpen, LiveLoad},
    observe::Usage,
    reference::{ReferenceServer, RUSQLITE_PREFIX},
    report::{mib, ms, percent, rate, thousands, Row},
    rest::RestClient,
    submit_grpc::GrpcLoad,
    webhooks::{self, Receiver},
};

/// How long the conversation scenario waits for its turns, at most.
const CONVERSATION_LIMIT: Duration = Duration::from_secs(60);

impl Suite<'_> {
    pub(super) async fn scenarios(
        &mut self,
        keys: &Keys,
        receiver: &Receiver,
    ) -> anyhow::Result<()> {
        self.reference().await?;
        let mut rest_rps = None;
        if self.runs(Scenario::Rest) {
            rest_rps = Some(self.rest_submit(keys).await?);
        }
        if self.runs(Scenario::Grpc) {
            self.grpc_submit(keys, rest_rps).await?;
        }
        if self.runs(Scenario::Get) {
            let (id, get_rps) = self.rest_get(keys).await?;
            self.reference_db(keys, &id, get_rps).await?;
        }
        if self.runs(Scenario::Lifecycle) {
            self.lifecycles(keys).await?;
        }
        if self.runs(Scenario::Conversation) {
            self.conversation(keys).await?;
        }
        if self.runs(Scenario::Live) {
            self.live(keys).await?;
        }
        // Webhooks before the idle sessions, so their closing does not overlap.
        if self.runs(Scenario::Webhooks) {
            self.webhooks(keys, receiver).await?;
        }
        if self.runs(Scenario::Idle) {
            self.idle_sessions(keys).await?;
        }
        Ok(())
    }

    /// The physical reference, with the same wrk settings as the REST scenarios.
    async fn reference(&mut self) -> anyhow::Result<()> {
        let reference = ReferenceServer::start(&std::env::current_exe()?, None).await?;
        let url = format!("http://{}/api/chat/submit/", reference.addr);
        let measured = self.wrk_measured(None, &url, &self.submit_script, "").await;
        reference.stop().await;
        let (report, _) = measured?;
        self.progress_wrk("reference", &report);
        self.reference_rps = report.requests_per_sec;
        self.found.rows.push(Row {
            scenario: format!(
                "reference: bare axum handler parses + returns the submit JSON (wrk, {} conns)",
                self.conns()
            ),
            throughput: rate(report.requests_per_sec),
            p50: ms(Some(report.p50)),
            p99: ms(Some(report.p99)),
            vs_reference: "100%".into(),
            ..Row::default()
        });
        Ok(())
    }

    /// (1) REST submit with wrk; returns its requests/s.
    async fn rest_submit(&mut self, keys: &Keys) -> anyhow::Result<f64> {
        let url = format!("http://{}/api/chat/submit/", self.server.http);
        let (report, cpu) = self
            .wrk_measured(Some("1-rest-submit"), &url, &self.submit_script, &keys.rest)
            .await?;
        let scenario = format!(
            "1. REST `POST /api/chat/submit/` (wrk, {} conns)",
            self.conns()
        );
        let target = self.targets().submit;
        let met = report.requests_per_sec / self.reference_rps >= target;
        let target = format!("≥ {:.0}% of reference", target * 100.0);
        self.add_wrk_row(scenario, &report, cpu, &target, Some(met));
        Ok(report.requests_per_sec)
    }

    /// (2) Submit over gRPC directly, with the harness's tonic driver.
    async fn grpc_submit(&mut self, keys: &Keys, rest_rps: Option<f64>) -> anyhow::Result<()> {
        let load = GrpcLoad {
            concurrency: self.conns() as usize,
            channels: self.options.grpc_channels,
            warmup: self.warmup(),
            duration: self.duration(),
        };
        let start = Instant::now();
        let from = start + load.warmup;
        let (report, cpu) = tokio::join!(
            load.run(self.server.grpc, &keys.grpc, start),
            self.observer
                .window("2-grpc-submit", from, from + load.duration)
        );
        let mut report = report?;
        let per_sec = report.calls as f64 / load.duration.as_secs_f64();
        if report.errors > 0 {
            self.found.notes.push(format!(
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
        let scenario = format!(
            "2. gRPC `SubmitMessage` (tonic driver in the harness, {} in flight, {} channels)",
            self.conns(),
            load.channels
        );
        self.add_cpu(&scenario, &cpu, per_sec);
        self.found.rows.push(Row {
            scenario,
            throughput: rate(per_sec),
            p50: ms(p50),
            p99: ms(p99),
            vs_reference: self.vs_reference(per_sec),
            cpu: cpu.map(|cpu| cpu.cell()).unwrap_or_default(),
            target,
            met,
        });
        Ok(())
    }

    /// (3) REST GET of one request, with wrk; returns the request's id and
    /// the GETs/s.
    async fn rest_get(&mut self, keys: &Keys) -> anyhow::Result<(String, f64)> {
        let id = RestClient::new(self.server.http, &keys.get)?
            .submit()
            .await?;
        let url = format!("http://{}/api/chat/requests/{id}/", self.server.http);
        let (report, cpu) = self
            .wrk_measured(Some("3-rest-get"), &url, &self.get_script, &keys.get)
            .await?;
        let scenario = format!(
            "3. REST `GET /api/chat/requests/{{id}}/` (wrk, {} conns)",
            self.conns()
        );
        let target = self.targets().get;
        let met = report.requests_per_sec / self.reference_rps >= target;
        let target = format!("≥ {:.0}% of reference", target * 100.0);
        self.add_wrk_row(scenario, &report, cpu, &target, Some(met));
        Ok((id, report.requests_per_sec))
    }

    /// (ref-db) The same GET, of the same request with the same key, from
    /// the database reference: plain sqlx on chatrelay's database, no gRPC
    /// hop. What chatrelay's GET (3) is of it is the target column.
    async fn reference_db(&mut self, keys: &Keys, id: &str, get_rps: f64) -> anyhow::Result<()> {
        let reference =
            ReferenceServer::start(&std::env::current_exe()?, Some(self.database_url)).await?;
        let url = format!("http://{}/api/chat/requests/{id}/", reference.addr);
        let sqlx = self
            .wrk_measured(None, &url, &self.get_script, &keys.get)
            .await;
        let rusqlite = if self.database_url.starts_with("sqlite:") {
            let url = format!(
                "http://{}{RUSQLITE_PREFIX}/api/chat/requests/{id}/",
                reference.addr
            );
            Some(
                self.wrk_measured(None, &url, &self.get_script, &keys.get)
                    .await,
            )
        } else {
            None
        };
        reference.stop().await;
        let (report, _) = sqlx?;
        self.add_wrk_row(
            format!(
                "ref-db: bare axum + plain sqlx, the lookup of 3 on the same database (wrk, {} conns)",
                self.conns()
            ),
            &report,
            None,
            &format!("3 is {} of this", percent(get_rps / report.requests_per_sec)),
            None,
        );
        if let Some(measured) = rusqlite {
            let (report, _) = measured?;
            self.add_wrk_row(
                format!(
                    "ref-rusqlite: bare axum + the lookup of 3 read as chatrelay reads it \
                     (rusqlite on the calling task; wrk, {} conns)",
                    self.conns()
                ),
                &report,
                None,
                &format!(
                    "3 is {} of this",
                    percent(get_rps / report.requests_per_sec)
                ),
                None,
            );
        }
        Ok(())
    }

    /// One long conversation (8): the chat's turns one after another,
    /// each a claim beside the chat's growing history.
    async fn conversation(&mut self, keys: &Keys) -> anyhow::Result<()> {
        let requests = self.options.conversation_requests;
        let mut report = conversation::run(
            self.server.http,
            &keys.conversation,
            requests,
            self.conns() as usize,
            CONVERSATION_LIMIT,
        )
        .await?;
        let (p50, p99) = (report.gap.percentile(50.0), report.gap.percentile(99.0));
        progress(&format!(
            "conversation: {} of {} answered, {} turns; gap p50 {} p99 {}",
            thousands(report.answered),
            thousands(requests as u64),
            rate(report.turns_per_sec),
            ms(p50),
            ms(p99)
        ));
        if report.answered < requests as u64 {
            self.found.notes.push(format!(
                "8: {} of {} requests answered within {} s",
                thousands(report.answered),
                thousands(requests as u64),
                CONVERSATION_LIMIT.as_secs()
            ));
        }
        if report.submit_errors > 0 || report.frame_errors > 0 {
            self.found.notes.push(format!(
                "8: {} submits failed, {} results answered with an error frame",
                report.submit_errors, report.frame_errors
            ));
        }
        self.found.rows.push(Row {
            scenario: format!(
                "8. one conversation: {} requests queued in one chat, answered in turn by one \
                 extension; throughput = turns/s, p50/p99 = one `new_request` → the next",
                thousands(requests as u64)
            ),
            throughput: rate(report.turns_per_sec),
            p50: ms(p50),
            p99: ms(p99),
            ..Default::default()
        });
        Ok(())
    }

    /// (4) Full lifecycles, flat out and then paced at half that rate.
    async fn lifecycles(&mut self, keys: &Keys) -> anyhow::Result<()> {
        let (extensions, conns) = (self.options.extensions, self.conns());
        let full = LifecycleLoad {
            extensions,
            submitters: conns as usize,
            pace: None,
            warmup: self.warmup(),
            duration: self.duration(),
        };
        let (mut report, cpu) = self
            .lifecycle_run(&full, &keys.lifecycle, "4a-lifecycles")
            .await?;
        let (p50, p99) = (
            report.dispatch.percentile(50.0),
            report.dispatch.percentile(99.0),
        );
        let full_rate = report.completed_per_sec;
        self.lifecycle_rate = Some(full_rate);
        progress(&format!(
            "lifecycles flat out: {} completed, {} submitted; dispatch p50 {} p99 {}",
            rate(full_rate),
            rate(report.submitted_per_sec),
            ms(p50),
            ms(p99)
        ));
        self.note_lifecycle("4a", &report);
        let scenario = format!(
            "4a. lifecycles: {extensions} extensions answer at once, {conns} REST submitters flat out \
             ({} submitted); p50/p99 = dispatch latency, submit → `new_request`",
            rate(report.submitted_per_sec)
        );
        self.add_cpu(&scenario, &cpu, full_rate);
        self.found.rows.push(Row {
            scenario,
            throughput: rate(full_rate),
            p50: ms(p50),
            p99: ms(p99),
            vs_reference: self.vs_reference(full_rate),
            cpu: cpu.map(|cpu| cpu.cell()).unwrap_or_default(),
            target: format!(
                "≥ {} lifecycles/s",
                thousands(self.targets().lifecycles as u64)
            ),
            met: Some(full_rate >= self.targets().lifecycles),
        });

        // The target's rate: dispatch p99 at half of the 3,000/s lifecycle
        // target, and, stricter, at half of what 4a reached.
        let half_rate = (full_rate / 2.0).max(1.0);
        if full_rate < 1_500.0 {
            self.found.notes.push(format!(
                "4b ran at half of the rate 4a reached ({}), less than half of the 3,000/s \
                 target: its dispatch target counts as met only at ≥ 1,500/s",
                rate(half_rate)
            ));
        }
        // 4b's limit is issue 18's; 4c keeps the first target (10 ms at
        // 1,500/s), which both back ends are held to.
        let paced = [
            (
                "4b",
                "half of 4a",
                half_rate,
                self.targets().dispatch_p99,
                &keys.lifecycle_half,
            ),
            (
                "4c",
                "half of the 3,000/s target",
                1_500.0,
                Duration::from_millis(10),
                &keys.lifecycle_floor,
            ),
        ];
        for (label, what, pace, limit, key) in paced {
            let load = LifecycleLoad {
                pace: Some(pace),
                submitters: (conns as usize * 2).max(64),
                ..full
            };
            self.paced_lifecycles(&load, key, label, what, limit)
                .await?;
        }
        Ok(())
    }

    /// (4b, 4c) Lifecycles at a fixed submit rate: the dispatch latency.
    async fn paced_lifecycles(
        &mut self,
        load: &LifecycleLoad,
        key: &str,
        label: &str,
        what: &str,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let pace = load.pace.unwrap_or_default();
        let (mut report, cpu) = self
            .lifecycle_run(load, key, &format!("{label}-lifecycles-paced"))
            .await?;
        let (p50, p99) = (
            report.dispatch.percentile(50.0),
            report.dispatch.percentile(99.0),
        );
        progress(&format!(
            "lifecycles paced at {}: {} completed; dispatch p50 {} p99 {}",
            rate(pace),
            rate(report.completed_per_sec),
            ms(p50),
            ms(p99)
        ));
        self.note_lifecycle(label, &report);
        let scenario = format!(
            "{label}. lifecycles paced at {what} ({} submitted); p50/p99 = dispatch latency",
            rate(report.submitted_per_sec)
        );
        self.add_cpu(&scenario, &cpu, report.completed_per_sec);
        self.found.rows.push(Row {
            scenario,
            throughput: rate(report.completed_per_sec),
            p50: ms(p50),
            p99: ms(p99),
            vs_reference: self.vs_reference(report.completed_per_sec),
            cpu: cpu.map(|cpu| cpu.cell()).unwrap_or_default(),
            target: format!("dispatch p99 ≤ {} ms at ≥ 1,500/s", limit.as_millis()),
            met: p99.map(|p99| p99 <= limit && pace >= 1_500.0),
        });
        Ok(())
    }

    async fn lifecycle_run(
        &self,
        load: &LifecycleLoad,
        api_key: &str,
        name: &str,
    ) -> anyhow::Result<(LifecycleReport, Option<Usage>)> {
        let start = Instant::now();
        let from = start + load.warmup;
        let (report, cpu) = tokio::join!(
            load.run(self.server.http, api_key, start),
            self.observer.window(name, from, from + load.duration)
        );
        Ok((report?, cpu))
    }

    /// (7) Live status: the extension's answer → the SSE event, and → the
    /// long-poll's answer, at half the lifecycle rate.
    async fn live(&mut self, keys: &Keys) -> anyhow::Result<()> {
        let pace = self
            .options
            .live_rate
            .or(self.lifecycle_rate.map(|rate| (rate / 2.0).max(1.0)))
            .unwrap_or(1_500.0);
        let load = LiveLoad {
            extensions: self.options.extensions,
            submitters: (self.conns() as usize * 2).max(64),
            pace,
            warmup: self.warmup(),
            duration: self.duration(),
        };
        let watched = self.second.unwrap_or(self.server).http;
        let start = Instant::now();
        let from = start + load.warmup;
        let (report, cpu) = tokio::join!(
            load.run(self.server.http, watched, &keys.live, start),
            self.observer.window("7-live", from, from + load.duration)
        );
        let mut report = report?;
        let limit = if self.options.postgres.is_some() {
            // The PostgreSQL figure is across two cores.
            Duration::from_millis(50)
        } else {
            Duration::from_millis(10)
        };
        let across = if self.second.is_some() {
            ", followed on a second core"
        } else {
            ""
        };
        for (label, what, latencies) in [
            ("7a", "SSE `done` event", &mut report.to_event),
            (
                "7b",
                "long-poll (`?wait=60`) answer",
                &mut report.to_long_poll,
            ),
        ] {
            let (p50, p99) = (latencies.percentile(50.0), latencies.percentile(99.0));
            progress(&format!(
                "live {label}: {} samples at {}; answer → {what} p50 {} p99 {}",
                latencies.len(),
                rate(pace),
                ms(p50),
                ms(p99)
            ));
            let scenario = format!(
                "{label}. live status paced at {} ({} submitted), one SSE stream and a long-poll per request{across}; p50/p99 = extension's `response` frame → {what}",
                rate(pace),
                rate(report.submitted_per_sec)
            );
            self.add_cpu(&scenario, &cpu, report.submitted_per_sec);
            self.found.rows.push(Row {
                scenario,
                throughput: rate(report.submitted_per_sec),
                p50: ms(p50),
                p99: ms(p99),
                vs_reference: self.vs_reference(report.submitted_per_sec),
                cpu: cpu.clone().map(|cpu| cpu.cell()).unwrap_or_default(),
                target: format!("p99 ≤ {} ms", limit.as_millis()),
                met: p99.map(|p99| p99 <= limit),
            });
        }
        self.live_held(keys).await?;
        if report.missing_events + report.missing_polls + report.errors > 0 {
            self.found.notes.push(format!(
                "7: {} requests without a `done` event, {} long-polls not answered `done`, {} submit or long-poll errors",
                report.missing_events, report.missing_polls, report.errors
            ));
        }
        Ok(())
    }

    /// (7c, 7d) Memory and submit throughput with open SSE streams and
    /// pending long-polls.
    async fn live_held(&mut self, keys: &Keys) -> anyhow::Result<()> {
        let count = self.options.live_held;
        let url = format!("http://{}/api/chat/submit/", self.server.http);
        let (without, _) = self
            .wrk_measured(None, &url, &self.submit_script, &keys.rest)
            .await?;
        // Requests nobody answers, for the long-polls to wait on.
        let client = RestClient::new(self.server.http, &keys.live_held)?;
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(client.submit().await?);
        }
        let rss_before = self.settled_rss().await?;
        let held =
            HeldOpen::open(self.server.http, &keys.live, count, &keys.live_held, &ids).await?;
        let rss_after = self.settled_rss().await?;
        progress(&format!(
            "{} SSE streams ({} failed) and {} long-polls open; RSS {} → {}",
            held.streams,
            held.failed,
            held.polls,
            mib(rss_before),
            mib(rss_after)
        ));
        let measured = self
            .wrk_measured(
                Some("7d-rest-submit-live"),
                &url,
                &self.submit_script,
                &keys.rest,
            )
            .await;
        let (streams, polls, failed) = (held.streams, held.polls, held.failed);
        held.close().await;
        let (with, cpu_with) = measured?;
        let grown = rss_after.saturating_sub(rss_before);
        self.found.rows.push(Row {
            scenario: format!(
                "7c. {} open SSE streams and {} pending long-polls: RSS of chatrelay before → with them",
                thousands(streams as u64),
                thousands(polls as u64)
            ),
            throughput: format!("{} → {}", mib(rss_before), mib(rss_after)),
            target: "< 100 MiB more".into(),
            met: Some(grown < 100 * 1024 * 1024 && streams == count && failed == 0),
            ..Row::default()
        });
        let ratio = with.requests_per_sec / without.requests_per_sec.max(1.0);
        let scenario = format!(
            "7d. REST submit with them open (wrk, {} conns; {} without them)",
            self.conns(),
            rate(without.requests_per_sec)
        );
        let target = format!("throughput within the noise (is {ratio:.2}× without)");
        self.add_wrk_row(scenario, &with, cpu_with, &target, Some(ratio >= 0.9));
        Ok(())
    }

    /// (6) Webhook deliveries to the harness's receiver.
    async fn webhooks(&mut self, keys: &Keys, receiver: &Receiver) -> anyhow::Result<()> {
        let requests = self.options.webhook_requests;
        let mut report = webhooks::run(
            self.server.http,
            &self.observer,
            receiver,
            &keys.webhooks,
            requests,
            self.options.extensions,
            self.conns() as usize,
        )
        .await?;
        let (p50, p99) = (
            report.latency.percentile(50.0),
            report.latency.percentile(99.0),
        );
        progress(&format!(
            "webhooks: {} of {} delivered, {} ({} POSTs); the last {:.1} s after the first submit; \
             answer → webhook p50 {} p99 {}",
            report.delivered,
            report.requests,
            rate(report.per_sec),
            report.posts,
            report.total.as_secs_f64(),
            ms(p50),
            ms(p99)
        ));
        if report.delivered < report.requests {
            self.found.notes.push(format!(
                "webhooks: only {} of {} webhooks arrived within the deadline",
                report.delivered, report.requests
            ));
        }
        let scenario = format!(
            "6. webhook deliveries to a local receiver ({} requests completed by {} extensions; \
             all delivered {:.1} s after the first submit); p50/p99 = extension's answer → webhook",
            thousands(requests as u64),
            self.options.extensions,
            report.total.as_secs_f64()
        );
        self.add_cpu(&scenario, &report.cpu, report.per_sec);
        self.found.rows.push(Row {
            scenario,
            throughput: rate(report.per_sec),
            p50: ms(p50),
            p99: ms(p99),
            vs_reference: self.vs_reference(report.per_sec),
            cpu: report.cpu.map(|cpu| cpu.cell()).unwrap_or_default(),
            ..Row::default()
        });
        Ok(())
    }

    /// (5) Idle extension sessions: memory, and submit latency with them open.
    async fn idle_sessions(&mut self, keys: &Keys) -> anyhow::Result<()> {
        let count = self.options.idle_sessions;
        let url = format!("http://{}/api/chat/submit/", self.server.http);
        let (without, cpu_without) = self
            .wrk_measured(
                Some("5b-rest-submit"),
                &url,
                &self.submit_script,
                &keys.rest,
            )
            .await?;
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
            .wrk_measured(
                Some("5c-rest-submit-idle"),
                &url,
                &self.submit_script,
                &keys.rest,
            )
            .await;
        let ended = sessions.ended();
        let (connected, failed) = (sessions.connected, sessions.failed);
        let first_error = sessions.first_error.clone();
        let connect_secs = sessions.connect_time.as_secs_f64();
        sessions.close().await;
        let (with, cpu_with) = measured?;
        if failed > 0 {
            self.found.notes.push(format!(
                "5: {failed} of {count} idle sessions failed to open, first: {}",
                first_error.as_deref().unwrap_or("?")
            ));
        }
        if ended > 0 {
            self.found.notes.push(format!(
                "5: the server ended {ended} idle sessions while they were held"
            ));
        }

        let per_session = rss_after.saturating_sub(rss_before) as f64 / connected.max(1) as f64;
        self.found.rows.push(Row {
            scenario: format!(
                "5a. {} idle extension sessions ({} accounts, opened in {:.1} s): \
                 RSS of chatrelay (edge + core) before → with them",
                thousands(connected),
                keys.idle.len(),
                connect_secs
            ),
            throughput: format!(
                "{} → {} ({:.1} KiB/session, {} per GiB)",
                mib(rss_before),
                mib(rss_after),
                per_session / 1024.0,
                thousands((GIB as f64 / per_session.max(1.0)) as u64)
            ),
            target: format!("≥ {} sessions per GiB", thousands(IDLE_SESSIONS_PER_GIB)),
            met: Some(
                per_session * IDLE_SESSIONS_PER_GIB as f64 <= GIB as f64
                    && connected as usize == count,
            ),
            ..Row::default()
        });
        let scenario = format!(
            "5b. REST submit, no idle sessions (wrk, {} conns)",
            self.conns()
        );
        self.add_wrk_row(scenario, &without, cpu_without, "", None);
        let p50_ratio = with.p50.as_secs_f64() / without.p50.as_secs_f64();
        let p99_ratio = with.p99.as_secs_f64() / without.p99.as_secs_f64();
        let scenario = format!(
            "5c. REST submit with {} idle sessions connected",
            thousands(connected)
        );
        let target = format!("p50, p99 ≤ 1.25× 5b (are {p50_ratio:.2}×, {p99_ratio:.2}×)");
        // No answer at all (every connection slot taken) is no pass.
        let met = with.requests_per_sec > 0.0 && p50_ratio <= 1.25 && p99_ratio <= 1.25;
        self.add_wrk_row(scenario, &with, cpu_with, &target, Some(met));
        Ok(())
    }

    /// Resident memory once it stops growing (the sessions settle in).
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
}
