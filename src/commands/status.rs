//! `labctl status [--variant N] [--json]`: running labs, found by labels
//! (Docker) and state files (local), from any folder. The JSON is a stable
//! contract (docs/status-json.md).

use std::process::ExitCode;

use comfy_table::Table;
use serde_json::{Value, json};

use crate::exit;
use crate::render::layout;
use crate::runtime::{Role, RunningLab, discover};

/// The documented JSON object of one lab (docs/status-json.md).
pub fn lab_status_json(lab: &RunningLab) -> Value {
    let from_dir = std::fs::read_to_string(lab.dir.join(layout::LAB_JSON))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|j| j["variant"].as_u64() == Some(u64::from(lab.variant)));
    let node_state = |role: Role, domain: Option<&str>| {
        lab.nodes
            .iter()
            .find(|n| n.role == role && n.domain.as_deref() == domain)
            .map_or("missing", |n| n.state.as_str())
            .to_string()
    };
    let state = if lab.is_running() && lab.nodes.len() == 3 {
        "running"
    } else {
        "degraded"
    };
    let mut j = from_dir.unwrap_or_else(|| {
        // The lab directory is gone: what the labels still tell.
        json!({
            "variant": lab.variant,
            "dir": lab.dir,
            "ca_cert": Value::Null,
            "dns": Value::Null,
            "servers": lab.nodes.iter().filter(|n| n.role == Role::Mail).map(|n| json!({
                "domain": n.domain, "hostname": n.domain.as_ref().map(|d| format!("mail.{d}")),
                "container": n.name,
            })).collect::<Vec<_>>(),
        })
    });
    j["runtime"] = json!(lab.runtime.as_str());
    j["state"] = json!(state);
    if let Some(dns) = j["dns"].as_object_mut() {
        dns.insert("state".into(), json!(node_state(Role::Dns, None)));
    }
    if let Some(servers) = j["servers"].as_array_mut() {
        for s in servers {
            let domain = s["domain"].as_str().map(str::to_string);
            s["state"] = json!(node_state(Role::Mail, domain.as_deref()));
        }
    }
    j
}

/// Runs `labctl status`.
pub async fn run(variant: Option<u32>, json: bool) -> anyhow::Result<ExitCode> {
    let labs = discover(variant).await?;
    if let Some(v) = variant
        && labs.is_empty()
    {
        return Err(exit::check_failed(format!(
            "lab{v:02} is not up (start it with `labctl up --variant {v}`)"
        )));
    }
    if json {
        let objects: Vec<Value> = labs.iter().map(lab_status_json).collect();
        let out = if variant.is_some() || objects.len() == 1 {
            objects.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(objects)
        };
        print_out(&(serde_json::to_string_pretty(&out)? + "\n"));
        return Ok(ExitCode::SUCCESS);
    }
    if labs.is_empty() {
        println!("no lab is up (start one with `labctl up --variant N`)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.set_header([
        "lab",
        "runtime",
        "node",
        "address",
        "state",
        "lab directory",
    ]);
    for lab in &labs {
        let j = lab_status_json(lab);
        for n in &lab.nodes {
            let address = match n.role {
                Role::Dns => format!(
                    "{}:{}",
                    j["dns"]["ip"].as_str().unwrap_or("?"),
                    j["dns"]["port"]
                ),
                Role::Mail => j["servers"]
                    .as_array()
                    .and_then(|s| {
                        s.iter()
                            .find(|s| s["domain"].as_str() == n.domain.as_deref())
                    })
                    .and_then(|s| s["ip"].as_str())
                    .unwrap_or("?")
                    .to_string(),
            };
            table.add_row([
                crate::naming::instance::lab_name(lab.variant),
                lab.runtime.as_str().to_string(),
                n.name.clone(),
                address,
                n.state.as_str().to_string(),
                lab.dir.display().to_string(),
            ]);
        }
    }
    print_out(&format!("{table}\n"));
    Ok(ExitCode::SUCCESS)
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
