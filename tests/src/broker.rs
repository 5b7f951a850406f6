//! A private Mosquitto for a test: its own port, config, password and ACL
//! files, stopped when dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running private broker.
pub struct Broker {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    _files: Option<tempfile::TempDir>,
}

/// The gateway account [`Broker::for_registry`] writes beside the devices.
pub const GATEWAY_USER: &str = "bedside-gateway";
/// Its password.
pub const GATEWAY_PASSWORD: &str = "gateway-secret";

impl Broker {
    /// Starts Mosquitto with authentication from `password_file` and
    /// authorization from `acl_file` (anonymous clients refused).
    ///
    /// # Panics
    /// When Mosquitto is missing or does not start listening within 10 s.
    pub async fn start(password_file: &Path, acl_file: &Path) -> Self {
        Self::start_on(crate::free_port(), password_file, acl_file).await
    }

    /// Like [`Broker::start`] on a given port (for a client configured before the broker runs).
    ///
    /// # Panics
    /// As [`Broker::start`].
    pub async fn start_on(port: u16, password_file: &Path, acl_file: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("mosquitto.conf");
        // `user root` keeps a broker started by root from switching to the
        // `mosquitto` user, who could not read the test's temporary files.
        std::fs::write(
            &config,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n",
                password_file.display(),
                acl_file.display()
            ),
        )
        .expect("write the broker config");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start mosquitto (apt-get install -y mosquitto)");
        crate::wait_for(
            "mosquitto to listen",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Self {
            port,
            child,
            _dir: dir,
            _files: None,
        }
    }

    /// Starts a broker (on `port`, or a free one) with the password and ACL
    /// files Bedside generates from the database's devices, plus the gateway
    /// account [`GATEWAY_USER`]/[`GATEWAY_PASSWORD`].
    ///
    /// # Panics
    /// As [`Broker::start`], or when the database fails.
    pub async fn for_registry(db: &sqlx::PgPool, port: Option<u16>) -> Self {
        let files = tempfile::tempdir().expect("temporary directory");
        let (passwd, acl) =
            bedside_records::devices::broker_files(db, GATEWAY_USER, GATEWAY_PASSWORD)
                .await
                .expect("broker files from the registry");
        let (passwd_path, acl_path) = (files.path().join("passwd"), files.path().join("acl"));
        std::fs::write(&passwd_path, passwd).expect("write the password file");
        std::fs::write(&acl_path, acl).expect("write the ACL file");
        let mut broker = Self::start_on(
            port.unwrap_or_else(crate::free_port),
            &passwd_path,
            &acl_path,
        )
        .await;
        broker._files = Some(files);
        broker
    }

    /// Stops the broker.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Publishes one QoS 1 message with Mosquitto's own client, which waits for
/// the PUBACK: true when the broker accepted the connection and the message.
pub async fn publish(port: u16, user: &str, password: &str, topic: &str, payload: &str) -> bool {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            user,
            "-P",
            password,
        ])
        .args(["-q", "1", "-t", topic, "-m", payload])
        .status()
        .await
        .expect("mosquitto_pub (apt-get install -y mosquitto-clients)")
        .success()
}
