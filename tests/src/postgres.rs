//! PostgreSQL for tests: a server (given or private) and a fresh database per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::OnceCell;

static SERVER: OnceCell<String> = OnceCell::const_new();

/// The URL of the PostgreSQL server tests use (its `postgres` database).
///
/// # Panics
/// When no server can be had: the message says what to install.
pub async fn server_url() -> String {
    SERVER
        .get_or_init(|| async {
            match std::env::var("BEDSIDE_TEST_PG_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => tokio::task::spawn_blocking(start_private_cluster)
                    .await
                    .expect("the cluster start does not panic"),
            }
        })
        .await
        .clone()
}

/// A new, empty database with Bedside's migrations applied, and its URL.
pub async fn fresh_database() -> (PgPool, String) {
    let server = server_url().await;
    let name = format!("bedside_test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let url = database_url(&server, &name);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("connect to the fresh test database");
    bedside_server::app::migrator()
        .run(&pool)
        .await
        .expect("migrations apply");
    (pool, url)
}

/// The server URL with its database name replaced.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let without_db = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |p| p + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{without_db}/{name}?{q}"),
        None => format!("{without_db}/{name}"),
    }
}

fn pg_bin(tool: &str) -> PathBuf {
    for version in ["17", "16", "15"] {
        let path = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin/{tool}"));
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(tool)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_command(tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        c
    } else {
        Command::new(pg_bin(tool))
    }
}

/// Starts a throwaway cluster: initdb into a temporary directory, then
/// `postgres` on a free port under a watchdog that stops it when this test
/// process exits.
fn start_private_cluster() -> String {
    let as_postgres = is_root();
    let dir = std::env::temp_dir().join(format!("bedside-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the cluster directory");
    if as_postgres {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chown the cluster directory to postgres"
        );
    }
    let data = dir.join("data");
    let out = pg_command("initdb", as_postgres)
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .output()
        .expect("run initdb: install postgresql (apt-get install -y postgresql) or set BEDSIDE_TEST_PG_URL");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = crate::free_port();
    let postgres = pg_bin("postgres");
    let log = dir.join("postgres.log");
    // The watchdog shell keeps the server alive while this process lives,
    // then stops it and removes the cluster. It signals the postmaster
    // itself (from its pid file): `runuser` does not pass SIGINT on, and
    // signalling only it left clusters running after every test process.
    let script = format!(
        "{runas}{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 > {log} 2>&1 & pg=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
         kill -INT $(head -1 {data}/postmaster.pid 2>/dev/null) $pg 2>/dev/null; \
         for i in $(seq 50); do [ -f {data}/postmaster.pid ] || break; sleep 0.2; done; rm -rf {dir}",
        runas = if as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        },
        postgres = postgres.display(),
        data = data.display(),
        dir = dir.display(),
        log = log.display(),
        parent = std::process::id(),
    );
    // The watchdog outlives this call by design and exits with the process;
    // nobody waits for it.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the private PostgreSQL");
    wait_until_accepting(port, &log);
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn wait_until_accepting(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "private PostgreSQL did not start within 30 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A PostgreSQL cluster of one test's own, which the test may stop and
/// start (to prove behaviour across a database outage). Removed on drop.
pub struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    /// Initialises and starts a cluster on a free port.
    ///
    /// # Panics
    /// When PostgreSQL's tools are missing or the cluster does not start.
    pub fn start() -> Self {
        let as_postgres = is_root();
        let dir =
            std::env::temp_dir().join(format!("bedside-own-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster directory");
        }
        let out = pg_command("initdb", as_postgres)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self {
            dir,
            port: crate::free_port(),
            as_postgres,
        };
        cluster.resume();
        cluster
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Starts (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let out = pg_command("pg_ctl", self.as_postgres)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "30", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops it abruptly, as a crash or an outage would.
    pub fn crash(&self) {
        let _ = pg_command("pg_ctl", self.as_postgres)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_names_replace_the_servers() {
        assert_eq!(
            database_url("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            database_url("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            database_url("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
