//! The report of a run: a table for people, JSON for programs, JUnit XML
//! for CI. The table's last line is always `N passed, M failed`.

use std::fmt::Write;

use super::{Group, Outcome, Report, Scope};

/// The table: one line per check (id, PASS/FAIL/SKIP, name), the evidence
/// indented under it, then the summary line.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "verify: variant {} ({} runtime, {})\n\n",
        report.variant, report.runtime, report.lab
    );
    for c in &report.checks {
        let _ = writeln!(out, "{:<4} {}  {}", c.id, c.result.label(), c.name);
        for line in c.evidence.lines().filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(out, "            {line}");
        }
    }
    let _ = writeln!(out);
    if report.skipped() > 0 {
        let _ = writeln!(out, "{} skipped", report.skipped());
    }
    let _ = writeln!(out, "took {:.1} s", report.millis as f64 / 1000.0);
    let _ = writeln!(out, "{}", report.summary());
    out
}

/// JSON: the report plus the counts.
pub fn json(report: &Report) -> String {
    let mut v = serde_json::to_value(report).expect("report serialises");
    v["passed"] = report.passed().into();
    v["failed"] = report.failed().into();
    v["skipped"] = report.skipped().into();
    v["summary"] = report.summary().into();
    serde_json::to_string_pretty(&v).expect("json") + "\n"
}

/// XML text escaping (XML 1.0 §2.4); control characters other than tab and
/// line ends are not allowed in XML 1.0 and are dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML (the Ant/Jenkins schema CI systems read): one testsuite, one
/// testcase per check, `classname` the requirement id.
pub fn junit(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"labctl verify variant {}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" time=\"{:.3}\">",
        report.variant,
        report.checks.len(),
        report.failed(),
        report.skipped(),
        report.millis as f64 / 1000.0
    );
    for c in &report.checks {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml(c.id),
            xml(&c.name),
            c.millis as f64 / 1000.0
        );
        match c.result {
            Outcome::Pass => {}
            Outcome::Fail => {
                let first = c.evidence.lines().next().unwrap_or("");
                let _ = write!(
                    out,
                    "\n    <failure message=\"{}\">{}</failure>\n  ",
                    xml(first),
                    xml(&c.evidence)
                );
            }
            Outcome::Skip => {
                let _ = write!(out, "\n    <skipped message=\"{}\"/>\n  ", xml(&c.evidence));
            }
        }
        if c.result == Outcome::Pass && !c.evidence.is_empty() {
            let _ = write!(
                out,
                "\n    <system-out>{}</system-out>\n  ",
                xml(&c.evidence)
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite>\n");
    out
}

/// The catalog for `--list`: the checks of `groups` with an id in `only`
/// (all when empty), named as the report names them (`<d>` for each domain).
pub fn list(groups: &[&Group], only: &[&str]) -> String {
    let mut out = String::new();
    for spec in groups.iter().flat_map(|g| g.checks.iter()) {
        if !only.is_empty() && !only.contains(&spec.id) {
            continue;
        }
        let scope = match spec.scope {
            Scope::Lab => "",
            Scope::Server => "<d>: ",
        };
        let _ = writeln!(out, "{:<4} {scope}{}", spec.id, spec.what);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Spec;
    use super::*;

    static CA: Spec = Spec::lab("R1", "CA subject");
    static SPF: Spec = Spec::server("R8", "SPF <fail> & reject");
    static TRANSCRIPTS: Spec = Spec::lab("R12", "transcripts");

    fn sample() -> Report {
        let mut skip = TRANSCRIPTS.check(None, false, "no access");
        skip.result = Outcome::Skip;
        skip.millis = 5;
        Report {
            variant: 7,
            lab: "/tmp/lab-07".into(),
            runtime: "local".into(),
            checks: vec![
                CA.check(None, true, "C=UA, ST=Ukraine"),
                SPF.fail(Some("metal.com"), "250 2.1.0 Ok\nsecond line"),
                skip,
            ],
            millis: 1234,
        }
    }

    #[test]
    fn list_names_checks_as_the_report_does() {
        static G: Group = Group {
            checks: &[&CA, &SPF],
            run: |_| Box::pin(async { Vec::new() }),
        };
        assert_eq!(
            list(&[&G], &[]),
            "R1   CA subject\nR8   <d>: SPF <fail> & reject\n"
        );
        assert_eq!(list(&[&G], &["R8"]), "R8   <d>: SPF <fail> & reject\n");
    }

    #[test]
    fn table_ends_with_the_summary() {
        let t = table(&sample());
        assert!(
            t.contains("R1   PASS  CA subject\n            C=UA, ST=Ukraine\n"),
            "{t}"
        );
        assert!(t.contains("R8   FAIL  metal.com: SPF <fail> & reject\n            250 2.1.0 Ok\n            second line\n"), "{t}");
        assert!(t.contains("1 skipped"), "{t}");
        assert_eq!(t.lines().last(), Some("1 passed, 1 failed"));
    }

    #[test]
    fn json_has_counts_and_lowercase_results() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["passed"], 1);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["skipped"], 1);
        assert_eq!(v["checks"][1]["result"], "fail");
        assert_eq!(v["checks"][1]["id"], "R8");
        assert_eq!(v["summary"], "1 passed, 1 failed");
    }

    #[test]
    fn junit_is_escaped_and_counts() {
        let x = junit(&sample());
        assert!(
            x.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("name=\"metal.com: SPF &lt;fail&gt; &amp; reject\""),
            "{x}"
        );
        assert!(x.contains("<failure message=\"250 2.1.0 Ok\">"), "{x}");
        assert!(x.contains("<skipped message=\"no access\"/>"), "{x}");
        assert_eq!(x.matches("<testcase").count(), 3);
        assert_eq!(x.matches("</testcase>").count(), 3);
    }
}
