//! Secrets and the service-mode Redis link, from the environment or files, never from argv
//! (`ps` and `/proc/<pid>/cmdline` show argv to every local user) and never in logs.
//!
//! | secret | environment | file flag |
//! |---|---|---|
//! | JWT signing secret | `HUNDREDX_JWT_SECRET` | `--jwt-secret-file` |
//! | bridge HMAC secret | `HUNDREDX_BRIDGE_SECRET` | `--bridge-secret-file` |
//! | Redis URL with a password | `HUNDREDX_REDIS_URL` | `--redis-url-file` |
//!
//! A file wins over the environment; one trailing newline is ignored.

use std::path::Path;

use anyhow::{Context, Result, bail};
use redis_bridge::signing::{BridgeKey, SECRET_LEN_MIN};
use redis_bridge::target::RedisTarget;

/// The environment variable holding the JWT secret.
pub const JWT_SECRET_ENV: &str = "HUNDREDX_JWT_SECRET";
/// The environment variable holding the bridge secret.
pub const BRIDGE_SECRET_ENV: &str = "HUNDREDX_BRIDGE_SECRET";
/// The environment variable holding the Redis URL.
pub const REDIS_URL_ENV: &str = "HUNDREDX_REDIS_URL";

/// A secret from `file` if given, else from the environment variable `env`; `None` if neither.
pub fn read(env: &str, file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    if let Some(path) = file {
        let mut bytes = std::fs::read(path)
            .with_context(|| format!("reading the secret file {}", path.display()))?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        return Ok(Some(bytes));
    }
    Ok(std::env::var_os(env).map(|v| v.into_encoded_bytes()))
}

/// The bridge key (service mode refuses to run without one).
pub fn bridge_key(file: Option<&Path>) -> Result<BridgeKey> {
    let Some(secret) = read(BRIDGE_SECRET_ENV, file)? else {
        bail!(
            "service mode needs the bridge secret shared by engine, api and feed: set \
             {BRIDGE_SECRET_ENV} or give --bridge-secret-file (at least {SECRET_LEN_MIN} bytes, \
             e.g. `openssl rand -hex 32`)"
        );
    };
    BridgeKey::new(&secret).map_err(|e| anyhow::anyhow!("{BRIDGE_SECRET_ENV}: {e}"))
}

/// Where Redis is: `--redis-url-file`, else `--redis` / `HUNDREDX_REDIS_URL` (`url`), with the
/// CA of `ca_file` for `rediss://`. A URL with a password given on the command line is refused.
pub fn redis_target(
    url: Option<&str>,
    url_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> Result<RedisTarget> {
    let target = match (url_file, url) {
        (Some(path), _) => {
            let bytes = read(REDIS_URL_ENV, Some(path))?.unwrap_or_default();
            let url = String::from_utf8(bytes).context("the Redis URL file is not UTF-8")?;
            RedisTarget::new(url.trim())
        }
        (None, Some(url)) => {
            let t = RedisTarget::new(url);
            let from_env = std::env::var(REDIS_URL_ENV).is_ok_and(|v| v == url);
            if t.has_password() && !from_env {
                bail!(
                    "the Redis URL on the command line carries a password, which every local user \
                     can read in the process list: put it in {REDIS_URL_ENV} or --redis-url-file"
                );
            }
            t
        }
        (None, None) => bail!("give --redis URL, {REDIS_URL_ENV}, or --redis-url-file"),
    };
    target.validate().map_err(anyhow::Error::msg)?;
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the Redis CA file {}", path.display()))?;
            Ok(target.with_ca_pem(pem))
        }
        None => Ok(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_win_and_lose_their_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(
            read("HUNDREDX_TEST_UNSET_VARIABLE", Some(&f)).unwrap().unwrap(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert_eq!(read("HUNDREDX_TEST_UNSET_VARIABLE", None).unwrap(), None);
        assert!(bridge_key(Some(&f)).is_ok());
        std::fs::write(&f, "short").unwrap();
        let e = bridge_key(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("at least 32 bytes") && !e.contains("short"), "{e}");
    }

    #[test]
    fn a_password_on_the_command_line_is_refused_and_never_echoed() {
        let e = redis_target(Some("redis://u:hunter2hunter2@h:1/"), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(REDIS_URL_ENV) && !e.contains("hunter2"), "{e}");
        assert!(redis_target(Some("redis://h:1/"), None, None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "redis://u:hunter2hunter2@h:1/\n").unwrap();
        let t = redis_target(None, Some(&f), None).unwrap();
        assert_eq!(t.redacted(), "redis://u:***@h:1/");
    }
}
