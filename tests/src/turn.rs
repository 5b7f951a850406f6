//! A private TURN server for a test: Debian's coturn (`turnserver`) on a
//! free port of 127.0.0.1, with the TURN REST-API credentials Bedside hands
//! to browsers (`use-auth-secret` with a `static-auth-secret`), relaying to
//! loopback peers (where the test's SFU listens), stopped when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running private coturn.
pub struct TurnServer {
    /// Its listening port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    /// The secret shared with it, as Bedside's `visits.turn_secret`.
    pub secret: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TurnServer {
    /// Starts coturn.
    ///
    /// # Panics
    /// When `turnserver` is missing (`apt-get install -y coturn`) or does not
    /// listen within 10 s.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = crate::free_port();
        let secret = format!("turn-secret-{}", uuid::Uuid::new_v4().simple());
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .args(["--use-auth-secret", "--realm=bedside.test", "--fingerprint"])
            .arg(format!("--static-auth-secret={secret}"))
            // The SFU under test listens on 127.0.0.1, which coturn refuses
            // to relay to unless told (a guard against reaching a host's
            // own services through it).
            .arg("--allow-loopback-peers")
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-stdout-log",
                "--simple-log",
            ])
            .arg(format!(
                "--log-file={}",
                dir.path().join("turn.log").display()
            ))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .arg(format!("--userdb={}", dir.path().join("turn.db").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start turnserver (apt-get install -y coturn)");
        crate::wait_for("coturn to listen", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        Self {
            port,
            secret,
            child,
            _dir: dir,
        }
    }

    /// The `turn:` URL browsers are given for it.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    /// What coturn logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("turn.log")).unwrap_or_default()
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
