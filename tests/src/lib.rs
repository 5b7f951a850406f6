//! # bedside-test-support — the harness every integration test stands on
//!
//! Real parts, started here:
//! - **PostgreSQL**: the server named by `BEDSIDE_TEST_PG_URL` (the test
//!   script starts a private cluster and sets it), or else a private cluster
//!   this process starts with `initdb` in a temporary directory on a free
//!   port and stops when the process exits. Each test gets a fresh database
//!   with the migrations applied ([`fresh_database`]).
//! - **Mosquitto**: a private broker on a free port with the password and
//!   ACL files a test hands it ([`Broker`]).
//! - **coturn**: a private TURN server with REST-API credentials
//!   ([`TurnServer`]).
//! - **The application**: exactly what `bedside serve` runs, bound to port 0
//!   ([`TestApp::spawn`]).
//!
//! Waiting is always for a condition with a deadline ([`wait_for`]).

mod broker;
mod postgres;
mod turn;
pub mod world;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bedside_server::app::Application;
use bedside_server::config::Config;
use sqlx::PgPool;
use tokio::sync::oneshot;

pub use broker::{
    Broker, GATEWAY_PASSWORD, GATEWAY_USER, publish, publish_lines, publish_retained,
};
pub use postgres::{OwnPostgres, fresh_database, server_url};
pub use turn::TurnServer;
pub use world::{Staff, World};

/// A running application on its own fresh database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The metrics listener.
    pub metrics_addr: SocketAddr,
    /// The application's database.
    pub db: PgPool,
    /// URL of that database.
    pub db_url: String,
    /// The application state (token keys, settings).
    pub state: bedside_signaling::AppState,
    /// The configuration it runs with.
    pub config: Config,
    /// HTTP client without cookies or redirects.
    pub client: reqwest::Client,
    /// Holds the data directory alive.
    _data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the application with the default test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the application after `adjust` changed the configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let (db, db_url) = fresh_database().await;
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config::default();
        config.database.url = db_url.clone();
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.metrics.addr = "127.0.0.1:0".parse().expect("address");
        config.visits.media_udp = "127.0.0.1:0".parse().expect("address");
        config.http.web_root = None;
        // Tests that need the device gateway start a broker and turn it on.
        config.ingest.enabled = false;
        config.data_dir = data_dir.path().to_path_buf();
        // The tests fire requests far faster than a person; the rate limit has its own test.
        config.http.rate_limit_per_second = 10_000;
        config.http.rate_limit_burst = 10_000;
        adjust(&mut config);
        let application = Application::build_with_pool(config.clone(), db.clone())
            .await
            .expect("the application builds");
        let addr = application.http_addr();
        let metrics_addr = application.metrics_addr();
        let state = application.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let running = tokio::spawn(application.run(async {
            let _ = rx.await;
        }));
        let base = format!("http://{addr}");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            base,
            metrics_addr,
            db,
            db_url,
            state,
            config,
            client,
            _data_dir: data_dir,
            shutdown: Some(tx),
            running: Some(running),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signals shutdown and waits until the application has drained and stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.running.take() {
            Some(handle) => tokio::time::timeout(Duration::from_secs(30), handle).await??,
            None => Ok(()),
        }
    }
}

/// Polls `condition` every 20 ms until it yields `Some`, or panics with
/// `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let result = tokio::time::timeout(deadline, async {
        loop {
            if let Some(value) = condition().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    match result {
        Ok(value) => value,
        Err(_) => panic!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// A free TCP port on loopback (bound and released; good enough for child
/// processes that need a number).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
