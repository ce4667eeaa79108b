//! raftstore's modules form a tree: no module reaches, directly or through
//! others, a module that depends on it.
//!
//! Reads every source file under `src/`, collects the `crate::<module>`
//! paths its code names (comments skipped, test modules included), and
//! fails on any cycle between the top-level modules declared in `lib.rs`.
//! `cargo test -p raftstore --test module_tree -- --nocapture` prints the
//! module map (each module and what it uses), layered from the leaves up.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules declared in `lib.rs` (`mod x;` / `pub mod x;`).
fn top_level_modules(src: &Path) -> Vec<String> {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// The source files of module `name`: `src/name.rs` and everything under
/// `src/name/`.
fn module_files(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{name}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without its comments (line comments and doc
/// comments; raftstore has no block comments).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal would cut the line short;
            // that can only hide a path, never invent one.
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segments after every `crate::` in `code`, including the
/// items of a `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if !first.is_empty() {
                    found.insert(first.to_owned());
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
        rest = after;
    }
    found
}

fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&src);
    assert!(
        modules.len() > 5,
        "found only {modules:?} in src/lib.rs: the parser is broken"
    );
    let known: BTreeSet<&str> = modules.iter().map(String::as_str).collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let files = module_files(&src, module);
        assert!(!files.is_empty(), "no source file for module {module}");
        let mut deps = BTreeSet::new();
        for file in files {
            let text = fs::read_to_string(&file).expect("read source file");
            for dep in crate_paths(&code_of(&text)) {
                if dep != *module && known.contains(dep.as_str()) {
                    deps.insert(dep);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// A cycle through `start`, if there is one reachable from it.
fn find_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(pos) = path.iter().position(|n| n == node) {
        let mut cycle = path[pos..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for dep in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(graph, dep, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

/// Modules by layer: layer 0 uses no other module, layer n only modules of
/// lower layers.
fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while placed.len() < graph.len() {
        let layer: Vec<String> = graph
            .iter()
            .filter(|(m, deps)| !placed.contains(*m) && deps.iter().all(|d| placed.contains(d)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(!layer.is_empty(), "cycle left after layering");
        placed.extend(layer.iter().cloned());
        out.push(layer);
    }
    out
}

#[test]
fn modules_form_a_tree_without_cycles() {
    let graph = dependency_graph();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = find_cycle(&graph, module, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
    for (i, layer) in layers(&graph).iter().enumerate() {
        for module in layer {
            let deps: Vec<&str> = graph[module].iter().map(String::as_str).collect();
            println!("layer {i}: {module:<12} uses {deps:?}");
        }
    }
}

#[test]
fn the_path_parser_sees_groups_nested_paths_and_skips_comments() {
    let code = code_of(
        "use crate::a::X;\nuse crate::{b, c::Y};\nlet z = crate::d::f();\n// crate::e\n/// [`x`](crate::g)\n",
    );
    let got: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(got, vec!["a", "b", "c", "d"]);
}
