//! The contract lives in the repository (`docs/DESIGN.md`) and says what the code does: every
//! reason code the engine can answer with and every documented route is in it, and nothing in
//! the repository points at a contract outside it any more.

use std::path::Path;

fn design() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DESIGN.md");
    std::fs::read_to_string(path).expect("docs/DESIGN.md is the contract")
}

#[test]
fn every_reason_code_is_in_the_contract() {
    let design = design();
    let missing: Vec<&str> = engine_core::event::Reason::ALL
        .iter()
        .map(|r| r.code())
        .filter(|code| !design.contains(&format!("`{code}`")))
        .collect();
    assert!(missing.is_empty(), "reason codes missing from docs/DESIGN.md: {missing:?}");
}

#[test]
fn every_documented_route_is_in_the_contract() {
    let design = design();
    let missing: Vec<String> = hundredx_http::openapi::operations()
        .into_iter()
        .map(|(_, path, _)| path)
        .filter(|path| !design.contains(path.as_str()))
        .collect();
    assert!(missing.is_empty(), "routes missing from docs/DESIGN.md: {missing:?}");
}

#[test]
fn nothing_points_at_a_contract_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = std::process::Command::new("git")
        .args(["ls-files", "*.md", "*.rs", "*.toml", "*.sh", "scripts/*", ".ci/*"])
        .current_dir(root)
        .output();
    // Without git (an exported tree) the crates' own folders are walked instead.
    let files: Vec<String> = match listed {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
        }
        _ => walk(root),
    };
    assert!(files.len() > 20, "found the repository's files: {}", files.len());
    let outside = ["../shared", "shared/DESIGN"];
    let pointing: Vec<&String> = files
        .iter()
        .filter(|f| !f.ends_with("tests/contract.rs"))
        .filter(|f| {
            std::fs::read_to_string(root.join(f))
                .is_ok_and(|text| outside.iter().any(|o| text.contains(o)))
        })
        .collect();
    assert!(pointing.is_empty(), "files pointing outside the repository: {pointing:?}");
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && !name.starts_with('.') && name != "target" && name != "node_modules" {
                dirs.push(p);
            } else if name.ends_with(".md") || name.ends_with(".rs") || name.ends_with(".toml") {
                out.push(p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned());
            }
        }
    }
    out
}
