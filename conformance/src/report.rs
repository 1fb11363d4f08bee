//! The outcome of a run, printed as text, JSON or JUnit XML.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `area.name`.
    pub id: String,
    pub area: String,
    pub area_title: String,
    pub name: String,
    /// The protocol rule the case checks.
    pub rule: String,
    pub status: Status,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub duration_ms: u64,
}

/// Every result of a run, in registry order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub target: String,
    /// Things the user should know, such as the webhook URL to configure.
    pub notes: Vec<String>,
    pub results: Vec<CaseResult>,
}

impl Report {
    fn count(&self, status: Status) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }

    pub fn passed(&self) -> usize {
        self.count(Status::Passed)
    }

    pub fn failed(&self) -> usize {
        self.count(Status::Failed)
    }

    pub fn skipped(&self) -> usize {
        self.count(Status::Skipped)
    }

    /// The process exit code: 0 when nothing failed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed() > 0)
    }

    /// The closing line CI reads: `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    /// A readable report grouped by area; failures show the rule and the reason.
    pub fn text(&self) -> String {
        let mut out = format!("Pusher protocol conformance: {}\n", self.target);
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let mut area = "";
        for result in &self.results {
            if result.area != area {
                area = &result.area;
                let in_area = self.results.iter().filter(|r| r.area == area);
                let (passed, failed, skipped) =
                    in_area.fold((0, 0, 0), |(p, f, s), r| match r.status {
                        Status::Passed => (p + 1, f, s),
                        Status::Failed => (p, f + 1, s),
                        Status::Skipped => (p, f, s + 1),
                    });
                let _ = writeln!(
                    out,
                    "\n{} [{}]: {passed} passed, {failed} failed, {skipped} skipped",
                    result.area_title, result.area
                );
            }
            let mark = match result.status {
                Status::Passed => "PASS",
                Status::Failed => "FAIL",
                Status::Skipped => "SKIP",
            };
            let _ = writeln!(out, "  {mark} {} ({} ms)", result.id, result.duration_ms);
            match result.status {
                Status::Failed => {
                    let _ = writeln!(out, "       rule: {}", result.rule);
                    let message = result.message.as_deref().unwrap_or("");
                    let _ = writeln!(out, "       why:  {message}");
                }
                Status::Skipped => {
                    let message = result.message.as_deref().unwrap_or("");
                    let _ = writeln!(out, "       {message}");
                }
                Status::Passed => {}
            }
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// JUnit XML: one `testsuite` per area, one `testcase` per case.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"comnestor-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            self.results.len(),
            self.failed(),
            self.skipped()
        );
        let mut areas: Vec<&str> = Vec::new();
        for result in &self.results {
            if !areas.contains(&result.area.as_str()) {
                areas.push(&result.area);
            }
        }
        for area in areas {
            let cases: Vec<&CaseResult> = self.results.iter().filter(|r| r.area == area).collect();
            let count = |s| cases.iter().filter(|r| r.status == s).count();
            let seconds: u64 = cases.iter().map(|r| r.duration_ms).sum();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
                xml(area),
                cases.len(),
                count(Status::Failed),
                count(Status::Skipped),
                seconds as f64 / 1000.0
            );
            for case in cases {
                junit_case(&mut out, case);
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

fn junit_case(out: &mut String, case: &CaseResult) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
        xml(&case.area),
        xml(&case.name),
        case.duration_ms as f64 / 1000.0
    );
    let message = xml(case.message.as_deref().unwrap_or(""));
    match case.status {
        Status::Passed => {}
        Status::Failed => {
            let _ = write!(
                out,
                "<failure message=\"{message}\">rule: {}</failure>",
                xml(&case.rule)
            );
        }
        Status::Skipped => {
            let _ = write!(out, "<skipped message=\"{message}\"/>");
        }
    }
    let _ = writeln!(
        out,
        "<system-out>{}</system-out></testcase>",
        xml(&case.rule)
    );
}

/// Escapes text for XML content and attributes, dropping characters XML 1.0 cannot hold.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Status) -> CaseResult {
        CaseResult {
            id: "a.b".into(),
            area: "a".into(),
            area_title: "Area".into(),
            name: "b<&>".into(),
            rule: "rule \"x\"".into(),
            status,
            message: Some("why\n".into()),
            duration_ms: 12,
        }
    }

    #[test]
    fn summary_line_and_exit_code() {
        let report = Report {
            target: "t".into(),
            notes: vec![],
            results: vec![
                result(Status::Passed),
                result(Status::Failed),
                result(Status::Skipped),
            ],
        };
        assert!(
            report
                .text()
                .trim_end()
                .ends_with("\n1 passed, 1 failed, 1 skipped")
        );
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn junit_escapes() {
        let report = Report {
            target: "t".into(),
            notes: vec![],
            results: vec![result(Status::Failed)],
        };
        let xml = report.junit();
        assert!(xml.contains("name=\"b&lt;&amp;&gt;\""));
        assert!(xml.contains("<failure message=\"why&#10;\">rule: rule &quot;x&quot;</failure>"));
    }
}
