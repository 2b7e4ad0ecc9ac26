//! Passwords (argon2id, off the async threads) and tokens (JWT, HS256 only, `exp` required).

use ground::time::now_secs;

use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::ApiError;

/// Password hashing with bounded work: at most `concurrency` argon2 computations at once (each
/// holds ~19 MiB), at most `queue` more waiting, the rest refused at once with `503 busy`.
///
/// Unbounded, 500 concurrent sign-ins took a server from 65 MiB to 13 GiB and a normal sign-in
/// to 6.8 s. A sign-in with an unknown email still runs the (dummy) hash, so it takes a slot too.
///
/// The hashes run on a pool of exactly `concurrency` threads of its own (not tokio's blocking
/// pool, which grows to hundreds of threads): glibc keeps each thread's freed argon2 memory in
/// that thread's arena, so with a fixed set of threads the memory held after a burst is at most
/// `concurrency` blocks, reused by the next burst, instead of one block per thread that ever
/// hashed. The threads end when the last `Hasher` clone is dropped.
#[derive(Debug, Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
struct HasherInner {
    jobs: crossbeam_channel::Sender<Job>,
    concurrency: usize,
    queue: usize,
    queue_wait: Duration,
    admitted: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    in_flight_max: Arc<AtomicUsize>,
    rejected: Arc<AtomicU64>,
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

fn busy() -> ApiError {
    ApiError::busy("too many sign-ins and sign-ups in progress")
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes (on as many threads) with `queue` waiting,
    /// each for at most `queue_wait`.
    pub fn new(concurrency: usize, queue: usize, queue_wait: Duration) -> Hasher {
        assert!(concurrency > 0, "validated at start");
        // Admission bounds what is queued; the channel's own bound is a second fence.
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(concurrency + queue);
        for i in 0..concurrency {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hundredx-hash-{i}"))
                .spawn(move || rx.iter().for_each(|job| job()));
            // Without a thread the queue is still drained by the others; with none at all every
            // job times out as `busy`: loud in the log, never a panic.
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Hasher {
            inner: Arc::new(HasherInner {
                jobs,
                concurrency,
                queue,
                queue_wait,
                admitted: Arc::new(AtomicUsize::new(0)),
                in_flight: Arc::new(AtomicUsize::new(0)),
                in_flight_max: Arc::new(AtomicUsize::new(0)),
                rejected: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// Runs `work` (a hash or a verification) on the hashing threads within the bounds, or
    /// refuses with `busy`: at once when `concurrency + queue` are already admitted, or when it
    /// waited in the queue longer than `queue_wait` (then it is not run at all).
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let inner = &self.inner;
        let admitted = inner.admitted.fetch_add(1, Ordering::AcqRel) + 1;
        if admitted > inner.concurrency + inner.queue {
            inner.admitted.fetch_sub(1, Ordering::AcqRel);
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(busy());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<Option<R>>();
        let queued_at = std::time::Instant::now();
        let (queue_wait, admitted) = (inner.queue_wait, Arc::clone(&inner.admitted));
        let (in_flight, max) = (Arc::clone(&inner.in_flight), Arc::clone(&inner.in_flight_max));
        // The admission is released when the job ends, not when the caller stops waiting: if the
        // client goes away, its slot stays taken until the hash really ends, so the bound holds
        // for the CPU and the memory too.
        let job: Job = Box::new(move || {
            let r = (queued_at.elapsed() <= queue_wait).then(|| {
                let now = in_flight.fetch_add(1, Ordering::AcqRel) + 1;
                max.fetch_max(now, Ordering::AcqRel);
                let r = work();
                in_flight.fetch_sub(1, Ordering::AcqRel);
                r
            });
            admitted.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(r);
        });
        if inner.jobs.try_send(job).is_err() {
            inner.admitted.fetch_sub(1, Ordering::AcqRel);
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(busy());
        }
        match rx.await {
            Ok(Some(r)) => Ok(r),
            // Waited too long in the queue (or the pool is gone): not run.
            _ => {
                inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(busy())
            }
        }
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

thread_local! {
    /// This thread's argon2 working memory (19 MiB at the default parameters), allocated by its
    /// first hash and reused by every later one. Allocating it per hash (what `argon2`'s
    /// `PasswordHasher` does) grew the process by 19 MiB per hash, never returned: glibc does not
    /// reuse a freed 64-byte-aligned block of that size for the next aligned request. The hashing
    /// threads are a fixed pool ([`Hasher`]), so the memory held is `concurrency` blocks.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `a` over `password` and `salt` into `out` with this thread's reused working memory.
fn argon2_into(a: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    BLOCKS.with_borrow_mut(|blocks| {
        let need = a.params().block_count();
        if blocks.len() < need {
            // Parameters come from our own hashes (always the default) or a stored PHC string,
            // whose memory cost argon2's `Params` already bounds.
            blocks.resize(need, argon2::Block::default());
        }
        a.hash_password_into_with_memory(password, salt, out, &mut blocks[..need]).is_ok()
    })
}

/// Hashes a password to a PHC string (argon2id, default parameters, random 16-byte salt).
/// CPU-heavy: call it from a hashing thread ([`Hasher::run`]).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    let refused = || ApiError::bad_request("invalid_password", "the password cannot be hashed");
    let a = Argon2::default();
    let salt = argon2::password_hash::generate_salt();
    let mut out = [0u8; 32];
    if !argon2_into(&a, password.as_bytes(), &salt, &mut out) {
        return Err(refused());
    }
    let phc = argon2::PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: ParamsString::try_from(a.params()).map_err(|_| refused())?,
        salt: Some(Salt::new(&salt).map_err(|_| refused())?),
        hash: Some(Output::new(&out).map_err(|_| refused())?),
    };
    Ok(phc.to_string())
}

/// Verifies a password against a PHC string (constant-time comparison). CPU-heavy: call it
/// from a hashing thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(h) = argon2::PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else { return false };
    let (Ok(algorithm), Ok(params)) =
        (argon2::Algorithm::try_from(h.algorithm.as_str()), argon2::Params::try_from(&h))
    else {
        return false;
    };
    let version = match h.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else { return false };
    let a = Argon2::new(algorithm, version, params);
    argon2_into(&a, password.as_bytes(), salt.as_ref(), out)
        && argon2::password_hash::phc::Output::new(out).is_ok_and(|o| o == *expected)
}

/// A minimum strength: 10 to 128 characters, at least 5 different ones, no control characters.
pub fn check_password(p: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    let mut distinct: Vec<char> = p.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if (10..=128).contains(&n) && distinct.len() >= 5 && !p.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "weak_password",
            "password must be 10 to 128 characters with at least 5 different ones",
        ))
    }
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
    /// `"admin"` for an operator (the role is the engine's, read at sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The session (engine state) it belongs to, as a string: a token whose session was signed
    /// out is refused. Required: a token without one is from before sessions existed.
    pub sid: String,
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The account.
    pub account: u32,
    /// Its session.
    pub sid: u64,
    /// It carries the operator role.
    pub admin: bool,
    /// Its expiry, seconds since the epoch.
    pub exp: u64,
}

/// A remembered device's claims: proof that this browser or bot once signed in to `login`
/// with the right password. Its audience keeps it apart from access tokens (which need a `sub`,
/// which it lacks): it grants nothing by itself, a sign-in still needs the password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct DeviceClaims {
    aud: String,
    /// The normalised login it was issued to.
    login: String,
    exp: u64,
    iat: u64,
}

/// The audience of a device token.
const DEVICE_AUDIENCE: &str = "hundredx-device";

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    device_validation: Validation,
    ttl_secs: u64,
    device_ttl_secs: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl_secs`; device tokens for `device_ttl_secs`.
    pub fn new(secret: &[u8], ttl_secs: u64, device_ttl_secs: u64) -> Tokens {
        // The algorithm is pinned: a token whose header says anything but HS256 (including
        // `none`) is refused before its signature is even looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let mut device_validation = Validation::new(Algorithm::HS256);
        device_validation.algorithms = vec![Algorithm::HS256];
        device_validation.set_required_spec_claims(&["exp", "aud", "iat"]);
        device_validation.set_audience(&[DEVICE_AUDIENCE]);
        device_validation.leeway = 5;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            device_validation,
            ttl_secs,
            device_ttl_secs,
        }
    }

    /// How long a token (and its session) lasts, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A token of session `sid` of `account` (an operator's carries `role: "admin"`), valid
    /// until `exp` (seconds since the epoch: the session's expiry).
    pub fn issue(&self, account: u32, admin: bool, sid: u64, exp: u64) -> Result<String, ApiError> {
        let iat = now_secs();
        let role = admin.then(|| "admin".to_owned());
        let claims = Claims { sub: account.to_string(), exp, iat, role, sid: sid.to_string() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "token_error",
                "the token could not be issued",
            )
        })
    }

    /// A device token for `login` (normalised): sent back with the next sign-ins of that login,
    /// it lets them past the per-login ceiling, on a hashing lane of their own.
    pub fn issue_device(&self, login: &str) -> Result<String, ApiError> {
        let iat = now_secs();
        let claims = DeviceClaims {
            aud: DEVICE_AUDIENCE.to_owned(),
            login: login.to_owned(),
            exp: iat + self.device_ttl_secs,
            iat,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "device token signing failed");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "token_error",
                "the token could not be issued",
            )
        })
    }

    /// Is `token` a valid device token of `login`?
    pub fn is_device_of(&self, token: &str, login: &str) -> bool {
        jsonwebtoken::decode::<DeviceClaims>(token, &self.decoding, &self.device_validation)
            .is_ok_and(|d| {
                d.claims.login == login
                    && d.claims.iat <= now_secs() + self.device_validation.leeway
            })
    }

    /// What a valid token says (its session is the engine's to confirm:
    /// [`crate::AppState::check_session`]).
    pub fn verify(&self, token: &str) -> Result<Verified, ApiError> {
        let invalid = || ApiError::unauthorized("invalid or expired token");
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| invalid())?;
        // Issued in the future (beyond the leeway): not ours, or a clock gone wrong.
        if data.claims.iat > now_secs() + self.validation.leeway {
            return Err(invalid());
        }
        Ok(Verified {
            account: data.claims.sub.parse().map_err(|_| invalid())?,
            sid: data.claims.sid.parse().map_err(|_| invalid())?,
            admin: data.claims.role.as_deref() == Some("admin"),
            exp: data.claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_hashes_and_argon2s_own_verify_each_other() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // Hashes stored by earlier versions (argon2's allocating `PasswordHasher`) still verify,
        // and ours verify with argon2's own code: the same PHC format, the same function.
        let theirs = Argon2::default().hash_password(b"correct horse").unwrap().to_string();
        assert!(verify_password("correct horse", &theirs));
        assert!(!verify_password("correct horsE", &theirs));
        let ours = hash_password("correct horse").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        let parsed = argon2::PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
        assert_ne!(hash_password("correct horse").unwrap(), ours, "a fresh salt each time");
        for junk in ["", "$argon2id$", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$", "plain"] {
            assert!(!verify_password("x", junk), "{junk:?}");
        }
    }

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
    fn device_tokens_name_their_login_and_are_no_access_tokens() {
        let t = Tokens::new(b"secret-one-long-enough", 60, 3600);
        let d = t.issue_device("a@example.com").unwrap();
        assert!(t.is_device_of(&d, "a@example.com"));
        assert!(!t.is_device_of(&d, "b@example.com"), "bound to its login");
        assert!(t.verify(&d).is_err(), "a device token is no access token");
        let access = t.issue(7, false, 1, now_secs() + 60).unwrap();
        assert!(!t.is_device_of(&access, "a@example.com"), "nor the other way round");
        let other = Tokens::new(b"secret-two-long-enough", 60, 3600);
        assert!(!other.is_device_of(&d, "a@example.com"), "another secret");
    }

    #[test]
    fn tokens_round_trip_and_other_secrets_fail() {
        let t = Tokens::new(b"secret-one", 60, 3600);
        let exp = now_secs() + 60;
        let tok = t.issue(42, true, 9, exp).unwrap();
        assert_eq!(t.verify(&tok), Ok(Verified { account: 42, sid: 9, admin: true, exp }));
        assert!(Tokens::new(b"secret-two", 60, 3600).verify(&tok).is_err());
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
