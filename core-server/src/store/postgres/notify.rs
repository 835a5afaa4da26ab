//! Cross-core wake-ups on PostgreSQL: events are published with `pg_notify`
//! inside the transaction that causes them (so they are sent on commit and
//! only then), and every core listens and wakes its own sessions. On SQLite
//! there is one core per database file, and local wake-ups are all there is.
//!
//! Live status rides the same channel: every status change a core commits
//! is passed on after the commit (`s` payloads: account, then status and
//! request id of each change — ids, never bodies, for `pg_notify`'s 8000-byte
//! limit), so that long-polls and event streams on every core hear of it.
//! Submits and answers are the exceptions: the statement that stores a
//! submit batch sends its requests' `s` payloads beside its wake-up, and
//! the `f` payload an answer's transaction sends anyway names the
//! request's new status. Both are heard at the commit rather than after a
//! second transaction.
//!
//! A core alone on its database sends none of this ([`audience`]).

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseBackend, Iterable, Statement};
use sqlx::{
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    ConnectOptions,
};
use uuid::Uuid;

use super::audience::{self, Audience, LISTENER_NAME, LOOK_EVERY, OTHER_LISTENERS};
use crate::{
    error::CoreResult,
    live::Change,
    model::{AccountId, RequestStatus},
    Core,
};

const CHANNEL: &str = "chatrelay_dispatch";

/// Sends `payloads` in one statement (one round trip however many).
async fn publish(
    conn: &impl ConnectionTrait,
    core: &Core,
    payloads: impl IntoIterator<Item = String>,
) -> CoreResult<()> {
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let payloads = signed(core, payloads);
    if payloads.is_empty() {
        return Ok(());
    }
    conn.execute(notify_all(payloads)).await?;
    Ok(())
}

/// Each payload prefixed with this core's id, by which it ignores its own;
/// none if no other core listens.
fn signed(core: &Core, payloads: impl IntoIterator<Item = String>) -> Vec<String> {
    if !audience::heard() {
        return Vec::new();
    }
    payloads
        .into_iter()
        .map(|payload| format!("{}:{payload}", core.node_id))
        .collect()
}

/// `pg_notify` of each payload of `$2` on channel `$1`: the same SQL text for
/// any number of them.
const NOTIFY_ALL: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// The channel and payloads of [`publish_work`] for these accounts, for a
/// statement that calls `pg_notify` itself.
pub(super) fn work_notices(
    core: &Core,
    accounts: impl IntoIterator<Item = AccountId>,
) -> (&'static str, Vec<String>) {
    let payloads = accounts.into_iter().map(work_payload);
    (CHANNEL, signed(core, payloads))
}

/// The `s` payloads of requests just submitted (each now `idle`), for the
/// statement that stores them to send with its wake-up; none if no other
/// core listens.
pub(super) fn submitted_notices(
    core: &Core,
    requests: impl IntoIterator<Item = (AccountId, Uuid)>,
) -> Vec<String> {
    if !audience::heard() {
        return Vec::new();
    }
    let changes: Vec<Change> = requests
        .into_iter()
        .map(|(account, request)| Change {
            account,
            request,
            status: RequestStatus::Idle,
            view: None,
        })
        .collect();
    status_payloads(core.node_id, &changes)
}

fn work_payload(account: AccountId) -> String {
    format!("w:{}", account.0)
}

fn notify_all(payloads: Vec<String>) -> Statement {
    Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        NOTIFY_ALL,
        [CHANNEL.into(), payloads.into()],
    )
}

/// Tells the other cores that the account has claimable work.
pub async fn publish_work(
    conn: &impl ConnectionTrait,
    core: &Core,
    account: AccountId,
) -> CoreResult<()> {
    publish(conn, core, [work_payload(account)]).await
}

/// The channel and this core's prefix of the `f` payloads that tell the
/// other cores which requests finished, and with what status (their status
/// change for live status there), for the statement that finishes them: it
/// appends [`finished_payload_sql`] of each row it finishes, and sends none
/// without a prefix (no other core listens).
pub(super) fn finished_notices(core: &Core) -> (&'static str, Option<String>) {
    let prefix = audience::heard().then(|| format!("{}:f:", core.node_id));
    (CHANNEL, prefix)
}

/// The SQL expression of a finished row's `f` payload after the prefix
/// passed as parameter `$prefix` (see [`finished_notices`]): the row's
/// account, id and status letter, from columns of `row`.
pub(super) fn finished_payload_sql(prefix: usize, row: &str) -> String {
    let letters: String = RequestStatus::iter()
        .map(|s| format!(" WHEN '{}' THEN '{}'", s.as_str(), status_letter(s)))
        .collect();
    format!(
        "${prefix} || {row}.account_id || ':' || {row}.id || ':' || \
         CASE {row}.status{letters} END"
    )
}

/// Another core's hello (`h`: it listens, and every core answers) or
/// answer (`a`): either way it notifies from now on.
struct Hello {
    /// It was quiet until just before: what it wrote meanwhile was not
    /// notified, and is to be looked for in the database.
    was_quiet: bool,
    /// An answer to a hello, which needs none.
    answer: bool,
}

/// This core's hello (`kind` `h`) or answer (`a`), then `q` if it was quiet.
fn hello(core: &Core, kind: char, was_quiet: bool) -> String {
    let quiet = if was_quiet { 'q' } else { 'n' };
    format!("{}:{kind}:0:{quiet}", core.node_id)
}

/// Applies another core's event; a hello is returned, for the listener.
fn apply(core: &Core, payload: &str) -> Option<Hello> {
    let mut parts = payload.split(':');
    let (Some(node), Some(kind), Some(account)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if node == core.node_id.to_string() {
        return None; // our own event, already applied locally
    }
    let Ok(account) = account.parse::<i64>().map(AccountId) else {
        return None;
    };
    let rest = parts.next();
    if kind == "s" {
        core.live
            .remote(parse_changes(account, rest.unwrap_or_default()));
        return None;
    }
    if kind == "h" || kind == "a" {
        return Some(Hello {
            was_quiet: rest == Some("q"),
            answer: kind == "a",
        });
    }
    match (kind, rest.and_then(|r| Uuid::parse_str(r).ok())) {
        ("w", _) => core.dispatch.wake_local(account),
        ("f", Some(request)) => {
            core.dispatch.finished_local(account, Arc::from([request]));
            let status = parts.next().and_then(status_of_letter);
            if let Some(status) = status.filter(|s| s.is_terminal()) {
                core.live.remote([Change {
                    account,
                    request,
                    status,
                    view: None,
                }]);
            }
        }
        // Another core dropped status changes it could not pass on.
        ("r", _) => core.live.lost(),
        _ => {}
    }
    None
}

/// A status in a payload: one letter.
fn status_letter(status: RequestStatus) -> char {
    match status {
        RequestStatus::Idle => 'i',
        RequestStatus::Executing => 'e',
        RequestStatus::Done => 'd',
        RequestStatus::Failed => 'f',
    }
}

fn status_of_letter(letter: &str) -> Option<RequestStatus> {
    Some(match letter {
        "i" => RequestStatus::Idle,
        "e" => RequestStatus::Executing,
        "d" => RequestStatus::Done,
        "f" => RequestStatus::Failed,
        _ => return None,
    })
}

/// Status changes per notification: about 34 bytes each, well under the
/// 8000-byte payload limit.
const CHANGES_PER_PAYLOAD: usize = 200;

/// The changes of an `s` payload's list (malformed entries skipped).
fn parse_changes(account: AccountId, list: &str) -> Vec<Change> {
    list.split(',')
        .filter_map(|entry| {
            let status = status_of_letter(entry.get(..1)?)?;
            Some(Change {
                account,
                request: Uuid::parse_str(entry.get(1..)?).ok()?,
                status,
                view: None,
            })
        })
        .collect()
}

/// The `s` payloads for `changes`, grouped by account in commit order.
fn status_payloads(node: Uuid, changes: &[Change]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut accounts: Vec<AccountId> = Vec::new();
    for change in changes {
        if !accounts.contains(&change.account) {
            accounts.push(change.account);
        }
    }
    for account in accounts {
        let entries: Vec<String> = changes
            .iter()
            .filter(|c| c.account == account)
            .map(|c| format!("{}{}", status_letter(c.status), c.request.simple()))
            .collect();
        for chunk in entries.chunks(CHANGES_PER_PAYLOAD) {
            payloads.push(format!("{node}:s:{}:{}", account.0, chunk.join(",")));
        }
    }
    payloads
}

/// The options of a connection of a task's own (outside the pool), or
/// `None`, logged with `unusable`, if the database URL cannot be read.
fn own_connection(core: &Core, unusable: &str) -> Option<PgConnectOptions> {
    match core
        .config
        .database
        .database_url
        .parse::<PgConnectOptions>()
    {
        Ok(options) => Some(options.disable_statement_logging()),
        Err(e) => {
            tracing::error!(error = %e, "{unusable}");
            None
        }
    }
}

/// Starts the task that passes this core's status changes on to the other
/// cores, after their commit, a batch per round trip.
///
/// It sends them on a connection of its own whose commits do not wait for
/// the WAL to reach the disk. Each notification needs a transaction, and
/// PostgreSQL serialises the commits of every transaction that notifies:
/// on the shared pool each batch would be one more synchronous commit in
/// line with the writers' own. A notification is not durable anyway (a
/// listener hears it only while connected), so nothing is lost that a
/// crash would not lose: after one every core's listener reconnects and
/// tells its subscribers to re-list. While no other core listens, the
/// changes are dropped: a core that starts listening hears this one's
/// answer to its hello before anything this one commits later, and looks
/// at the database then.
pub(super) fn start_status_publisher(core: &Arc<Core>, audience: &Arc<Audience>) {
    core.live.send_to_other_cores();
    let Some(options) = own_connection(core, "status changes cannot be passed on to other cores")
    else {
        return;
    };
    let options = options.options([("synchronous_commit", "off")]);
    // One connection, made again by the pool if it drops.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let (core, audience) = (core.clone(), audience.clone());
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        loop {
            let (changes, dropped) = tokio::select! {
                _ = core.shutdown.cancelled() => return,
                taken = core.live.take_outbound() => taken,
            };
            // Read after the changes committed: if alone now, they committed
            // before this core's next hello.
            if audience.alone() {
                continue;
            }
            let mut payloads = status_payloads(core.node_id, &changes);
            if dropped {
                payloads.push(format!("{}:r:0", core.node_id));
            }
            for attempt in 1..=3 {
                let sent = sqlx::query(NOTIFY_ALL)
                    .bind(CHANNEL)
                    .bind(&payloads)
                    .execute(&pool)
                    .await;
                match sent {
                    Ok(_) => break,
                    Err(e) if attempt < 3 => {
                        tracing::debug!(error = %e, "cannot pass status changes on; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "status changes not passed on to other cores; their subscribers may miss them"
                    ),
                }
            }
        }
    });
}

/// Starts the task that turns other cores' events into local wake-ups,
/// and looks for other cores ([`audience`]). It reconnects by itself and,
/// since events may have been missed while disconnected, wakes every local
/// session after a reconnect and says hello again. The receiver hears once
/// the listener listens and each other core found then has answered its
/// first hello.
pub(super) fn start_listener(
    core: &Arc<Core>,
    audience: &Arc<Audience>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (heard, heard_all) = tokio::sync::oneshot::channel();
    let Some(options) = own_connection(core, "other cores' events cannot be heard") else {
        return heard_all;
    };
    let options = options.application_name(LISTENER_NAME);
    let mut listening = Listening {
        core: core.clone(),
        audience: audience.clone(),
        untold: false,
        heard: Some(heard),
        awaiting: 0,
    };
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let core = listening.core.clone();
        let mut first = true;
        while !core.shutdown.is_cancelled() {
            // One connection, made again by the pool if it drops.
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_lazy_with(options.clone());
            let connected = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.ignore_pool_close_event(true);
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let listened = async {
                let mut listener = connected.await?;
                listening.listened(&mut listener, !first).await?;
                if first {
                    // Looked at once, for the answers to wait for.
                    listening.look(&mut listener).await?;
                }
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = match listened.await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch listener cannot listen; retrying");
                    tokio::select! {
                        _ = core.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            first = false;
            let start = tokio::time::Instant::now() + LOOK_EVERY;
            let mut look = tokio::time::interval_at(start, LOOK_EVERY);
            look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let heard = tokio::select! {
                    _ = core.shutdown.cancelled() => {
                        // Gone from the database at once: the other cores
                        // need not wait for the connection to time out.
                        drop(listener);
                        pool.close().await;
                        return;
                    }
                    _ = look.tick() => listening.look(&mut listener).await,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => match apply(&core, notification.payload()) {
                            Some(hello) => listening.hello(&mut listener, hello).await,
                            None => Ok(()),
                        },
                        // The connection dropped and came back: anything may be missed.
                        Ok(None) => listening.listened(&mut listener, true).await,
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = heard {
                    tracing::warn!(error = %e, "dispatch listener lost its connection");
                    break;
                }
            }
        }
    });
    heard_all
}

/// The listener's part in finding the other cores ([`audience`]).
struct Listening {
    core: Arc<Core>,
    audience: Arc<Audience>,
    /// This core went quiet and has spoken since, but its hello saying so
    /// was not sent yet.
    untold: bool,
    /// Told once the other cores found at start-up have answered.
    heard: Option<tokio::sync::oneshot::Sender<()>>,
    /// Answers still awaited before `heard` is told.
    awaiting: usize,
}

/// A look for other listeners that takes longer than this means the
/// listener's connection is gone.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Listening {
    /// The listener listens, for the first time or again (`again`): this
    /// core speaks and says hello, and looks at the database for what it
    /// may have missed.
    async fn listened(&mut self, listener: &mut PgListener, again: bool) -> sqlx::Result<()> {
        self.speak(listener, 'h').await?;
        self.core.dispatch.wake_all();
        if again {
            self.core.live.lost();
        }
        Ok(())
    }

    /// Notifies from now on, and says so: `kind` `h` for a hello, which
    /// every other core answers, `a` for an answer.
    async fn speak(&mut self, listener: &mut PgListener, kind: char) -> sqlx::Result<()> {
        if self.audience.speak().await {
            self.untold = true;
            tracing::info!("another core listens on the database; notifying it");
        }
        sqlx::query(NOTIFY_ALL)
            .bind(CHANNEL)
            .bind(vec![hello(&self.core, kind, self.untold)])
            .execute(&mut *listener)
            .await?;
        self.untold = false;
        Ok(())
    }

    /// Another core says hello, or answers: if it was quiet, what it wrote
    /// meanwhile is looked for. A hello is answered (once this core
    /// speaks, if it was quiet); an answer counts towards the ones awaited
    /// at start-up, and a quiet core that hears one speaks.
    async fn hello(&mut self, listener: &mut PgListener, hello: Hello) -> sqlx::Result<()> {
        if hello.was_quiet {
            self.core.dispatch.wake_all();
            self.core.live.lost();
        }
        if !hello.answer {
            return self.speak(listener, 'a').await;
        }
        self.awaiting = self.awaiting.saturating_sub(1);
        if self.awaiting == 0 {
            self.heard_all();
        }
        if self.audience.alone() {
            self.speak(listener, 'a').await?;
        }
        Ok(())
    }

    /// The other cores found at start-up have all answered.
    fn heard_all(&mut self) {
        if let Some(heard) = self.heard.take() {
            let _ = heard.send(());
        }
    }

    /// Looks for other cores' listeners: goes quiet if there are none, and
    /// speaks if there are and this core is quiet (their hello was missed).
    async fn look(&mut self, listener: &mut PgListener) -> sqlx::Result<()> {
        let others = tokio::time::timeout(
            LOOK_TIMEOUT,
            sqlx::query_scalar::<_, i64>(OTHER_LISTENERS)
                .bind(LISTENER_NAME)
                .fetch_one(&mut *listener),
        )
        .await
        .map_err(|_| {
            let slow = "no answer to a look for other cores";
            sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, slow))
        })??;
        metrics::gauge!("chatrelay_other_cores").set(others as f64);
        if self.heard.is_some() {
            // The first look: their answers to this core's hello are awaited.
            self.awaiting = usize::try_from(others).unwrap_or(0);
            if self.awaiting == 0 {
                self.heard_all();
            }
        }
        match (others, self.audience.alone()) {
            (0, false) => {
                self.audience.hush();
                tracing::info!("no other core listens on the database; notifying none");
            }
            (1.., true) => self.speak(listener, 'a').await?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_payloads_fit_pg_notify_and_read_back_in_order() {
        let statuses = [
            RequestStatus::Idle,
            RequestStatus::Executing,
            RequestStatus::Done,
            RequestStatus::Failed,
        ];
        let changes: Vec<Change> = (0..1000)
            .map(|i| Change {
                account: AccountId(i % 3),
                request: Uuid::now_v7(),
                status: statuses[i as usize % 4],
                view: None,
            })
            .collect();
        let node = Uuid::new_v4();
        let payloads = status_payloads(node, &changes);
        let mut read = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < 8000, "{} bytes", payload.len());
            let mut parts = payload.split(':');
            assert_eq!(parts.next(), Some(node.to_string().as_str()));
            assert_eq!(parts.next(), Some("s"));
            let account = AccountId(parts.next().unwrap().parse().unwrap());
            read.extend(parse_changes(account, parts.next().unwrap()));
        }
        for account in 0..3 {
            let sent: Vec<_> = changes.iter().filter(|c| c.account.0 == account).collect();
            let got: Vec<_> = read.iter().filter(|c| c.account.0 == account).collect();
            assert_eq!(sent, got, "account {account}");
        }
    }
}
