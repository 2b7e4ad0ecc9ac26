//! The Python and TypeScript clients' own suites (clients/python, clients/typescript), run
//! against a real `hundredx serve` each starts (its own data directory and port; it restarts
//! it too): sign up, create a key, trade signed, receive the fills by push, survive a restart.
//! They need Debian's python3-httpx, python3-websockets, python3-cryptography, python3-pytest,
//! and nodejs with npm (the suite installs the TypeScript client's pinned packages).

use std::path::Path;
use std::process::Command;

fn need(check: &str, package: &str) {
    let found = Command::new("sh").args(["-c", check]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`{check}` failed: install it with `apt-get install {package}`"
    );
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_python_client_trades_signed_and_survives_a_restart() {
    need(
        "/usr/bin/python3 -c 'import httpx, websockets, cryptography, pytest'",
        "python3-httpx python3-websockets python3-cryptography python3-pytest",
    );
    let status = Command::new("/usr/bin/python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(root().join("clients/python"))
        .env("PYTHONPATH", root().join("clients/python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HX_BIN", env!("CARGO_BIN_EXE_hundredx"))
        .status()
        .expect("python3");
    assert!(status.success(), "the Python client's tests failed (output above)");
}

#[test]
fn the_typescript_client_trades_signed_and_survives_a_restart() {
    need("command -v node", "nodejs");
    need("command -v npm", "npm");
    let dir = root().join("clients/typescript");
    if !dir.join("node_modules/typescript").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (apt-get install npm)");
        assert!(status.success(), "npm ci failed in clients/typescript");
    }
    let status = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&dir)
        .env("HX_BIN", env!("CARGO_BIN_EXE_hundredx"))
        .status()
        .expect("npm");
    assert!(status.success(), "the TypeScript client's tests failed (output above)");
}
