//! Runs wrk (the HTTP load generator, Debian package `wrk`) and reads its
//! `--latency` report: requests/s, p50, p99 and the error counts.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{bail, Context};
use tokio::process::Command;

/// The wrk settings every HTTP scenario and the reference share.
#[derive(Clone, Copy, Debug)]
pub struct Wrk {
    pub threads: u32,
    pub connections: u32,
}

/// What one wrk run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Responses with a status outside 2xx/3xx.
    pub non_2xx: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
}

impl WrkReport {
    /// A note for the table when some requests did not succeed.
    pub fn error_note(&self) -> Option<String> {
        (self.non_2xx + self.socket_errors > 0).then(|| {
            format!(
                "{} non-2xx, {} socket errors of {}",
                self.non_2xx, self.socket_errors, self.requests
            )
        })
    }
}

impl Wrk {
    /// Runs wrk against `url` for `duration` with a Lua `script`; the API key
    /// reaches the script as `CHATRELAY_BENCH_API_KEY`.
    pub async fn run(
        &self,
        url: &str,
        script: &Path,
        api_key: &str,
        duration: Duration,
    ) -> anyhow::Result<WrkReport> {
        let secs = duration.as_secs().max(1);
        let child = Command::new("wrk")
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{secs}s"))
            .arg("--latency")
            .arg("-s")
            .arg(script)
            .arg(url)
            .env("CHATRELAY_BENCH_API_KEY", api_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start wrk (is it installed? bench/run installs it)")?;
        let output = tokio::time::timeout(Duration::from_secs(secs + 30), child.wait_with_output())
            .await
            .context("wrk did not finish")??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("cannot read wrk's report:\n{stdout}"))
    }
}

/// Parses wrk's report as printed with `--latency`.
pub fn parse(output: &str) -> anyhow::Result<WrkReport> {
    let mut requests = None;
    let mut requests_per_sec = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = Some(parse_latency(value)?),
            ["99%", value] => p99 = Some(parse_latency(value)?),
            ["Requests/sec:", value] => requests_per_sec = Some(value.parse::<f64>()?),
            [count, "requests", "in", ..] => requests = Some(count.parse::<u64>()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => non_2xx = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    Ok(WrkReport {
        requests: requests.context("no \"N requests in\" line")?,
        requests_per_sec: requests_per_sec.context("no Requests/sec line")?,
        p50: p50.context("no 50% line (was --latency given?)")?,
        p99: p99.context("no 99% line (was --latency given?)")?,
        non_2xx,
        socket_errors,
    })
}

/// wrk prints latencies as a number and a unit: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn parse_latency(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .with_context(|| format!("latency without a unit: {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("unknown latency unit in {text:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 10s test @ http://127.0.0.1:41235/api/chat/submit/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms    1.02ms  31.22ms   83.17%
    Req/Sec     6.74k   612.44     8.01k    71.50%
  Latency Distribution
     50%    2.21ms
     75%    2.80ms
     90%    3.51ms
     99%  812.50us
  134187 requests in 10.00s, 71.54MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  13410.62
Transfer/sec:      7.15MB
";

    #[test]
    fn reads_a_latency_report() {
        let report = parse(REPORT).expect("parse");
        assert_eq!(report.requests, 134_187);
        assert!((report.requests_per_sec - 13_410.62).abs() < 1e-6);
        assert_eq!(report.p50, Duration::from_micros(2_210));
        assert_eq!(report.p99, Duration::from_nanos(812_500));
        assert_eq!(report.non_2xx, 7);
        assert_eq!(report.socket_errors, 5);
        assert!(report.error_note().is_some());
    }

    #[test]
    fn a_report_without_the_distribution_is_an_error() {
        let without: String = REPORT
            .lines()
            .filter(|line| !line.trim_start().starts_with("99%"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(parse(&without).is_err());
    }

    #[test]
    fn latency_units() {
        assert_eq!(
            parse_latency("1.50s").unwrap(),
            Duration::from_millis(1_500)
        );
        assert_eq!(parse_latency("2.00m").unwrap(), Duration::from_secs(120));
        assert!(parse_latency("12").is_err());
        assert!(parse_latency("3ns").is_err());
    }
}
