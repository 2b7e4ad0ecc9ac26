//! Two-factor sign-in at the edge (docs/DESIGN.md, "Two-factor sign-in"): making an enrolment
//! (a random 160-bit secret, its `otpauth://` URI and QR code, ten recovery codes), and
//! checking a code against the secret the engine keeps. A TOTP code (RFC 6238: SHA-1, 6 digits,
//! 30 s steps, one step of skew each way) is spent by its time step, a recovery code by its
//! hash; the engine spends each once, on every api instance.

use engine_core::command::{
    AccountId, CommandKind, OneTimeCode, RECOVERY_CODES, RecoveryHash, TotpEnrolment, TotpUse,
};
use engine_core::event::{Reason, ReplyData};
use sha2::Digest;
use totp_rs::{Algorithm, TOTP};

use crate::AppState;
use crate::error::ApiError;

/// Seconds a code stands for.
pub const STEP_SECS: u64 = 30;

/// Recovery codes' alphabet: 32 symbols without look-alikes (no l, o, 0, 1), so a byte maps to
/// one uniformly; ten of them are 50 bits.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// The TOTP of `secret` (issuer `hundredx`, labelled with the login).
fn totp(secret: &[u8; 20], login: &str) -> TOTP {
    let label = login.replace(':', "");
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        secret.to_vec(),
        Some("hundredx".into()),
        label,
    )
}

/// What a new enrolment shows its user once, and what the engine keeps.
pub struct Fresh {
    /// For the engine: the secret and the recovery codes' hashes.
    pub enrolment: TotpEnrolment,
    /// For the user.
    pub shown: crate::dto::TotpEnrolled,
}

impl std::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and recovery codes are never logged.
        f.debug_struct("Fresh").finish_non_exhaustive()
    }
}

/// A new enrolment for `login`.
pub fn enrol(login: &str) -> Result<Fresh, ApiError> {
    let rng = || ApiError::busy("no randomness available");
    let mut secret = [0u8; 20];
    getrandom::fill(&mut secret).map_err(|_| rng())?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut recovery = [[0u8; 16]; RECOVERY_CODES];
    for hash in &mut recovery {
        let mut raw = [0u8; 10];
        getrandom::fill(&mut raw).map_err(|_| rng())?;
        let chars: String = raw.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
        let code = format!("{}-{}", &chars[..5], &chars[5..]);
        *hash = recovery_hash(&code);
        codes.push(code);
    }
    let t = totp(&secret, login);
    let uri = t.get_url();
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|_| ApiError::busy("qr code"))?;
    let qr_svg = qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build();
    Ok(Fresh {
        enrolment: TotpEnrolment { secret, recovery },
        shown: crate::dto::TotpEnrolled {
            secret: t.get_secret_base32(),
            otpauth_uri: uri,
            qr_svg,
            recovery_codes: codes,
        },
    })
}

/// A recovery code's hash as the engine keeps it (case, spaces and dashes ignored).
pub fn recovery_hash(code: &str) -> RecoveryHash {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let digest = sha2::Sha256::digest(clean.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The time step among now's (one each way) whose code `code` is, if any.
pub fn matching_step(secret: &[u8; 20], code: &str, now_secs: u64) -> Option<u64> {
    let t = totp(secret, "");
    let now = now_secs / STEP_SECS;
    (now.saturating_sub(1)..=now + 1).find(|step| {
        let want = t.generate(step * STEP_SECS);
        // Compared without an early exit: the time taken says nothing about the digits.
        want.len() == code.len()
            && want.bytes().zip(code.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

impl AppState {
    /// With two-factor sign-in on for `account`, `code` must be a valid code, spent now for
    /// `purpose`: 401 `totp_required` without one, 401 `invalid_totp` for a wrong, used or
    /// replayed one. Off: nothing is asked (`code` is ignored).
    pub async fn second_factor(
        &self,
        account: AccountId,
        code: Option<&str>,
        purpose: TotpUse,
    ) -> Result<(), ApiError> {
        let secret = match self.call(CommandKind::QueryTotp { account }).await?.result {
            Ok(ReplyData::Totp { enabled: false, .. }) => return Ok(()),
            Ok(ReplyData::Totp { secret, .. }) => secret,
            Ok(other) => return Err(crate::convert::unexpected(&other)),
            Err(reason) => return Err(ApiError::from_reason(reason)),
        };
        let code = code.map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "totp_required",
                "two-factor sign-in is on: send the authenticator's code (totp)",
            )
        })?;
        self.spend_code(account, &secret, code, purpose).await
    }

    /// Spends `code` (checked against `secret` now) for `purpose`.
    pub async fn spend_code(
        &self,
        account: AccountId,
        secret: &[u8; 20],
        code: &str,
        purpose: TotpUse,
    ) -> Result<(), ApiError> {
        let invalid = || ApiError::from_reason(Reason::InvalidTotp);
        let code = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let step = matching_step(secret, code, ground::time::now_secs()).ok_or_else(invalid)?;
            OneTimeCode::Step(step)
        } else {
            OneTimeCode::Recovery(recovery_hash(code))
        };
        match self.call(CommandKind::SpendCode { account, code, purpose }).await?.result {
            Ok(_) => Ok(()),
            Err(reason) => Err(ApiError::from_reason(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's appendix B, SHA-1 (its secret is the ASCII "12345678901234567890"): 8-digit
    /// values 94287082 at 59 s and 07081804 at 1111111109 s; the 6 digits are their last six.
    #[test]
    fn codes_are_rfc_6238s() {
        let secret = *b"12345678901234567890";
        let t = totp(&secret, "a@b.c");
        assert_eq!(t.generate(59), "287082");
        assert_eq!(t.generate(1_111_111_109), "081804");
        assert_eq!(matching_step(&secret, "081804", 1_111_111_109), Some(1_111_111_109 / 30));
        // One step of skew each way, no more.
        assert!(matching_step(&secret, "081804", 1_111_111_109 + 30).is_some());
        assert!(matching_step(&secret, "081804", 1_111_111_109 + 60).is_none());
        assert!(matching_step(&secret, "000000", 1_111_111_109).is_none());
    }

    #[test]
    fn an_enrolment_has_ten_distinct_codes_whose_hashes_ignore_case_and_dashes() {
        let f = enrol("a@example.com").unwrap();
        assert_eq!(f.shown.recovery_codes.len(), 10);
        assert!(f.shown.otpauth_uri.starts_with("otpauth://totp/hundredx:a%40example.com?"));
        assert!(f.shown.qr_svg.starts_with("<?xml") && f.shown.qr_svg.contains("<svg"));
        for (code, hash) in f.shown.recovery_codes.iter().zip(f.enrolment.recovery) {
            assert_eq!(recovery_hash(&code.to_uppercase().replace('-', " ")), hash);
        }
        let mut hashes = f.enrolment.recovery.to_vec();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 10);
    }
}
