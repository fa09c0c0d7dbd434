//! The house rules of docs/architecture.md, read from the source: the
//! modules of `src/` form layers (no import circle), and no code outside
//! `src/runtime/` asks which runtime a lab is on.
//!
//! Dependencies are read from every `crate::` path of a file (in `use`
//! lines and inline) and from its `mod` declarations, after comments are
//! removed. A module is a file of `src/` (`x.rs`) or a folder (`x/`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, relative to it.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).expect("read src") {
            let entry = entry.expect("dir entry");
            let name = rel.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                stack.push(name);
            } else if name.extension().is_some_and(|e| e == "rs") {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// `text` without `//` comments (doc comments included).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("http://...") is rare in src/
            // and only hides an edge after it on that line.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `text` refers to through `crate::` paths, the
/// grouped form `use crate::{a, b::c}` included.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Top-level names of the group: the first identifier of each
            // comma-separated item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = after;
    }
    out
}

/// The module graph of `src/`: top-level module -> the modules it uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let module_of = |rel: &Path| -> String {
        let first = rel.components().next().expect("a path");
        first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string()
    };
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    for file in &files {
        let me = module_of(file);
        let text = without_comments(&std::fs::read_to_string(src.join(file)).expect("read"));
        let uses = graph.entry(me.clone()).or_default();
        for m in crate_refs(&text) {
            if m != me && modules.contains(&m) {
                uses.insert(m);
            }
        }
    }
    graph
}

/// A circle of `graph`, if it has one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut circle = path[start..].to_vec();
                circle.push(node.to_string());
                return Some(circle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut marks, &mut Vec::new()))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_modules_of_src_form_layers_without_a_circle() {
    let graph = module_graph(&src());
    // The reader finds the known edges (so an empty graph cannot pass).
    assert!(graph["commands"].contains("runtime"), "{graph:?}");
    assert!(graph["verify"].contains("client"), "{graph:?}");
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "import circle among the modules of src/: {} (docs/architecture.md: what may import what)",
            circle.join(" -> ")
        );
    }
    // The bottom layer stays at the bottom.
    for low in ["naming", "process", "variant", "client"] {
        assert!(
            graph[low].is_empty(),
            "{low} must not use other modules of labctl, it uses {:?}",
            graph[low]
        );
    }
    for (module, uses) in &graph {
        assert!(
            !uses.contains("commands") || module == "main" || module == "lib",
            "{module} reaches up into commands"
        );
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_refs("use crate::{a::X, b, c::{d, e}}; crate::f::g(); crate::{h};"),
        BTreeSet::from(["a", "b", "c", "f", "h"].map(String::from))
    );
}

#[test]
fn only_the_runtimes_ask_which_runtime_a_lab_is_on() {
    let src = src();
    let mut offenders = Vec::new();
    for file in rust_files(&src) {
        if file.starts_with("runtime") {
            continue;
        }
        let text = without_comments(&std::fs::read_to_string(src.join(&file)).expect("read"));
        for (n, line) in text.lines().enumerate() {
            // `Docker::connect` in the commands that exist only for Docker
            // (`image` builds the image, `doctor` checks the engine) is the
            // runtime's constructor; everything else goes through LabRuntime.
            let docker_only = file.ends_with("image.rs") || file.ends_with("doctor.rs");
            if line.contains("is_local(") || (line.contains("Docker::connect") && !docker_only) {
                offenders.push(format!("src/{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "outside src/runtime/ (use runtime::LabRuntime):\n{}",
        offenders.join("\n")
    );
}

/// Every path written after `crate::` in `text`, nested groups expanded:
/// `crate::a::{b::C, d}` gives `a::b::C` and `a::d`.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    /// Expands one path from `s` (after `crate::`), into `out`, with `prefix`.
    fn expand(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        let mut rest = s;
        loop {
            rest = rest.trim_start();
            if let Some(group) = rest.strip_prefix('{') {
                // Split the group's items at depth 0.
                let mut depth = 0;
                let mut start = 0;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            expand(&group[start..j], &path, out);
                            return;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(&group[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                break;
            }
            rest = &rest[ident.len()..];
            path.push(ident);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        expand(rest, &[], &mut out);
    }
    out
}

/// The file of `src/` a `crate::` path lands in: its longest prefix that
/// names a module file (`a/b.rs` or `a/b/mod.rs`).
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let rel: PathBuf = path[..n].iter().collect();
        [rel.with_extension("rs"), rel.join("mod.rs")]
            .into_iter()
            .find(|f| src.join(f).is_file())
    })
}

#[test]
fn the_files_of_src_import_each_other_without_a_circle() {
    // The reading: edges from the `crate::` paths of each file (not
    // `mod` declarations or `super::`), to the file each path lands in.
    let src = src();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let text = without_comments(&std::fs::read_to_string(src.join(&file)).expect("read"));
        let me = file.display().to_string();
        let uses = graph.entry(me.clone()).or_default();
        for path in crate_paths(&text) {
            if let Some(target) = file_of(&src, &path) {
                let target = target.display().to_string();
                if target != me {
                    uses.insert(target);
                }
            }
        }
    }
    assert!(
        graph["commands/up.rs"].contains("runtime/mod.rs"),
        "the reader finds the known edges: {:?}",
        graph["commands/up.rs"]
    );
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "import circle among the files of src/: {}",
            circle.join(" -> ")
        );
    }
}

#[test]
fn crate_paths_expand_nested_groups() {
    assert_eq!(
        crate_paths("use crate::a::{b::C, d::{e, f::G}}; x(crate::h::i(1));"),
        [
            vec!["a", "b", "C"],
            vec!["a", "d", "e"],
            vec!["a", "d", "f", "G"],
            vec!["h", "i"],
        ]
        .map(|p| p.into_iter().map(String::from).collect::<Vec<_>>())
    );
}
