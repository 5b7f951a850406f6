//! Mosquitto's password-file and ACL formats, so `bedside` can provision a
//! device's broker identity without the `mosquitto_passwd` tool.
//!
//! Mosquitto 2.x password lines are `user:$7$<iterations>$<salt b64>$<hash b64>`
//! where the hash is PBKDF2-HMAC-SHA512 over a 12-byte random salt with 101
//! iterations — exactly what `mosquitto_passwd` writes, so the broker accepts
//! ours. The ACL grants each device write access below its own topic only;
//! the device gateway relies on that to trust the device id in a topic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::Sha512;

/// `mosquitto_passwd`'s iteration count for `$7$` hashes.
const ITERATIONS: u32 = 101;
const SALT_BYTES: usize = 12;

/// Hashes `password` into the part of a password-file line after `user:`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    hash_with_salt(password, &salt)
}

fn hash_with_salt(password: &str, salt: &[u8]) -> String {
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, ITERATIONS, &mut hash);
    format!(
        "$7${ITERATIONS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// Checks `password` against a `$7$` hash (used by tests and diagnostics).
pub fn verify_password(password: &str, encoded: &str) -> bool {
    let parts: Vec<&str> = encoded.split('$').collect();
    let ["", "7", iterations, salt, expected] = parts.as_slice() else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(expected),
    ) else {
        return false;
    };
    let mut hash = vec![0u8; expected.len()];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut hash);
    subtle_eq(&hash, &expected)
}

/// Constant-time comparison, so a verification leaks no timing.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random MQTT password: 32 characters of URL-safe base64 (192 bits).
pub fn generate_password() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The topic prefix a device may publish below.
pub fn device_topic_root(device_id: &str) -> String {
    format!("bedside/v1/devices/{device_id}")
}

/// One password-file line.
pub fn password_line(username: &str, hash: &str) -> String {
    format!("{username}:{hash}")
}

/// The ACL block for one device: write its own vitals and status, nothing else.
pub fn device_acl(username: &str, device_id: &str) -> String {
    let root = device_topic_root(device_id);
    format!(
        "user {username}\ntopic write {root}/vitals\ntopic write {root}/vitals/cbor\ntopic write {root}/status\n"
    )
}

/// The ACL block for Bedside's own gateway client: read every device's
/// topics, write nothing.
pub fn gateway_acl(username: &str) -> String {
    format!(
        "user {username}\ntopic read bedside/v1/devices/+/vitals\ntopic read bedside/v1/devices/+/vitals/cbor\ntopic read bedside/v1/devices/+/status\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_line_written_by_mosquitto_passwd() {
        // Written by `mosquitto_passwd -b pw dev1 secret123` (Mosquitto 2.0.11).
        let line = "$7$101$N+0dLnh9JidHtWtC$P4F41a5rA2nl7UbPz3FAssRglnMFfMnHfZ1RJmGv5Wh/6oLv7qry65K464KTlsdT3n3qnLxs29nynE+ctVRrtg==";
        assert!(verify_password("secret123", line));
        assert!(!verify_password("secret124", line));
        let salt = STANDARD.decode("N+0dLnh9JidHtWtC").unwrap();
        assert_eq!(hash_with_salt("secret123", &salt), line);
    }

    #[test]
    fn fresh_hashes_verify_and_differ() {
        let a = hash_password("pw");
        let b = hash_password("pw");
        assert_ne!(a, b, "salts must differ");
        assert!(verify_password("pw", &a) && verify_password("pw", &b));
        assert!(!verify_password("pw", "garbage"));
        assert!(!verify_password("pw", "$7$x$y$z"));
    }

    #[test]
    fn device_acl_names_only_its_own_topics() {
        let acl = device_acl("dev-1", "abc");
        assert!(acl.starts_with("user dev-1\n"));
        assert!(
            acl.lines()
                .skip(1)
                .all(|l| l.contains("bedside/v1/devices/abc/"))
        );
        assert!(!acl.contains('#') && !acl.contains('+'));
    }
}
