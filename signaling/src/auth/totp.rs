//! TOTP (RFC 6238) second factor: 6 digits, 30-second steps, SHA-1 (what
//! authenticator apps support), one step of clock skew either way; and
//! single-use recovery codes stored as SHA-256.

use rand::Rng;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

/// How many recovery codes an enrolment hands out.
pub const RECOVERY_CODES: usize = 10;

/// A fresh base32 secret (160 bits, as RFC 4226 recommends).
pub fn new_secret() -> String {
    match Secret::generate_secret().to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => unreachable!("to_encoded returns the encoded form"),
    }
}

fn totp(secret_base32: &str, account: &str, issuer: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_base32.to_owned()).to_bytes().ok()?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some(issuer.replace(':', " ")),
        account.replace(':', " "),
    )
    .ok()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(secret_base32: &str, account: &str, issuer: &str) -> Option<String> {
    totp(secret_base32, account, issuer).map(|t| t.get_url())
}

/// That URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(220, 220)
            .build(),
    )
}

/// The 30-second time step `code` belongs to, when it is the code of the
/// current step or one step either side (clock skew) for the secret. The
/// caller accepts a step only once, so a seen code cannot be replayed.
pub fn matching_step(secret_base32: &str, code: &str) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret_base32, "x", "x")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let step = now / totp.step;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| totp.generate(s * totp.step) == code)
}

/// Whether `code` is valid now (± one step), ignoring replay.
pub fn check(secret_base32: &str, code: &str) -> bool {
    matching_step(secret_base32, code).is_some()
}

/// The current code, for tests and the CLI.
pub fn current_code(secret_base32: &str) -> Option<String> {
    totp(secret_base32, "x", "x")?.generate_current().ok()
}

/// The code at a Unix time, for tests (e.g. the next step's code).
pub fn code_at(secret_base32: &str, unix_seconds: u64) -> Option<String> {
    Some(totp(secret_base32, "x", "x")?.generate(unix_seconds))
}

/// Fresh recovery codes, `xxxxx-xxxxx` from an unambiguous alphabet (50 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut code: String = (0..10)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            code.insert(5, '-');
            code
        })
        .collect()
}

/// How a recovery code is stored.
pub fn hash_recovery_code(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_lowercase().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_code_checks_and_others_do_not() {
        let secret = new_secret();
        let code = current_code(&secret).unwrap();
        assert!(check(&secret, &code));
        let wrong = format!(
            "{:06}",
            (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
        );
        assert!(!check(&secret, &wrong));
        assert!(!check(&secret, "12345"));
        assert!(!check(&secret, "abcdef"));
        assert!(!check("not base32!", &code));
    }

    #[test]
    fn uri_and_qr_are_produced() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "ann@clinic.example", "Bedside").unwrap();
        assert!(uri.starts_with("otpauth://totp/"));
        assert!(qr_svg(&uri).unwrap().contains("<svg"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_case_insensitively() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        assert_eq!(
            hash_recovery_code(&codes[0]),
            hash_recovery_code(&codes[0].to_uppercase())
        );
    }
}
