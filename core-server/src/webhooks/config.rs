//! Webhook settings: the retry schedule, the per-attempt timeout, how many
//! deliveries may be in flight at once (in all and per account) and where a
//! webhook may be sent.

use std::{fmt, time::Duration};

use super::destination::Destinations;

/// Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts
/// spread over about a day and a quarter.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";
pub const DEFAULT_TIMEOUT: &str = "15s";
pub const DEFAULT_CONCURRENCY: u32 = 16;
pub const DEFAULT_CONCURRENCY_PER_ACCOUNT: u32 = 4;

/// Webhook settings.
#[derive(clap::Args, Clone, Debug)]
pub struct WebhookConfig {
    /// Delays before each retry of a failed webhook, comma-separated, each a
    /// whole number with a unit: ms, s, m, h or d (e.g. `5s,5m,30m`). The
    /// first attempt is immediate; when attempt n fails, the n-th delay
    /// (±10 % jitter) passes before attempt n+1. When the list is used up the
    /// delivery is failed. `none` (or empty): a single attempt, no retries.
    #[arg(
        long = "webhook-retry-schedule",
        env = "CHATRELAY_WEBHOOK_RETRY_SCHEDULE",
        default_value = DEFAULT_RETRY_SCHEDULE,
        value_name = "DELAYS",
        value_parser = RetrySchedule::parse,
    )]
    pub retry_schedule: RetrySchedule,

    /// How long one attempt may take, connecting through the receiver's
    /// response (e.g. `15s`); a slower receiver counts as a failed attempt.
    #[arg(
        long = "webhook-timeout",
        env = "CHATRELAY_WEBHOOK_TIMEOUT",
        default_value = DEFAULT_TIMEOUT,
        value_name = "DURATION",
        value_parser = parse_duration,
    )]
    pub timeout: Duration,

    /// Webhook attempts in flight at once, across all accounts.
    #[arg(
        long = "webhook-concurrency",
        env = "CHATRELAY_WEBHOOK_CONCURRENCY",
        default_value_t = DEFAULT_CONCURRENCY,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub concurrency: u32,

    /// Webhook attempts in flight at once for one account, so that one
    /// account whose receiver hangs holds at most this many of the
    /// `--webhook-concurrency` slots and every other account's webhooks
    /// keep flowing.
    #[arg(
        long = "webhook-concurrency-per-account",
        env = "CHATRELAY_WEBHOOK_CONCURRENCY_PER_ACCOUNT",
        default_value_t = DEFAULT_CONCURRENCY_PER_ACCOUNT,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub concurrency_per_account: u32,

    /// Allow webhook URLs whose host is, or resolves to, a loopback,
    /// private, link-local or cloud-metadata address (refused by default,
    /// when a URL is set and at every attempt).
    #[arg(
        long = "allow-private-webhook-urls",
        env = "CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS"
    )]
    pub allow_private_urls: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(15),
            concurrency: DEFAULT_CONCURRENCY,
            concurrency_per_account: DEFAULT_CONCURRENCY_PER_ACCOUNT,
            allow_private_urls: false,
        }
    }
}

impl WebhookConfig {
    /// Where webhooks may go under this configuration.
    pub fn destinations(&self) -> Destinations {
        Destinations::new(self.allow_private_urls)
    }

    /// How long a claimed attempt stays claimed: the attempt's own timeout
    /// plus room to record its outcome. A core that dies mid-attempt leaves
    /// the delivery to fall due again after this.
    pub fn claim_ttl(&self) -> Duration {
        self.timeout + Duration::from_secs(30)
    }
}

/// The delays between attempts of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        Self(
            [
                5,
                5 * MINUTE,
                30 * MINUTE,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
        )
    }
}

impl RetrySchedule {
    /// Parses `5s,5m,30m`; `none` or an empty string is no retries.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(Self(Vec::new()));
        }
        text.split(',')
            .map(parse_duration)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Attempts in one schedule: the immediate one and one per delay.
    pub fn max_attempts(&self) -> i32 {
        i32::try_from(self.0.len())
            .unwrap_or(i32::MAX - 1)
            .saturating_add(1)
    }

    /// The delay before the next attempt once attempt `n` (1-based, counted
    /// within this schedule) has failed; `None` when the schedule is used up.
    pub fn delay_after(&self, n: i32) -> Option<Duration> {
        let index = usize::try_from(n.checked_sub(1)?).ok()?;
        self.0.get(index).copied()
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|d| format_duration(*d)).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses a whole number with a unit: `250ms`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number followed by ms, s, m, h or d"))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    // Past a year is a typo, and keeps millisecond arithmetic far from overflow.
    const YEAR_MS: u64 = 366 * 86_400_000;
    number
        .checked_mul(millis_per_unit)
        .filter(|ms| *ms <= YEAR_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: longer than a year"))
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|(unit, _)| ms.is_multiple_of(*unit))
        .map_or_else(
            || format!("{ms}ms"),
            |(unit, suffix)| format!("{}{suffix}", ms / unit),
        )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhooks: WebhookConfig,
    }

    #[test]
    fn clap_defaults_are_the_default_impl() {
        let parsed = Cli::try_parse_from(["test"]).expect("parse").webhooks;
        let default = WebhookConfig::default();
        assert_eq!(parsed.retry_schedule, default.retry_schedule);
        assert_eq!(parsed.timeout, default.timeout);
        assert_eq!(parsed.concurrency, default.concurrency);
        assert_eq!(
            parsed.concurrency_per_account,
            default.concurrency_per_account
        );
        assert_eq!(default.retry_schedule.to_string(), DEFAULT_RETRY_SCHEDULE);
    }

    #[test]
    fn schedule_parses_units_and_spaces() {
        let schedule = RetrySchedule::parse("0s, 250ms,5s,5m ,2h,1d").expect("parse");
        assert_eq!(
            schedule.0,
            vec![
                Duration::ZERO,
                Duration::from_millis(250),
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_secs(86_400),
            ]
        );
        assert_eq!(schedule.to_string(), "0s,250ms,5s,5m,2h,24h");
    }

    #[test]
    fn empty_or_none_schedule_means_one_attempt() {
        for text in ["", "none", " NONE "] {
            let schedule = RetrySchedule::parse(text).expect("parse");
            assert_eq!(schedule.max_attempts(), 1);
            assert_eq!(schedule.delay_after(1), None);
        }
    }

    #[test]
    fn schedule_rejects_nonsense() {
        for text in ["5", "5x", "s", "-1s", "1.5s", "5s,,5s", "400d"] {
            assert!(RetrySchedule::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn delays_follow_failed_attempts() {
        let schedule = RetrySchedule::parse("1s,2s,3s").expect("parse");
        assert_eq!(schedule.max_attempts(), 4);
        assert_eq!(schedule.delay_after(0), None);
        assert_eq!(schedule.delay_after(1), Some(Duration::from_secs(1)));
        assert_eq!(schedule.delay_after(3), Some(Duration::from_secs(3)));
        assert_eq!(schedule.delay_after(4), None);
    }
}
