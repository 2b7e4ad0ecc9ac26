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
    ("adapters/backpack-feed", "backpack-feed"),
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
