//! Mosquitto's password and ACL files, regenerated from the database so
//! they always list exactly the provisioned devices plus Bedside's gateway.
//! Files are replaced atomically (write, then rename) so a broker reloading
//! on SIGHUP never reads half a file.

use std::fs;
use std::path::Path;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::config::Config;
use crate::secrets;

/// Writes both files; returns their paths.
///
/// # Errors
/// When the database or the file system fails.
pub async fn write_files(
    db: &PgPool,
    config: &Config,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let gateway_password = secrets::gateway_password(config)?;
    let (passwords, acl) =
        bedside_records::devices::broker_files(db, &config.mqtt.username, &gateway_password)
            .await?;
    let password_file = config.password_file();
    let acl_file = config.acl_file();
    replace(&password_file, &passwords)?;
    replace(&acl_file, &acl)?;
    Ok((password_file, acl_file))
}

/// Rewrites the files, then asks the broker to reload them when its pid
/// file is configured and it is running. Returns what was done, for the
/// operator, and whether a running broker was reloaded (so a new device can
/// connect now).
///
/// # Errors
/// As [`write_files`], or when the broker cannot be signalled.
pub async fn sync(db: &PgPool, config: &Config) -> anyhow::Result<(String, bool)> {
    let (password_file, acl_file) = write_files(db, config).await?;
    let mut done = format!(
        "wrote {} and {}",
        password_file.display(),
        acl_file.display()
    );
    match &config.mqtt.broker_pid_file {
        // No pid file: the broker is not running and reads the files when it starts.
        Some(pid_file) if !pid_file.exists() => {
            done.push_str(
                "; the broker is not running (no pid file), it reads them when it starts",
            );
        }
        Some(pid_file) => {
            let pid = fs::read_to_string(pid_file).with_context(|| {
                format!("cannot read the broker's pid file {}", pid_file.display())
            })?;
            let pid = pid.trim();
            anyhow::ensure!(
                !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()),
                "{} holds no pid",
                pid_file.display()
            );
            let status = tokio::process::Command::new("kill")
                .args(["-HUP", pid])
                .status()
                .await?;
            anyhow::ensure!(status.success(), "could not signal the broker (pid {pid})");
            done.push_str(&format!("; reloaded the broker (pid {pid})"));
            return Ok((done, true));
        }
        None => {}
    }
    Ok((done, false))
}

fn replace(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // The directory may belong to Mosquitto's user: the temporary file is
    // created afresh (never through a link left in its place), private until
    // it is complete, and changed through its handle only.
    let tmp = path.with_extension("tmp");
    match fs::remove_file(&tmp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot remove {}", tmp.display()));
        }
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // The replacement keeps the file's owner, group and mode: whoever runs
    // Mosquitto may have given it to Mosquitto's user and group with no
    // access for others (`scripts/start.sh` does; Mosquitto 2.0.16 and later
    // warn that future versions refuse world-readable files). A new file is
    // readable by all, as Mosquitto, perhaps under its own user, must read
    // it; it holds password hashes only.
    let mode = match fs::symlink_metadata(path) {
        Ok(existing) if existing.is_file() => {
            match std::os::unix::fs::fchown(&file, Some(existing.uid()), Some(existing.gid())) {
                Ok(()) => existing.mode() & 0o777,
                Err(error) => {
                    tracing::warn!(%error, file = %path.display(), "cannot keep the broker file's owner; making it readable by all");
                    0o644
                }
            }
        }
        _ => 0o644,
    };
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::replace;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_rewritten_file_keeps_its_mode_and_a_new_one_is_readable_by_all() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("mosquitto").join("passwd");
        replace(&passwd, "first\n").unwrap();
        assert_eq!(
            mode(&passwd),
            0o644,
            "Mosquitto must be able to read a new file"
        );
        // An operator gives the file to Mosquitto alone; a rewrite keeps that.
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&passwd, "second\n").unwrap();
        assert_eq!(mode(&passwd), 0o640);
        assert_eq!(std::fs::read_to_string(&passwd).unwrap(), "second\n");
        assert!(!passwd.with_extension("tmp").exists());
    }

    #[test]
    fn a_link_left_in_place_of_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let passwd = dir.path().join("passwd");
        std::os::unix::fs::symlink(&victim, passwd.with_extension("tmp")).unwrap();
        replace(&passwd, "hashes\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        assert_eq!(mode(&victim), 0o600);
        assert_eq!(std::fs::read_to_string(&passwd).unwrap(), "hashes\n");
    }
}
