//! Passwords (argon2id, off the async threads) and tokens (JWT, HS256 only, `exp` required).

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Password hashing with bounded work: at most `concurrency` argon2 computations at once (each
/// holds ~19 MiB), at most `queue` more waiting, the rest refused at once with `503 busy`.
///
/// Unbounded, 500 concurrent sign-ins took a server from 65 MiB to 13 GiB and a normal sign-in
/// to 6.8 s. A sign-in with an unknown email still runs the (dummy) hash, so it takes a slot too.
#[derive(Debug, Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

#[derive(Debug)]
struct HasherInner {
    permits: Arc<Semaphore>,
    concurrency: usize,
    queue: usize,
    queue_wait: Duration,
    admitted: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    in_flight_max: Arc<AtomicUsize>,
    rejected: AtomicU64,
}

/// What the hasher has done (for `/metrics` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherStats {
    /// Hashes running now.
    pub in_flight: usize,
    /// Most hashes ever running at once.
    pub in_flight_max: usize,
    /// Requests refused with `busy`.
    pub rejected: u64,
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes with `queue` waiting, each for at most
    /// `queue_wait`.
    pub fn new(concurrency: usize, queue: usize, queue_wait: Duration) -> Hasher {
        assert!(concurrency > 0, "validated at start");
        Hasher {
            inner: Arc::new(HasherInner {
                permits: Arc::new(Semaphore::new(concurrency)),
                concurrency,
                queue,
                queue_wait,
                admitted: AtomicUsize::new(0),
                in_flight: Arc::new(AtomicUsize::new(0)),
                in_flight_max: Arc::new(AtomicUsize::new(0)),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// Runs `work` (a hash or a verification) on the blocking pool within the bounds, or refuses.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let inner = &self.inner;
        let admitted = inner.admitted.fetch_add(1, Ordering::AcqRel) + 1;
        let _admission = Admission(&inner.admitted);
        if admitted > inner.concurrency + inner.queue {
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::busy("too many sign-ins and sign-ups in progress"));
        }
        let permit =
            tokio::time::timeout(inner.queue_wait, Arc::clone(&inner.permits).acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    inner.rejected.fetch_add(1, Ordering::Relaxed);
                    ApiError::busy("too many sign-ins and sign-ups in progress")
                })?;
        let (in_flight, max) = (Arc::clone(&inner.in_flight), Arc::clone(&inner.in_flight_max));
        // The permit moves into the blocking task: if the client goes away, the slot stays
        // taken until the hash really ends, so the bound holds for the CPU and memory too.
        tokio::task::spawn_blocking(move || {
            let now = in_flight.fetch_add(1, Ordering::AcqRel) + 1;
            max.fetch_max(now, Ordering::AcqRel);
            let r = work();
            in_flight.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
            r
        })
        .await
        .map_err(|_| ApiError::busy("password hashing failed; retry"))
    }

    /// Counters.
    pub fn stats(&self) -> HasherStats {
        HasherStats {
            in_flight: self.inner.in_flight.load(Ordering::Relaxed),
            in_flight_max: self.inner.in_flight_max.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
        }
    }
}

struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Normalises a login: trimmed, lower-case. Returns `None` if it is not a plausible email or is
/// longer than the engine stores (64 bytes).
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (user, domain) = e.split_once('@')?;
    let ok = !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= 64
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

/// Hashes a password to a PHC string (argon2id, random salt). CPU-heavy: call it from a blocking
/// thread.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| ApiError::bad_request("invalid_password", "the password cannot be hashed"))
}

/// Verifies a password against a PHC string. CPU-heavy: call it from a blocking thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

/// The token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The account id, as a string.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
}

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl_secs`.
    pub fn new(secret: &[u8], ttl_secs: u64) -> Tokens {
        // The algorithm is pinned: a token whose header says anything but HS256 (including
        // `none`) is refused before its signature is even looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    /// A token for `account`; returns it and its expiry (seconds since the epoch).
    pub fn issue(&self, account: u32) -> Result<(String, u64), ApiError> {
        let iat = now_secs();
        let claims = Claims { sub: account.to_string(), exp: iat + self.ttl_secs, iat };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(|t| (t, claims.exp))
            .map_err(|e| {
                tracing::error!(error = %e, "token signing failed");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "token_error",
                    "the token could not be issued",
                )
            })
    }

    /// The account id a valid token names.
    pub fn verify(&self, token: &str) -> Result<u32, ApiError> {
        let invalid = || ApiError::unauthorized("invalid or expired token");
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| invalid())?;
        // Issued in the future (beyond the leeway): not ours, or a clock gone wrong.
        if data.claims.iat > now_secs() + self.validation.leeway {
            return Err(invalid());
        }
        data.claims.sub.parse().map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Alice@Example.COM "), Some("alice@example.com".into()));
        for bad in [
            "",
            "alice",
            "@x.com",
            "a@b",
            "a@.com",
            "a b@x.com",
            &format!("{}@x.com", "a".repeat(64)),
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_round_trip_and_other_secrets_fail() {
        let t = Tokens::new(b"secret-one", 60);
        let (tok, exp) = t.issue(42).unwrap();
        assert!(exp > now_secs());
        assert_eq!(t.verify(&tok), Ok(42));
        assert!(Tokens::new(b"secret-two", 60).verify(&tok).is_err());
        assert!(t.verify("not.a.token").is_err());
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$") && h.len() <= 128, "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
    }
}
