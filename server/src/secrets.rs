//! Secrets Bedside generates on first start and keeps in its data directory:
//! the token signing key and the gateway's broker password. Files are
//! created with mode 0600 and reused on every later start, so tokens and
//! broker credentials survive restarts.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use rand::RngCore;

use crate::config::Config;

/// Reads the secret in `path`, or writes a new random one there first.
///
/// # Errors
/// When the directory or file cannot be created or read.
pub fn load_or_create(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(existing) = fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        anyhow::ensure!(
            !existing.is_empty(),
            "{} is empty; delete it to generate a new one",
            path.display()
        );
        return Ok(existing);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{secret}")?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(secret)
}

/// The token signing key: configured, or generated on first start.
///
/// # Errors
/// As [`load_or_create`].
pub fn signing_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if !config.auth.signing_key.is_empty() {
        return Ok(config.auth.signing_key.expose().as_bytes().to_vec());
    }
    Ok(load_or_create(&config.data_dir.join("signing.key"), 32)?.into_bytes())
}

/// The gateway's broker password: configured, or generated on first use.
///
/// # Errors
/// As [`load_or_create`].
pub fn gateway_password(config: &Config) -> anyhow::Result<String> {
    if !config.mqtt.password.is_empty() {
        return Ok(config.mqtt.password.expose().to_owned());
    }
    load_or_create(&config.data_dir.join("mqtt-gateway.password"), 24)
}
