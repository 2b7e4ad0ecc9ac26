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
fn every_error_code_is_in_the_api_guide() {
    // A bot's author reads docs/API.md: every code the engine or the edge can answer is there.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/API.md")).expect("docs/API.md");
    let mut codes: Vec<String> =
        engine_core::event::Reason::ALL.iter().map(|r| r.code().to_string()).collect();
    // The edge's: the snake_case literal each error constructor of the HTTP crate is given.
    let openers = [
        "bad_request(",
        "not_found(",
        "unavailable(",
        "gateway_timeout(",
        "error(socket, ",
        "StatusCode::UNAUTHORIZED,",
        "StatusCode::FORBIDDEN,",
        "StatusCode::PAYLOAD_TOO_LARGE,",
        "StatusCode::UNPROCESSABLE_ENTITY,",
        "StatusCode::SERVICE_UNAVAILABLE,",
        "StatusCode::BAD_GATEWAY,",
        "StatusCode::TOO_MANY_REQUESTS,",
        "StatusCode::GATEWAY_TIMEOUT,",
        "StatusCode::METHOD_NOT_ALLOWED,",
        "StatusCode::UNSUPPORTED_MEDIA_TYPE,",
        "StatusCode::BAD_REQUEST,",
    ];
    let src = root.join("adapters/http/src");
    for file in walk(&src) {
        let text = std::fs::read_to_string(src.join(&file)).unwrap();
        for opener in openers {
            for (at, _) in text.match_indices(opener) {
                let rest = text[at + opener.len()..].trim_start();
                let Some(lit) = rest.strip_prefix('"') else { continue };
                let code: String = lit.chars().take_while(|c| *c != '"').collect();
                if !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    codes.push(code);
                }
            }
        }
    }
    codes.sort();
    codes.dedup();
    assert!(codes.len() > 80, "the scan found only {} codes", codes.len());
    let missing: Vec<&String> =
        codes.iter().filter(|c| !guide.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "error codes missing from docs/API.md: {missing:?}");
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
