//! What a run prints: a table for people and one JSON record for the file of results.

use std::fmt::Display;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::proc::{self, Machine};

/// The outcome of one scenario run.
pub struct Report {
    pub scenario: &'static str,
    pub params: Value,
    rows: Vec<(String, String)>,
    results: Map<String, Value>,
    /// Reasons the run counts as failed under `--strict`.
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str, params: impl Serialize) -> Self {
        Self {
            scenario,
            params: serde_json::to_value(params).unwrap_or(Value::Null),
            rows: Vec::new(),
            results: Map::new(),
            failures: Vec::new(),
        }
    }

    /// A line of the table.
    pub fn row(&mut self, name: &str, value: impl Display) {
        self.rows.push((name.to_owned(), value.to_string()));
    }

    /// A field of the JSON record.
    pub fn result(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.results.insert(key.to_owned(), value);
    }

    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }
}

/// Where and when a run happened, recorded with every result.
#[derive(Debug, Clone, Serialize)]
pub struct RunContext {
    pub label: String,
    pub target: String,
    pub server_pid: Option<u32>,
    pub started_at: String,
    pub load_before: [f64; 3],
    pub machine: Machine,
    /// The generator's own build profile.
    pub generator_build: &'static str,
    pub generator_threads: usize,
}

impl RunContext {
    pub fn new(label: String, target: String, server_pid: Option<u32>, threads: usize) -> Self {
        Self {
            label,
            target,
            server_pid,
            started_at: utc_now(),
            load_before: proc::load_average(),
            machine: proc::machine(),
            generator_build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            generator_threads: threads,
        }
    }
}

/// Prints the table and appends the JSON record to `json` (`-` for stdout).
pub fn emit(report: &Report, context: &RunContext, json: Option<&Path>) -> anyhow::Result<()> {
    let load_after = proc::load_average();
    let width = report.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    println!();
    println!(
        "== {} against {} ({}) at {}",
        report.scenario, context.label, context.target, context.started_at
    );
    println!(
        "   load average {:.2} {:.2} {:.2} before, {:.2} after; {} cores, generator {} with {} threads",
        context.load_before[0],
        context.load_before[1],
        context.load_before[2],
        load_after[0],
        context.machine.cores,
        context.generator_build,
        context.generator_threads
    );
    for (name, value) in &report.rows {
        if name.is_empty() {
            println!();
        } else {
            println!("   {name:<width$}  {value}");
        }
    }
    for failure in &report.failures {
        println!("   FAILED: {failure}");
    }
    let Some(path) = json else {
        return Ok(());
    };
    let record = serde_json::json!({
        "scenario": report.scenario,
        "context": context,
        "load_after": load_after,
        "params": report.params,
        "results": report.results,
        "failures": report.failures,
    });
    if path == Path::new("-") {
        println!("{record}");
    } else {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{record}")?;
    }
    Ok(())
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = crate::target::unix_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A count with thousands separators.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(100), "100");
    }
}
