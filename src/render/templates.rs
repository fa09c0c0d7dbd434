//! The templates: embedded copies of `templates/*.j2`, optionally overridden
//! by files of the same name in a user folder.

use std::path::Path;

use minijinja::{Environment, Value, context};
use sha2::{Digest, Sha256};

use super::{RenderError, io_err};

/// The embedded templates, by name.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "domain.zone.j2",
        include_str!("../../templates/domain.zone.j2"),
    ),
    (
        "reverse.zone.j2",
        include_str!("../../templates/reverse.zone.j2"),
    ),
    ("root.zone.j2", include_str!("../../templates/root.zone.j2")),
    ("dns.yaml.j2", include_str!("../../templates/dns.yaml.j2")),
    (
        "mailserver.yaml.j2",
        include_str!("../../templates/mailserver.yaml.j2"),
    ),
    (
        "compose.yml.j2",
        include_str!("../../compose/compose.yml.j2"),
    ),
];

/// RFC 1035 §3.3.14: a TXT character-string holds at most 255 octets.
const TXT_STRING_MAX: usize = 255;

/// Splits a TXT value into quoted strings of at most 255 octets (`"a" "b"`).
fn txt_strings(value: String) -> String {
    value
        .as_bytes()
        .chunks(TXT_STRING_MAX)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The environment with every template, the user's overriding the embedded ones.
pub(super) fn environment(user_dir: Option<&Path>) -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters"),
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("txt_strings", txt_strings);
    for (name, text) in EMBEDDED {
        let source = match user_dir.map(|d| d.join(name)).filter(|p| p.exists()) {
            Some(path) => std::fs::read_to_string(&path).map_err(io_err(&path))?,
            None => text.to_string(),
        };
        env.add_template_owned(*name, source)
            .map_err(|source| RenderError::Template {
                name: name.to_string(),
                source,
            })?;
    }
    Ok(env)
}

/// Renders one template.
pub(super) fn render(env: &Environment<'_>, name: &str, ctx: Value) -> Result<String, RenderError> {
    let err = |source| RenderError::Template {
        name: name.to_string(),
        source,
    };
    env.get_template(name)
        .map_err(err)?
        .render(ctx)
        .map_err(err)
}

/// Renders a zone template with a serial derived from the zone's content, so
/// the serial changes exactly when a record does (RFC 1035 §3.3.13) and an
/// unchanged zone renders byte for byte the same.
pub(super) fn render_zone(
    env: &Environment<'_>,
    name: &str,
    ctx: Value,
) -> Result<String, RenderError> {
    let draft = render(env, name, context! { serial => 0, ..ctx.clone() })?;
    let digest = Sha256::digest(draft.as_bytes());
    let serial = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff;
    render(env, name, context! { serial => serial.max(1), ..ctx })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `limits:` section of the mail server template lists every limit
    /// of `mailserver::config::Limits` with its default, set or commented
    /// out (`  # key: value`), so a student sees each one and can change it.
    #[test]
    fn mailserver_template_lists_every_limit_with_its_default() {
        let (_, text) = EMBEDDED
            .iter()
            .find(|(n, _)| *n == "mailserver.yaml.j2")
            .unwrap();
        let section: String = text
            .lines()
            .skip_while(|l| *l != "limits:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("# ").unwrap_or(l);
                let (key, value) = l.split_once(": ")?;
                let ok =
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                ok.then(|| format!("{key}: {value}\n"))
            })
            .collect();
        let listed: serde_yaml::Mapping = serde_yaml::from_str(&section).unwrap();
        let defaults = serde_yaml::to_value(mailserver::config::Limits::default()).unwrap();
        let defaults = defaults.as_mapping().unwrap();
        for (key, value) in defaults {
            assert_eq!(
                listed.get(key),
                Some(value),
                "limit {key:?} in the template"
            );
        }
        assert_eq!(listed.len(), defaults.len(), "{listed:?}");
    }

    #[test]
    fn txt_strings_split_at_255() {
        let s = txt_strings("a".repeat(300));
        assert_eq!(s, format!("\"{}\" \"{}\"", "a".repeat(255), "a".repeat(45)));
    }
}
