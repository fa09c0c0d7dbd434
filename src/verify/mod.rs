//! `labctl verify`: every requirement of the assignment (`labctl verify --list`,
//! R1..R13) checked live against a running lab, as an independent client
//! (the clients in [`crate::client`], never the mail server's code).
//!
//! One module per requirement group; each returns [`Check`]s with the
//! requirement id, the outcome and the evidence (the reply line, the header,
//! the record). The groups run concurrently; messages they send carry a
//! per-run token so they never confuse each other or earlier runs.

mod access;
mod ctx;
mod delivery;
mod dkim;
mod dns;
mod filters;
mod mailboxes;
pub mod messages;
mod pki;
pub mod report;
mod spf;
mod transcripts;

use std::time::Instant;

use futures_util::future::{BoxFuture, join_all};
use serde::Serialize;

pub use ctx::Ctx;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The requirement holds.
    Pass,
    /// It does not.
    Fail,
    /// The check could not be made (said why in the evidence).
    Skip,
}

impl Outcome {
    /// `PASS`, `FAIL`, `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One check: requirement id, what was checked, the outcome and the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Requirement id, `R1`..`R13`.
    pub id: &'static str,
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub result: Outcome,
    /// What was seen (reply lines, header fields, records).
    pub evidence: String,
    /// How long the group that made it took, in milliseconds.
    pub millis: u64,
}

impl Check {
    /// A check that passes when `ok`.
    pub fn new(
        id: &'static str,
        name: impl Into<String>,
        ok: bool,
        evidence: impl Into<String>,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            result: if ok { Outcome::Pass } else { Outcome::Fail },
            evidence: evidence.into(),
            millis: 0,
        }
    }
    /// A failed check.
    pub fn fail(id: &'static str, name: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self::new(id, name, false, evidence)
    }
    /// A skipped check.
    pub fn skip(id: &'static str, name: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            result: Outcome::Skip,
            ..Self::new(id, name, false, why)
        }
    }
}

/// A group of checks: the ids it covers, the checks it makes (for
/// `--list`) and the function that runs them.
pub struct Group {
    /// Requirement ids.
    pub ids: &'static [&'static str],
    /// `(id, description)` of each check, for `--list`.
    pub checks: &'static [(&'static str, &'static str)],
    /// Runs the group.
    pub run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, Vec<Check>>,
}

/// Every group, in report order.
pub fn groups() -> [&'static Group; 10] {
    [
        &pki::GROUP,
        &dns::GROUP,
        &mailboxes::GROUP,
        &access::GROUP,
        &dkim::GROUP,
        &spf::GROUP,
        &filters::GROUP,
        &delivery::GROUP,
        &transcripts::GROUP,
        &access::MAILBOX_ACCESS,
    ]
}

/// Every requirement id that has checks.
pub fn known_ids() -> Vec<&'static str> {
    let mut ids: Vec<_> = groups()
        .iter()
        .flat_map(|g| g.ids.iter().copied())
        .collect();
    ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap_or(0));
    ids.dedup();
    ids
}

/// Normalises `--only` values (`r8`, `R08`, `8` all mean `R8`); an unknown id is an error.
pub fn parse_only(only: &[String]) -> Result<Vec<&'static str>, String> {
    let known = known_ids();
    only.iter()
        .flat_map(|o| o.split(','))
        .map(|o| {
            let n: Option<u32> = o.trim().trim_start_matches(['R', 'r']).parse().ok();
            n.and_then(|n| known.iter().copied().find(|k| k[1..] == n.to_string()))
                .ok_or_else(|| {
                    format!(
                        "--only {o:?}: unknown requirement id; known: {}",
                        known.join(" ")
                    )
                })
        })
        .collect()
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The variant.
    pub variant: u32,
    /// The lab directory.
    pub lab: String,
    /// The runtime.
    pub runtime: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Wall time of the run, milliseconds.
    pub millis: u64,
}

impl Report {
    /// Checks that passed.
    pub fn passed(&self) -> usize {
        self.count(Outcome::Pass)
    }
    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.count(Outcome::Fail)
    }
    /// Checks skipped.
    pub fn skipped(&self) -> usize {
        self.count(Outcome::Skip)
    }
    fn count(&self, o: Outcome) -> usize {
        self.checks.iter().filter(|c| c.result == o).count()
    }
    /// The summary line: `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs the groups covering `only` (all when empty), concurrently, keeping
/// the report order; checks of other ids in a selected group are dropped.
pub async fn run(ctx: &Ctx, only: &[&str]) -> Report {
    let start = Instant::now();
    let selected: Vec<&Group> = groups()
        .into_iter()
        .filter(|g| only.is_empty() || g.ids.iter().any(|id| only.contains(id)))
        .collect();
    let results = join_all(selected.iter().map(|g| async move {
        let t = Instant::now();
        let mut checks = (g.run)(ctx).await;
        let ms = t.elapsed().as_millis() as u64;
        for c in &mut checks {
            c.millis = ms;
        }
        checks
    }))
    .await;
    let checks = results
        .into_iter()
        .flatten()
        .filter(|c| only.is_empty() || only.contains(&c.id))
        .collect();
    Report {
        variant: ctx.lab.variant,
        lab: ctx.lab.dir.display().to_string(),
        runtime: ctx.lab.runtime.as_str().to_string(),
        checks,
        millis: start.elapsed().as_millis() as u64,
    }
}
