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
    /// With [`Broker::with_tls`]: its TLS listener's port and the PEM file
    /// of the CA that signed its certificate (for `localhost`).
    pub tls: Option<(u16, std::path::PathBuf)>,
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
        Self::start_with(port, password_file, acl_file, false, "").await
    }

    /// `extra`: configuration lines appended to the broker's settings.
    async fn start_with(
        port: u16,
        password_file: &Path,
        acl_file: &Path,
        tls: bool,
        extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("mosquitto.conf");
        // `user root` keeps a broker started by root from switching to the
        // `mosquitto` user, who could not read the test's temporary files.
        let mut text = format!(
            "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlistener {port} 127.0.0.1\n",
            password_file.display(),
            acl_file.display()
        );
        text.push_str(extra);
        let tls = tls.then(|| {
            let (cert, key, ca) = test_certificates(dir.path());
            let tls_port = crate::free_port();
            text.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ));
            (tls_port, ca)
        });
        std::fs::write(&config, text).expect("write the broker config");
        let ports: Vec<u16> = std::iter::once(port)
            .chain(tls.as_ref().map(|(p, _)| *p))
            .collect();
        let child = Self::spawn_config(&config, &ports).await;
        Self {
            port,
            tls,
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
        Self::registry_broker(db, port, false, "").await
    }

    /// [`Broker::for_registry`] with `extra` configuration lines (for
    /// example `max_inflight_messages 0\n`, a broker that sends without
    /// waiting for acknowledgements).
    ///
    /// # Panics
    /// As [`Broker::for_registry`].
    pub async fn for_registry_with(db: &sqlx::PgPool, extra: &str) -> Self {
        Self::registry_broker(db, None, false, extra).await
    }

    /// [`Broker::for_registry`] with a second, TLS listener (see [`Broker::tls`]).
    ///
    /// # Panics
    /// As [`Broker::for_registry`], or when `openssl` cannot make the certificates.
    pub async fn with_tls(db: &sqlx::PgPool) -> Self {
        Self::registry_broker(db, None, true, "").await
    }

    async fn registry_broker(db: &sqlx::PgPool, port: Option<u16>, tls: bool, extra: &str) -> Self {
        let files = tempfile::tempdir().expect("temporary directory");
        let (passwd, acl) =
            bedside_records::devices::broker_files(db, GATEWAY_USER, GATEWAY_PASSWORD)
                .await
                .expect("broker files from the registry");
        let (passwd_path, acl_path) = (files.path().join("passwd"), files.path().join("acl"));
        std::fs::write(&passwd_path, passwd).expect("write the password file");
        std::fs::write(&acl_path, acl).expect("write the ACL file");
        let mut broker = Self::start_with(
            port.unwrap_or_else(crate::free_port),
            &passwd_path,
            &acl_path,
            tls,
            extra,
        )
        .await;
        broker._files = Some(files);
        broker
    }

    /// Starts Mosquitto from the configuration Bedside ships
    /// (`deploy/mosquitto/mosquitto.conf.in`: persistence on, the in-flight
    /// and queue limits the gateway relies on), with the registry's
    /// password and ACL files, rendered the way `scripts/start.sh` renders it.
    ///
    /// # Panics
    /// As [`Broker::for_registry`].
    pub async fn shipped(db: &sqlx::PgPool) -> Self {
        let data = tempfile::tempdir().expect("temporary directory");
        let dir = data.path().join("mosquitto");
        std::fs::create_dir_all(dir.join("db")).expect("broker directories");
        let (passwd, acl) =
            bedside_records::devices::broker_files(db, GATEWAY_USER, GATEWAY_PASSWORD)
                .await
                .expect("broker files from the registry");
        std::fs::write(dir.join("passwd"), passwd).expect("write the password file");
        std::fs::write(dir.join("acl"), acl).expect("write the ACL file");
        let port = crate::free_port();
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/mosquitto/mosquitto.conf.in"
        ))
        .expect("the shipped broker configuration");
        // `user root` as in `start_with`: the test's files are root's own.
        let config = format!(
            "user root\n{}",
            template
                .replace("@DATA_DIR@", &data.path().display().to_string())
                .replace("@PORT@", &port.to_string())
                .replace("@BIND@", "127.0.0.1")
        );
        std::fs::write(dir.join("mosquitto.conf"), config).expect("write the broker config");
        let child = Self::spawn_config(&dir.join("mosquitto.conf"), &[port]).await;
        Self {
            port,
            tls: None,
            child,
            _dir: data,
            _files: None,
        }
    }

    /// Stops the broker the way a service manager does (SIGTERM: it saves
    /// its persistence file on the way out) and starts it again from the
    /// same configuration, on the same port. For [`Broker::shipped`].
    ///
    /// # Panics
    /// When the broker does not stop or start within 10 s.
    pub async fn restart(&mut self) {
        let pid = self.child.id().expect("a running broker");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("mosquitto stops within 10 s")
            .expect("mosquitto's exit");
        let config = self._dir.path().join("mosquitto").join("mosquitto.conf");
        self.child = Self::spawn_config(&config, &[self.port]).await;
    }

    /// Runs Mosquitto with `config` until it listens on every one of `ports`.
    async fn spawn_config(config: &Path, ports: &[u16]) -> Child {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(config)
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
                for port in ports {
                    tokio::net::TcpStream::connect(("127.0.0.1", *port))
                        .await
                        .ok()?;
                }
                Some(())
            },
        )
        .await;
        child
    }

    /// Stops the broker.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Publishes one QoS 1 message with Mosquitto's own client, which waits for
/// the PUBACK: true when the broker accepted the connection and the message.
pub async fn publish(port: u16, user: &str, password: &str, topic: &str, payload: &str) -> bool {
    mosquitto_pub(port, user, password, topic)
        .args(["-m", payload])
        .status()
        .await
        .expect("mosquitto_pub (apt-get install -y mosquitto-clients)")
        .success()
}

/// Like [`publish`], retained: the broker keeps it and hands it to every
/// new subscriber (as devices publish their `online` status).
pub async fn publish_retained(
    port: u16,
    user: &str,
    password: &str,
    topic: &str,
    payload: &str,
) -> bool {
    mosquitto_pub(port, user, password, topic)
        .args(["-r", "-m", payload])
        .status()
        .await
        .expect("mosquitto_pub (apt-get install -y mosquitto-clients)")
        .success()
}

/// `mosquitto_pub` at QoS 1 to `topic` as `user`; the caller adds the message.
fn mosquitto_pub(port: u16, user: &str, password: &str, topic: &str) -> Command {
    let mut command = Command::new("mosquitto_pub");
    command
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
        .args(["-q", "1", "-t", topic]);
    command
}

/// A throwaway CA and a certificate for `localhost` signed by it, made with
/// the `openssl` command line: (certificate, key, CA certificate) files.
fn test_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt-get install -y openssl)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=Bedside test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        path("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (path("server.pem"), path("server.key"), path("ca.pem"))
}

/// Publishes each line as its own QoS 1 message in one `mosquitto_pub -l`
/// session: true when all were accepted.
pub async fn publish_lines(
    port: u16,
    user: &str,
    password: &str,
    topic: &str,
    lines: &[String],
) -> bool {
    use tokio::io::AsyncWriteExt as _;
    let mut child = mosquitto_pub(port, user, password, topic)
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (apt-get install -y mosquitto-clients)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{}\n", lines.join("\n")).as_bytes())
        .await
        .expect("write to mosquitto_pub");
    drop(stdin);
    child.wait().await.is_ok_and(|s| s.success())
}
