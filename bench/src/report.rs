//! The Markdown the suite prints: the machine it ran on, one table row per
//! figure with its target, and notes on anything that went wrong.

use std::{fmt::Write as _, time::Duration};

/// Where the figures came from.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown CPU".into(),
                |(_, model)| model.trim().to_string(),
            );
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or_else(|| "unknown".into(), |kib| mib(kib * 1024));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_string())
            .unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory,
            kernel,
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} CPUs ({}), {} RAM, Linux {}",
            self.cpus, self.cpu_model, self.memory, self.kernel
        )
    }
}

/// One line of the table. Empty cells print as `—`.
#[derive(Default)]
pub struct Row {
    pub scenario: String,
    pub throughput: String,
    pub p50: String,
    pub p99: String,
    pub vs_reference: String,
    pub cpu: String,
    pub target: String,
    pub met: Option<bool>,
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | throughput | p50 | p99 | vs reference | CPU cores: chatrelay of machine | target | met? |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
    );
    let cell = |text: &str| {
        if text.is_empty() {
            "—".to_string()
        } else {
            text.replace('|', "\\|")
        }
    };
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {met} |",
            cell(&row.scenario),
            cell(&row.throughput),
            cell(&row.p50),
            cell(&row.p99),
            cell(&row.vs_reference),
            cell(&row.cpu),
            cell(&row.target),
        );
    }
    out
}

/// `12,345/s`
pub fn rate(per_sec: f64) -> String {
    format!("{}/s", thousands(per_sec.round() as u64))
}

/// `12,345`
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.84 ms`, `12.3 ms`, `1,204 ms`
pub fn ms(latency: Option<Duration>) -> String {
    let Some(latency) = latency else {
        return String::new();
    };
    let ms = latency.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms.round() as u64))
    }
}

/// `12.3%`
pub fn percent(ratio: f64) -> String {
    if ratio < 0.1 {
        format!("{:.2}%", ratio * 100.0)
    } else {
        format!("{:.1}%", ratio * 100.0)
    }
}

/// `412 MiB`
pub fn mib(bytes: u64) -> String {
    format!(
        "{} MiB",
        thousands((bytes as f64 / 1_048_576.0).round() as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(110_000.4), "110,000/s");
        assert_eq!(ms(Some(Duration::from_micros(840))), "0.84 ms");
        assert_eq!(ms(Some(Duration::from_micros(12_340))), "12.3 ms");
        assert_eq!(ms(Some(Duration::from_millis(1_204))), "1,204 ms");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(mib(3 * 1_048_576), "3 MiB");
    }

    #[test]
    fn table_marks_misses_and_empty_cells() {
        let rows = [Row {
            scenario: "a|b".into(),
            met: Some(false),
            ..Row::default()
        }];
        let text = table(&rows);
        assert!(text.contains("| a\\|b | — |"));
        assert!(text.trim_end().ends_with("| **no** |"));
    }
}
