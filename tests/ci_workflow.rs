//! `.github/workflows/ci.yml` is the CI that people who fork the project run
//! (nothing here can run GitHub Actions): it must keep running the README's
//! commands, the same ones `.ci/run` runs.

use std::path::Path;

use serde_yaml::Value;

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The commands of the README's first code block: (bring a lab up, run the tests).
fn readme_commands() -> (String, String) {
    let readme = repo_file("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README starts with a ```sh block");
    let commands: Vec<String> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "the README's two commands: {commands:?}");
    (commands[0].clone(), commands[1].clone())
}

/// The `run:` lines of a job's steps, with the step's `if:` and `uses:`.
fn steps(workflow: &Value, job: &str) -> Vec<(String, String, String)> {
    let steps = workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has steps"));
    steps
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or("").trim().to_string();
            (text("run"), text("if"), text("uses"))
        })
        .collect()
}

#[test]
fn the_ci_workflow_runs_the_readme_commands() {
    let workflow: Value =
        serde_yaml::from_str(&repo_file(".github/workflows/ci.yml")).expect("ci.yml is YAML");
    let (up, test) = readme_commands();
    assert_eq!(up, "make up VARIANT=7");
    assert_eq!(test, "make test");

    // Job 1: the smoke test of one lab.
    let smoke = steps(&workflow, "smoke");
    let runs: Vec<&str> = smoke.iter().map(|(r, _, _)| r.as_str()).collect();
    let at = |what: &str| {
        runs.iter()
            .position(|r| r.contains(what))
            .unwrap_or_else(|| panic!("smoke job runs {what:?}: {runs:?}"))
    };
    let (i_up, i_verify, i_down) = (at(&up), at("labctl verify"), at("labctl down"));
    assert!(i_up < i_verify && i_verify < i_down, "{runs:?}");
    let verify = runs[i_verify];
    let junit = verify
        .split_whitespace()
        .skip_while(|w| *w != "--junit")
        .nth(1)
        .unwrap_or_else(|| panic!("verify writes a JUnit file: {verify}"));
    assert!(verify.contains("--variant 7"), "{verify}");
    assert!(runs[i_down].contains("--purge"), "{}", runs[i_down]);
    assert_eq!(
        smoke[i_down].1, "always()",
        "down runs also when verify fails"
    );
    let upload = smoke
        .iter()
        .position(|(_, _, uses)| uses.starts_with("actions/upload-artifact"))
        .expect("the JUnit file is uploaded");
    assert!(i_verify < upload && upload < i_down);
    assert_eq!(
        smoke[upload].1, "always()",
        "uploaded also when verify fails"
    );
    let uploaded = workflow["jobs"]["smoke"]["steps"][upload]["with"]["path"]
        .as_str()
        .unwrap_or("");
    assert_eq!(
        uploaded, junit,
        "the uploaded file is the one verify writes"
    );
    // The binary the steps call is the one `make up` builds.
    let makefile = repo_file("Makefile");
    let bin = makefile
        .lines()
        .find_map(|l| {
            l.strip_prefix("BIN")
                .map(|r| r.trim_start_matches([' ', ':', '=']).trim())
        })
        .expect("Makefile BIN")
        .replace("$(TARGET)", "x86_64-unknown-linux-gnu");
    assert!(verify.starts_with(&bin), "{verify} runs {bin}");

    // Job 2: the README's test command, as `.ci/run` runs it (with CI=true).
    let ci_run: Vec<String> = repo_file(".ci/run")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("make "))
        .map(String::from)
        .collect();
    assert!(ci_run.contains(&test), ".ci/run runs {test}: {ci_run:?}");
    let job: Vec<String> = steps(&workflow, "test")
        .into_iter()
        .map(|(r, _, _)| r)
        .filter(|r| r.starts_with("make "))
        .collect();
    assert_eq!(job, ci_run, "the test job runs what .ci/run runs");
    assert_eq!(workflow["jobs"]["test"]["env"]["CI"].as_str(), Some("true"));
}
