//! `labctl verify`: every requirement of the assignment (`labctl verify --list`,
//! R1..R13) checked live against a running lab, as an independent client
//! (the clients in [`crate::client`], never the mail server's code).
//!
//! One module per requirement group; each returns [`Check`]s with the
//! requirement id, the outcome and the evidence (the reply line, the header,
//! the record). The groups run concurrently; messages they send carry a
//! per-run token so they never confuse each other or earlier runs.

/// Declares catalog entries ([`Spec`]), one a line: `NAME: server "R9" "what";`
/// (`server`: once per server, `lab`: once).
macro_rules! catalog {
    ($($name:ident: $scope:ident $id:literal $what:literal;)+) => {
        $(static $name: $crate::verify::Spec = $crate::verify::Spec::$scope($id, $what);)+
    };
}

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
use ctx::Delivered;

use crate::lab::Server;
use crate::variant::Variant;

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

/// Whether a check is made once for the lab or once for each server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Once.
    Lab,
    /// Once for each domain of the variant.
    Server,
}

/// One check of the catalog: its requirement id and what it checks. The
/// same value names the check in `--list` and in the report, and the run
/// reports every check of the catalog (a check its group did not report
/// fails), so the two cannot drift and no check can disappear.
#[derive(Debug)]
pub struct Spec {
    /// Requirement id, `R1`..`R13`.
    pub id: &'static str,
    /// What is checked.
    pub what: &'static str,
    /// Once, or once per server.
    pub scope: Scope,
    /// Whether the variant calls for it (always when `None`).
    pub when: Option<fn(&Variant) -> bool>,
}

impl Spec {
    /// A check made once for the lab.
    pub const fn lab(id: &'static str, what: &'static str) -> Self {
        Self {
            id,
            what,
            scope: Scope::Lab,
            when: None,
        }
    }
    /// A check made once for each server.
    pub const fn server(id: &'static str, what: &'static str) -> Self {
        Self {
            id,
            what,
            scope: Scope::Server,
            when: None,
        }
    }
    /// Only for the variants where `when` holds.
    pub const fn only_when(self, when: fn(&Variant) -> bool) -> Self {
        Self {
            when: Some(when),
            ..self
        }
    }
    /// Whether the variant calls for this check.
    pub fn applies(&self, v: &Variant) -> bool {
        self.when.is_none_or(|w| w(v))
    }
    /// The outcome of this check for `domain` (`None` for a lab check): passes when `ok`.
    pub fn check(
        &'static self,
        domain: Option<&str>,
        ok: bool,
        evidence: impl Into<String>,
    ) -> Check {
        Check {
            id: self.id,
            name: match domain {
                Some(d) => format!("{d}: {}", self.what),
                None => self.what.to_string(),
            },
            result: if ok { Outcome::Pass } else { Outcome::Fail },
            evidence: evidence.into(),
            millis: 0,
            spec: self,
            scope: domain.map(str::to_string),
        }
    }
    /// This check failed for `domain`.
    pub fn fail(&'static self, domain: Option<&str>, evidence: impl Into<String>) -> Check {
        self.check(domain, false, evidence)
    }
    /// The outcome for server `s`.
    pub fn on(&'static self, s: &Server, ok: bool, evidence: impl Into<String>) -> Check {
        self.check(Some(&s.domain), ok, evidence)
    }
    /// Failed for server `s`.
    pub fn fail_on(&'static self, s: &Server, evidence: impl Into<String>) -> Check {
        self.check(Some(&s.domain), false, evidence)
    }
}

/// One check's outcome: requirement id, what was checked, the outcome and the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Requirement id, `R1`..`R13`.
    pub id: &'static str,
    /// What was checked (`<domain>: ` and the catalog's text).
    pub name: String,
    /// The outcome.
    pub result: Outcome,
    /// What was seen (reply lines, header fields, records).
    pub evidence: String,
    /// How long the group that made it took, in milliseconds.
    pub millis: u64,
    /// The catalog entry.
    #[serde(skip)]
    pub spec: &'static Spec,
    /// The domain it was made for (`None`: the lab).
    #[serde(skip)]
    pub scope: Option<String>,
}

/// A group of checks: the checks it makes and the function that runs them.
pub struct Group {
    /// The catalog of its checks, in report order.
    pub checks: &'static [&'static Spec],
    /// Runs the group.
    pub run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, Vec<Check>>,
}

impl Group {
    /// Whether the group has checks of any of `ids` (all when empty).
    pub fn covers(&self, ids: &[&str]) -> bool {
        ids.is_empty() || self.checks.iter().any(|c| ids.contains(&c.id))
    }

    /// Every check of the group failed with `cause` (a precondition did not hold).
    pub fn fail_all(&'static self, ctx: &Ctx, cause: &str) -> Vec<Check> {
        fail_all(self.checks, ctx, cause)
    }
}

/// Every check of `specs` the variant calls for, failed with `cause`.
pub fn fail_all(specs: &'static [&'static Spec], ctx: &Ctx, cause: &str) -> Vec<Check> {
    specs
        .iter()
        .filter(|s| s.applies(&ctx.variant))
        .flat_map(|&s| {
            scopes(s, ctx)
                .into_iter()
                .map(move |d| s.fail(d.as_deref(), cause))
        })
        .collect()
}

/// The domains a check is made for, from the variant table (not lab.json).
fn scopes(spec: &Spec, ctx: &Ctx) -> Vec<Option<String>> {
    match spec.scope {
        Scope::Lab => vec![None],
        Scope::Server => ctx.variant.domains.iter().cloned().map(Some).collect(),
    }
}

/// Puts a group's checks in catalog order (per check, domain 1 then 2) and
/// adds, failed, every check of the catalog the group did not report.
fn complete(ctx: &Ctx, g: &Group, mut got: Vec<Check>) -> Vec<Check> {
    let mut out = Vec::new();
    for &spec in g.checks.iter().filter(|s| s.applies(&ctx.variant)) {
        for scope in scopes(spec, ctx) {
            let (mine, rest): (Vec<Check>, Vec<Check>) = got
                .into_iter()
                .partition(|c| std::ptr::eq(c.spec, spec) && c.scope == scope);
            got = rest;
            if mine.is_empty() {
                out.push(spec.fail(
                    scope.as_deref(),
                    "not reported: the check did not run (a bug in labctl verify)",
                ));
            }
            out.extend(mine);
        }
    }
    // Outcomes outside the catalog (a domain not in the variant): kept, failed.
    out.extend(got.into_iter().map(|mut c| {
        c.result = Outcome::Fail;
        c.evidence = format!("not a check of the variant's catalog\n{}", c.evidence);
        c
    }));
    out
}

/// Runs `f` on the probe messages that were delivered (one each way);
/// every check of `specs` that `f` did not report then fails with the
/// cause of the probe that was not.
pub async fn on_probes<'a>(
    ctx: &'a Ctx,
    specs: &'static [&'static Spec],
    f: impl FnOnce(Vec<&'a Delivered>) -> BoxFuture<'a, Vec<Check>>,
) -> Vec<Check> {
    let probes = ctx.probes().await;
    let mut checks = f(probes.iter().filter_map(|p| p.as_ref().ok()).collect()).await;
    let errors: Vec<&str> = probes
        .iter()
        .filter_map(|p| p.as_ref().err())
        .map(String::as_str)
        .collect();
    if !errors.is_empty() {
        let cause = format!("the probe message: {}", errors.join("; "));
        let missing: Vec<Check> = fail_all(specs, ctx, &cause)
            .into_iter()
            .filter(|m| {
                !checks
                    .iter()
                    .any(|c| std::ptr::eq(c.spec, m.spec) && c.scope == m.scope)
            })
            .collect();
        checks.extend(missing);
    }
    checks
}

/// Runs `f` for each server, concurrently, and collects the checks.
pub async fn per_server<'a, F, Fut>(ctx: &'a Ctx, f: F) -> Vec<Check>
where
    F: Fn(usize, &'a Server) -> Fut,
    Fut: std::future::Future<Output = Vec<Check>>,
{
    join_all(ctx.lab.servers.iter().enumerate().map(|(i, s)| f(i, s)))
        .await
        .into_iter()
        .flatten()
        .collect()
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
        .flat_map(|g| g.checks.iter().map(|c| c.id))
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
/// the catalog's order; checks of other ids in a selected group are left out.
pub async fn run(ctx: &Ctx, only: &[&str]) -> Report {
    let start = Instant::now();
    let selected: Vec<&Group> = groups().into_iter().filter(|g| g.covers(only)).collect();
    let results = join_all(selected.iter().map(|g| async move {
        let t = Instant::now();
        let mut checks = complete(ctx, g, (g.run)(ctx).await);
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
