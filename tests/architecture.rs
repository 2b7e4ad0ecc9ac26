//! The crates' allowed dependencies (docs/ARCHITECTURE.md): engine-core depends on no other
//! crate of ours; the ground crate only on engine-core; an adapter on engine-core and the ground
//! crate, never on another adapter (an integration test may wire two, as the binary does, through
//! `[dev-dependencies]`). Only the binary wires adapters together.

use std::path::Path;

/// Our crates: (folder, package name).
const ADAPTERS: [(&str, &str); 4] = [
    ("adapters/http", "hundredx-http"),
    ("adapters/history", "history"),
    ("adapters/redis-bridge", "redis-bridge"),
    ("adapters/price-feed", "price-feed"),
];

/// The package names under `[dependencies]` (and `[dependencies.x]` tables) of a manifest.
fn runtime_dependencies(folder: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut names = Vec::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            if let Some(name) = section.strip_prefix("dependencies.") {
                names.push(name.to_owned());
            }
            continue;
        }
        if section == "dependencies"
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            names.push(name.trim().split('.').next().unwrap_or_default().to_owned());
        }
    }
    names
}

#[test]
fn no_adapter_depends_on_another() {
    for (folder, name) in ADAPTERS {
        let deps = runtime_dependencies(folder);
        assert!(deps.iter().any(|d| d == "engine-core"), "{name} stands on engine-core: {deps:?}");
        for (_, other) in ADAPTERS {
            assert!(!deps.iter().any(|d| d == other), "{name} depends on the adapter {other}");
        }
    }
}

#[test]
fn the_ground_and_the_core_depend_on_no_adapter() {
    let ground = runtime_dependencies("ground");
    let core = runtime_dependencies("engine-core");
    for (_, adapter) in ADAPTERS {
        assert!(!ground.iter().any(|d| d == adapter), "ground depends on {adapter}");
        assert!(!core.iter().any(|d| d == adapter), "engine-core depends on {adapter}");
    }
    assert!(!core.iter().any(|d| d == "hundredx-ground"), "engine-core is below the ground");
    assert!(ground.iter().any(|d| d == "engine-core"), "{ground:?}");
}

/// A module's file and the modules its code names (`crate::x::…`, `super::x`), comments and
/// test modules left out.
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let name_of = |p: &Path| -> String {
        let rel = p.strip_prefix(src).unwrap().with_extension("");
        let rel = rel.to_string_lossy().replace('/', "::");
        rel.strip_suffix("::mod").map(str::to_owned).unwrap_or(rel)
    };
    let modules: Vec<String> = files.iter().map(|p| name_of(p)).collect();
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|c| modules.contains(c))
    };
    let mut graph = std::collections::BTreeMap::new();
    for (file, name) in files.iter().zip(&modules) {
        if name == "lib" || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let parent = name.rsplit_once("::").map(|(p, _)| p.to_owned());
        let mut deps = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (prefix, base) in [("crate::", None), ("super::", parent.as_deref())] {
                for (i, _) in line.match_indices(prefix) {
                    let rest: String = line[i + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':')
                        .collect();
                    let full = match base {
                        Some(b) => format!("{b}::{rest}"),
                        None if prefix == "super::" => rest,
                        None => rest,
                    };
                    if let Some(m) = resolve(full.trim_end_matches(':'))
                        && m != *name
                        && !deps.contains(&m)
                    {
                        deps.push(m);
                    }
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

/// A circle through `from`, if any (the modules on it).
fn circle_through(
    graph: &std::collections::BTreeMap<String, Vec<String>>,
    from: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = std::collections::BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == from {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crates = ["engine-core/src", "ground/src", "src"]
        .into_iter()
        .chain(ADAPTERS.iter().map(|(folder, _)| *folder))
        .map(|c| if c.ends_with("src") { c.to_owned() } else { format!("{c}/src") });
    for src in crates {
        let graph = module_graph(&root.join(&src));
        assert!(graph.len() > 2, "{src}: modules found: {graph:?}");
        for module in graph.keys() {
            if let Some(circle) = circle_through(&graph, module) {
                panic!("{src}: an import circle: {}", circle.join(" -> "));
            }
        }
    }
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A production file stays under ~600 lines (its unit tests not counted) unless its header says
/// why it is longer: a reader should find one concern per file.
#[test]
fn a_file_over_600_lines_says_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for src in ["engine-core/src", "ground/src", "src"] {
        rust_files(&root.join(src), &mut files);
    }
    for (folder, _) in ADAPTERS {
        rust_files(&root.join(folder).join("src"), &mut files);
    }
    assert!(files.len() > 50, "{} files found", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let production = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let lines = production.lines().count();
        let header: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(
            lines <= 600 || header.contains("600 lines on purpose"),
            "{path:?}: {lines} lines of production code, and its header does not say why"
        );
    }
}
