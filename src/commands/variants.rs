//! `labctl variants [--json]`: the table of variants.

use std::process::ExitCode;

use comfy_table::Table;
use serde_json::json;

use crate::variant::Catalog;

/// Prints the variants.
pub fn run(catalog: &Catalog, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        let list: Vec<_> = catalog
            .iter()
            .map(|v| {
                json!({
                    "variant": v.number,
                    "ca": v.ca,
                    "domains": v.domains,
                    "mailboxes": v.mailboxes,
                    "spf_policy": v.spf_policy,
                    "source": v.source,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(["N", "CA", "domain 1", "domain 2", "mailboxes", "SPF policy"]);
    for v in catalog.iter() {
        table.add_row([
            v.number.to_string(),
            v.ca.common_name.clone(),
            v.domains[0].clone(),
            v.domains[1].clone(),
            v.mailboxes.join(" "),
            v.spf_policy.clone(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
