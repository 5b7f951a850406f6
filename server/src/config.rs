//! Configuration: a TOML file plus environment overrides.
//!
//! Every field has a default that runs a local demo; the doc comment on each
//! says why that default. The environment overrides the file with variables
//! named `BEDSIDE_<SECTION>__<KEY>` (double underscore between section and
//! key), e.g. `BEDSIDE_DATABASE__URL`, `BEDSIDE_HTTP__ADDR`; top-level keys
//! are `BEDSIDE_<KEY>` (`BEDSIDE_PUBLIC_BASE_URL`, `BEDSIDE_DATA_DIR`).
//! `bedside config print` shows the result with secrets redacted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize, Serializer};

/// A secret value: never printed, never logged.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The URL people open (scheme, host, port; no path). Join links and
    /// TOTP labels are built from it. Default: the local HTTP address.
    pub public_base_url: String,
    /// Where Bedside keeps files it generates: the token signing key, the
    /// broker's password and ACL files. Default `./.bedside`, beside the
    /// checkout, so a demo leaves nothing elsewhere.
    pub data_dir: PathBuf,
    /// PostgreSQL.
    pub database: DatabaseConfig,
    /// The main HTTP listener.
    pub http: HttpConfig,
    /// The Prometheus listener.
    pub metrics: MetricsConfig,
    /// The MQTT broker devices publish to.
    pub mqtt: MqttConfig,
    /// Tokens and sign-in.
    pub auth: AuthConfig,
    /// The clinic.
    pub clinic: ClinicConfig,
    /// Visits and join links.
    pub visits: VisitsConfig,
    /// Device readings: the MQTT gateway and the vitals store.
    pub ingest: IngestConfig,
    /// Retention periods the server enforces.
    pub retention: RetentionConfig,
    /// Appointment reminders by e-mail and SMS.
    pub reminders: RemindersConfig,
    /// Data-protection requests.
    pub privacy: PrivacyConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_base_url: "http://127.0.0.1:8080".into(),
            data_dir: PathBuf::from(".bedside"),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            mqtt: MqttConfig::default(),
            auth: AuthConfig::default(),
            clinic: ClinicConfig::default(),
            visits: VisitsConfig::default(),
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
            reminders: RemindersConfig::default(),
            privacy: PrivacyConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL. Default: the local server on the standard port,
    /// database `bedside`, as the README's set-up creates it.
    #[serde(serialize_with = "redact_url_password")]
    pub url: String,
    /// Pool size. 16: two connections stay with the alert engine's change
    /// listeners, up to `ingest.concurrent_batches` commit batches, the
    /// early look and the engine read, and the rest serves a clinic's staff
    /// (a request holds a connection for milliseconds), leaving PostgreSQL's
    /// default 100 for other nodes.
    pub max_connections: u32,
    /// Seconds to wait for a pooled connection before answering 503. Five is
    /// longer than any healthy query and short enough to fail visibly.
    pub acquire_timeout_secs: u64,
    /// Apply pending migrations when `serve` starts. On by default for a
    /// single node; turn off when a deploy step runs `bedside migrate`.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/bedside".into(),
            max_connections: 16,
            acquire_timeout_secs: 5,
            migrate_on_start: true,
        }
    }
}

fn redact_url_password<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redacted_url(url))
}

/// The URL with any password replaced by `<redacted>`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

/// The main HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address. Loopback by default: exposing Bedside is a decision
    /// (with TLS) the operator makes.
    pub addr: SocketAddr,
    /// TLS certificate chain (PEM). With `tls_key`, Bedside serves HTTPS;
    /// browsers grant camera and microphone only to secure pages.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The built web client. Default `web-client/dist`, where the set-up builds it.
    pub web_root: Option<PathBuf>,
    /// Largest request body in bytes. 1 MiB holds the longest visit note
    /// (100,000 characters, at most 400 KB of UTF-8) with room to spare;
    /// nothing else the API takes comes close.
    pub max_body_bytes: usize,
    /// Sustained requests per second per client address. 50 is far above a
    /// person clicking and well below what one client can flood with.
    pub rate_limit_per_second: u32,
    /// Burst above the sustained rate. A page load fires a dozen requests.
    pub rate_limit_burst: u32,
    /// Seconds to let in-flight requests finish at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".parse().expect("static address"),
            tls_cert: None,
            tls_key: None,
            web_root: Some(PathBuf::from("web-client/dist")),
            max_body_bytes: 1024 * 1024,
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            shutdown_grace_secs: 20,
        }
    }
}

/// The Prometheus listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address, separate from the API so it is never exposed with it.
    pub addr: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:9090".parse().expect("static address"),
        }
    }
}

/// The MQTT broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL (`mqtt://` or `mqtts://` for TLS). Default: the set-up's Mosquitto.
    pub url: String,
    /// Bedside's own broker account (the device gateway).
    pub username: String,
    /// Its password. When empty, one is generated into the data directory
    /// on first use, so the broker files and the gateway always agree.
    pub password: Secret,
    /// Mosquitto password file Bedside regenerates on `devices provision`.
    /// Default `<data_dir>/mosquitto/passwd`.
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file Bedside regenerates. Default `<data_dir>/mosquitto/acl`.
    pub acl_file: Option<PathBuf>,
    /// Mosquitto's pid file. When set, Bedside sends the broker SIGHUP after
    /// rewriting its files, so a new device can connect at once.
    pub broker_pid_file: Option<PathBuf>,
    /// For `mqtts://`: PEM certificates of the CA that signed the broker's
    /// certificate. Default: the Mozilla root programme (webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// The gateway's MQTT version: `"3.1.1"` or `"5"`. Default 3.1.1,
    /// which every broker speaks; `ingest.shared_group` needs 5 (shared
    /// subscriptions are an MQTT 5 feature).
    pub protocol: MqttProtocol,
}

/// An MQTT version, written `"3.1.1"` or `"5"` (from the environment,
/// `BEDSIDE_MQTT__PROTOCOL=5` arrives as a number, and is accepted too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProtocolSpelling")]
pub enum MqttProtocol {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// How `mqtt.protocol` may be spelled in a file or the environment.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProtocolSpelling {
    Text(String),
    Number(f64),
}

impl TryFrom<ProtocolSpelling> for MqttProtocol {
    type Error = String;

    fn try_from(spelling: ProtocolSpelling) -> Result<Self, Self::Error> {
        match spelling {
            ProtocolSpelling::Text(t) if t == "3.1.1" => Ok(MqttProtocol::V311),
            ProtocolSpelling::Text(t) if t == "5" || t == "5.0" => Ok(MqttProtocol::V5),
            ProtocolSpelling::Number(5.0) => Ok(MqttProtocol::V5),
            _ => Err(r#"mqtt.protocol must be "3.1.1" or "5""#.to_owned()),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            username: "bedside-gateway".into(),
            password: Secret::default(),
            password_file: None,
            acl_file: None,
            broker_pid_file: None,
            ca_file: None,
            protocol: MqttProtocol::V311,
        }
    }
}

/// Tokens and sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC key for tokens (at least 32 bytes). When empty, a random key is
    /// generated on first start into `<data_dir>/signing.key` and reused.
    pub signing_key: Secret,
    /// Token issuer.
    pub issuer: String,
    /// Token audience.
    pub audience: String,
    /// Access-token lifetime; at most 900 s (15 minutes) so a stolen token
    /// is short-lived.
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime: a working day, so staff sign in once a shift.
    pub refresh_ttl_secs: u64,
    /// Failed logins per account within the window before throttling.
    /// Five stops guessing while forgiving typos.
    pub login_max_failures_per_account: i64,
    /// Failed logins per client address within the window (a clinic's staff
    /// may share one NAT address, hence higher).
    pub login_max_failures_per_client: i64,
    /// The throttling window in seconds.
    pub login_window_secs: u64,
    /// Whether staff may sign in with e-mail and password. Switch it off
    /// once everyone signs in through the identity provider.
    pub password_login: bool,
    /// The clinic's OpenID Connect provider (unset: none).
    pub oidc: Option<OidcConfig>,
}

/// Sign-in through the clinic's OpenID Connect provider. Register Bedside
/// there as a confidential client with the redirect URI
/// `{public_base_url}/api/v1/auth/oidc/callback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, e.g. `https://sso.clinic.example/realms/clinic`.
    pub issuer: String,
    /// Bedside's client id there.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// The button's words: "Sign in with …".
    #[serde(default = "OidcConfig::default_display_name")]
    pub display_name: String,
    /// The claim with the account's roles or groups (a dotted path for
    /// nested claims, e.g. Keycloak's `realm_access.roles`).
    #[serde(default = "OidcConfig::default_roles_claim")]
    pub roles_claim: String,
    /// Values of that claim that make an admin.
    #[serde(default)]
    pub admin_values: Vec<String>,
    /// Values that make a clinician.
    #[serde(default)]
    pub clinician_values: Vec<String>,
    /// ID-token signing algorithms accepted.
    #[serde(default = "OidcConfig::default_algs")]
    pub allowed_algs: Vec<String>,
    /// Whether a first sign-in of an unknown (but mapped) account creates it.
    #[serde(default)]
    pub create_users: bool,
    /// Scopes asked for besides `openid`.
    #[serde(default = "OidcConfig::default_scopes")]
    pub scopes: Vec<String>,
}

impl OidcConfig {
    fn default_display_name() -> String {
        "the clinic's sign-in".into()
    }
    fn default_roles_claim() -> String {
        "groups".into()
    }
    fn default_algs() -> Vec<String> {
        vec!["RS256".into(), "ES256".into()]
    }
    fn default_scopes() -> Vec<String> {
        vec!["email".into(), "profile".into()]
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signing_key: Secret::default(),
            issuer: "bedside".into(),
            audience: "bedside-api".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 12 * 3600,
            login_max_failures_per_account: 5,
            login_max_failures_per_client: 20,
            login_window_secs: 900,
            password_login: true,
            oidc: None,
        }
    }
}

/// The clinic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClinicConfig {
    /// Name on pages and in authenticator apps.
    pub name: String,
    /// IANA time zone: days and times on pages are in it; storage is UTC.
    pub time_zone: String,
    /// The identifier system of the clinic's medical record numbers in
    /// FHIR (`Patient.identifier.system`); empty means
    /// `{public_base_url}/fhir/sid/mrn`.
    pub mrn_system: String,
}

impl Default for ClinicConfig {
    fn default() -> Self {
        Self {
            name: "Bedside Clinic".into(),
            time_zone: "Europe/Berlin".into(),
            mrn_system: String::new(),
        }
    }
}

/// How long the server keeps what it must not keep forever. (Readings:
/// `ingest.retention_days`.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days audit rows are kept (default six years, the longest common
    /// requirement for records of access to health data).
    pub audit_days: i64,
    /// Days refused device messages are kept for diagnosis.
    pub rejected_messages_days: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            audit_days: 6 * 365,
            rejected_messages_days: 90,
        }
    }
}

/// Appointment reminders. E-mail needs `smtp_url`, SMS `sms_webhook_url`;
/// with neither, no reminder is planned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemindersConfig {
    /// How long before the start reminders go out, in minutes.
    pub lead_minutes: Vec<i32>,
    /// The SMTP server, e.g. `smtp://relay.clinic.example:587?tls=required`
    /// or `smtps://user:password@smtp.example` (lettre's URL form). A
    /// secret: it may carry the password.
    pub smtp_url: Option<Secret>,
    /// The sender address, e.g. `Bedside Clinic <no-reply@clinic.example>`.
    pub from: String,
    /// Where text messages are POSTed as JSON `{id, to, text}`.
    pub sms_webhook_url: Option<String>,
    /// When set, each webhook call is signed: `X-Bedside-Signature:
    /// sha256=<hex HMAC-SHA256 of the body>`.
    pub sms_webhook_secret: Option<Secret>,
    /// Seconds between passes.
    pub every_secs: u64,
    /// Seconds a claimed reminder is held before another pass may take it
    /// (a sender that died).
    pub lease_secs: u64,
    /// Attempts before a reminder that keeps failing is given up.
    pub max_attempts: i32,
}

impl Default for RemindersConfig {
    fn default() -> Self {
        Self {
            lead_minutes: vec![24 * 60, 60],
            smtp_url: None,
            from: "Bedside Clinic <no-reply@bedside.invalid>".into(),
            sms_webhook_url: None,
            sms_webhook_secret: None,
            every_secs: 30,
            lease_secs: 300,
            max_attempts: 8,
        }
    }
}

/// Data-protection requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// What an erasure does to the patient's readings: `delete` them, or
    /// `pseudonymise` (keep them under the id, which no longer leads to a
    /// person).
    pub erasure_vitals: ErasureVitals,
}

/// See [`PrivacyConfig::erasure_vitals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureVitals {
    /// Delete them (data minimisation: the default).
    #[default]
    Delete,
    /// Keep them pseudonymised.
    Pseudonymise,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            erasure_vitals: ErasureVitals::Delete,
        }
    }
}

/// Visits and join links.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisitsConfig {
    /// Minutes before the start a join link opens: time for the device check
    /// and the waiting room.
    pub join_opens_before_minutes: u64,
    /// Minutes after the start a still-booked patient becomes a no-show.
    pub no_show_grace_minutes: u64,
    /// How often the no-show sweep runs, in seconds.
    pub no_show_sweep_secs: u64,
    /// Version tag of the consent text; change it with the text so patients accept the new one.
    pub consent_version: String,
    /// The telemedicine consent text patients accept before a video visit.
    pub consent_text: String,
    /// Seconds a participant whose connection dropped (a reload, a network
    /// change) may rejoin the call without being admitted again.
    pub rejoin_grace_secs: u64,
    /// The one UDP address every video connection uses (the port a clinic
    /// opens in its firewall). Local by default; a clinic binds
    /// `0.0.0.0:<port>` and sets `media_announce_ip`.
    pub media_udp: SocketAddr,
    /// The address browsers are told to send media to, when the bound one
    /// is not it (behind 1:1 NAT, or bound to every interface).
    pub media_announce_ip: Option<std::net::IpAddr>,
    /// RTCP feedback on every video connection (NACK, sender and receiver
    /// reports, transport-wide congestion feedback). Off only to measure
    /// what the SFU's engine costs without it (`ENGINE_FLOOR=1
    /// scripts/loadtest-visits.sh`); calls need it.
    pub rtcp_feedback: bool,
    /// STUN servers browsers get (`stun:host:port`).
    pub stun_urls: Vec<String>,
    /// TURN servers browsers get (`turn:host:port?transport=udp`, `turns:…`),
    /// with short-lived credentials from `turn_secret`.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`).
    pub turn_secret: Option<Secret>,
    /// Seconds a TURN credential stays valid.
    pub turn_credential_ttl_secs: u64,
}

impl Default for VisitsConfig {
    fn default() -> Self {
        Self {
            join_opens_before_minutes: 15,
            no_show_grace_minutes: 15,
            no_show_sweep_secs: 60,
            consent_version: "2026-01".into(),
            consent_text: bedside_signaling::app::DEFAULT_CONSENT_TEXT.into(),
            rejoin_grace_secs: 120,
            media_udp: "127.0.0.1:40000".parse().expect("static address"),
            media_announce_ip: None,
            rtcp_feedback: true,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_credential_ttl_secs: 4 * 3600,
        }
    }
}

/// Device readings: the MQTT gateway and the vitals store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Run the device gateway in this process. On by default: one node
    /// serves a clinic. Off for nodes that only serve pages.
    pub enabled: bool,
    /// The gateway's MQTT client id. Stable, so the broker keeps its
    /// persistent session (and queues readings) while it restarts.
    pub client_id: String,
    /// A batch closes at this many messages. Nothing is acknowledged before
    /// its batch commits, so `batch_messages × (concurrent_batches + 1)`
    /// must fit the broker's in-flight window for the gateway (4000 in the
    /// shipped Mosquitto configuration): 500 × 4 = 2000 leaves room.
    pub batch_messages: usize,
    /// A batch closes when its oldest message has waited this long (ms) and
    /// nothing more is queued: 20 ms bounds the delay batching adds on a
    /// reading's way to an alert (measured p99 publish→alert budget: 100 ms).
    pub batch_age_ms: u64,
    /// Batches committing at once: their round trips and WAL flushes
    /// overlap. 3 measured best on two cores at 10,000 messages/s
    /// (`scripts/loadtest-devices.sh`); acknowledgements stay in order.
    pub concurrent_batches: usize,
    /// When set, the gateway subscribes as `$share/<group>/…` so several
    /// Bedside nodes (each with its own `client_id`) split the devices'
    /// stream. Unset: one node takes every message.
    pub shared_group: Option<String>,
    /// Largest accepted payload in bytes; a SenML pack of a few readings is
    /// under 1 KiB.
    pub max_payload_bytes: usize,
    /// Most records in one pack.
    pub max_records: usize,
    /// How far in the future a reading's time may be (device clocks drift), seconds.
    pub max_future_secs: i64,
    /// How long readings are kept, in days; older readings are refused on
    /// arrival and their partitions dropped.
    pub retention_days: i64,
    /// How many days of partitions exist ahead of now.
    pub partitions_ahead_days: i64,
    /// Bytes of a refused payload kept for diagnosis.
    pub rejected_payload_bytes: usize,
    /// Minutes an open alert may wait for acknowledgement before its
    /// severity rises one step (and again after as long, up to critical).
    pub escalate_unacknowledged_minutes: i64,
    /// Minutes without any message after which a device counts as offline
    /// (besides its last will): home devices report every few minutes, so
    /// half an hour of silence means it is off, unplugged or out of range.
    pub device_silence_minutes: i64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: "bedside-gateway".into(),
            batch_messages: 500,
            batch_age_ms: 20,
            concurrent_batches: 3,
            shared_group: None,
            max_payload_bytes: 64 * 1024,
            max_records: 512,
            max_future_secs: 300,
            retention_days: 365,
            partitions_ahead_days: 14,
            rejected_payload_bytes: 4096,
            device_silence_minutes: 30,
            escalate_unacknowledged_minutes: 10,
        }
    }
}

/// Host and port of an `mqtt://host:port` URL.
///
/// # Errors
/// Another scheme (TLS `mqtts://` is not supported yet), or no host.
pub fn mqtt_endpoint(url: &str) -> anyhow::Result<MqttEndpoint> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else {
        anyhow::bail!("mqtt.url must start with mqtt:// or mqtts://")
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| anyhow::anyhow!("mqtt.url: bad port {port:?}"))?,
        ),
        None => (rest, default_port),
    };
    anyhow::ensure!(!host.is_empty(), "mqtt.url has no host");
    Ok(MqttEndpoint {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// Where the broker is, from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttEndpoint {
    /// Host name or address (also the name TLS verifies).
    pub host: String,
    /// Port: 1883 for `mqtt://`, 8883 for `mqtts://` unless given.
    pub port: u16,
    /// `mqtts://`: TLS (rustls) to the broker.
    pub tls: bool,
}

impl Config {
    /// The TLS client configuration for `mqtts://`: the certificates in
    /// `mqtt.ca_file` when set (a clinic's own CA), else the Mozilla roots.
    /// `None` for plain `mqtt://`.
    ///
    /// # Errors
    /// When the URL is bad or the CA file cannot be read or holds no certificate.
    pub fn mqtt_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        if !mqtt_endpoint(&self.mqtt.url)?.tls {
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        match &self.mqtt.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read mqtt.ca_file {}", path.display()))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.with_context(|| format!("{} is not PEM", path.display()))?;
                    roots.add(cert).with_context(|| {
                        format!("a certificate in {} is unusable", path.display())
                    })?;
                }
                anyhow::ensure!(
                    !roots.is_empty(),
                    "mqtt.ca_file {} holds no certificate",
                    path.display()
                );
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(Some(std::sync::Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )))
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,bedside=debug`. `RUST_LOG` overrides it.
    pub filter: String,
    /// `pretty` for people, `json` for log collectors.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: "pretty".into(),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` when given (or `bedside.toml` when present),
    /// then the environment.
    ///
    /// # Errors
    /// A file that does not parse, an unknown key, or a value of the wrong type.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        match file {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "configuration file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None if Path::new("bedside.toml").exists() => {
                figment = figment.merge(Toml::file("bedside.toml"))
            }
            None => {}
        }
        // Only variables that name a configuration key: other BEDSIDE_*
        // variables (BEDSIDE_CONFIG, the test harness's) are not ours to
        // refuse, while a typo inside a known section still is.
        let known = Self::top_level_keys();
        let env = Env::prefixed("BEDSIDE_").split("__").filter(move |key| {
            // After `split("__")` sections are separated by dots; case is the variable's.
            let key = key.as_str().to_lowercase();
            let section = key.split('.').next().unwrap_or_default();
            known.iter().any(|k| k == section)
        });
        let config: Config = figment
            .merge(env)
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn top_level_keys() -> Vec<String> {
        match toml::Value::try_from(Config::default()) {
            Ok(toml::Value::Table(table)) => table.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Staff must be able to sign in somehow, and a provider must be usable.
    fn validate_sign_in(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.auth.password_login || self.auth.oidc.is_some(),
            "auth.password_login = false needs auth.oidc: staff must be able to sign in somehow"
        );
        if let Some(oidc) = &self.auth.oidc {
            anyhow::ensure!(
                !oidc.admin_values.is_empty() || !oidc.clinician_values.is_empty(),
                "auth.oidc needs admin_values or clinician_values: nobody could sign in"
            );
            const KNOWN_ALGS: &[&str] = &[
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                "EdDSA",
            ];
            anyhow::ensure!(
                !oidc.allowed_algs.is_empty()
                    && oidc
                        .allowed_algs
                        .iter()
                        .all(|a| KNOWN_ALGS.contains(&a.as_str())),
                "auth.oidc.allowed_algs must name asymmetric signing algorithms ({})",
                KNOWN_ALGS.join(", ")
            );
            anyhow::ensure!(
                local_or_https(&oidc.issuer),
                "auth.oidc.issuer must be an https:// URL (plain http only on this machine)"
            );
        }
        Ok(())
    }

    /// Reminders that cannot be sent are refused at start, not at send time.
    fn validate_reminders(&self) -> anyhow::Result<()> {
        let r = &self.reminders;
        anyhow::ensure!(
            r.lease_secs >= 60 && r.max_attempts >= 1 && !r.lead_minutes.is_empty(),
            "reminders: lease_secs must be at least 60, max_attempts at least 1, lead_minutes not empty"
        );
        if r.smtp_url.as_ref().is_some_and(|u| !u.is_empty()) {
            anyhow::ensure!(
                r.from.parse::<lettre::message::Mailbox>().is_ok(),
                "reminders.from must be an e-mail address, e.g. Clinic <no-reply@clinic.example>"
            );
        }
        if let Some(url) = r.sms_webhook_url.as_deref().filter(|u| !u.is_empty()) {
            anyhow::ensure!(
                local_or_https(url),
                "reminders.sms_webhook_url must be an https:// URL (plain http only on this machine)"
            );
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.auth.access_ttl_secs > 0 && self.auth.access_ttl_secs <= 900,
            "auth.access_ttl_secs must be between 1 and 900"
        );
        anyhow::ensure!(
            self.http.rate_limit_per_second > 0 && self.http.rate_limit_burst > 0,
            "http rate limits must be positive"
        );
        anyhow::ensure!(
            self.http.tls_cert.is_some() == self.http.tls_key.is_some(),
            "set both http.tls_cert and http.tls_key, or neither"
        );
        anyhow::ensure!(
            self.public_base_url.starts_with("http://")
                || self.public_base_url.starts_with("https://"),
            "public_base_url must start with http:// or https://"
        );
        self.time_zone()?;
        if self.ingest.enabled {
            mqtt_endpoint(&self.mqtt.url)?;
            anyhow::ensure!(
                self.ingest.batch_messages > 0,
                "ingest.batch_messages must be positive"
            );
            anyhow::ensure!(
                (1..=16).contains(&self.ingest.concurrent_batches),
                "ingest.concurrent_batches must be between 1 and 16"
            );
            if let Some(group) = &self.ingest.shared_group {
                anyhow::ensure!(
                    !group.is_empty() && !group.contains(['/', '+', '#']),
                    "ingest.shared_group must be a name without '/', '+' or '#'"
                );
                anyhow::ensure!(
                    self.mqtt.protocol == MqttProtocol::V5,
                    "ingest.shared_group needs mqtt.protocol = \"5\" (shared subscriptions are MQTT 5)"
                );
            }
            self.mqtt_tls()?;
            anyhow::ensure!(
                self.ingest.retention_days > 0,
                "ingest.retention_days must be positive"
            );
        }
        anyhow::ensure!(
            self.reminders
                .lead_minutes
                .iter()
                .all(|m| (1..=30 * 24 * 60).contains(m)),
            "reminders.lead_minutes must be between 1 minute and 30 days"
        );
        self.validate_sign_in()?;
        self.validate_reminders()?;
        anyhow::ensure!(
            self.retention.audit_days > 0 && self.retention.rejected_messages_days > 0,
            "retention.audit_days and retention.rejected_messages_days must be positive"
        );
        if !self.auth.signing_key.is_empty() {
            anyhow::ensure!(
                self.auth.signing_key.expose().len() >= 32,
                "auth.signing_key must be at least 32 bytes"
            );
        }
        Ok(())
    }

    /// The clinic's time zone.
    ///
    /// # Errors
    /// When it is not an IANA zone name.
    pub fn time_zone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.clinic.time_zone.parse().map_err(|_| {
            anyhow::anyhow!(
                "clinic.time_zone {:?} is not an IANA time zone",
                self.clinic.time_zone
            )
        })
    }

    /// The Mosquitto password file path.
    pub fn password_file(&self) -> PathBuf {
        self.mqtt
            .password_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mosquitto/passwd"))
    }

    /// The Mosquitto ACL file path.
    pub fn acl_file(&self) -> PathBuf {
        self.mqtt
            .acl_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mosquitto/acl"))
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}"))
    }

    /// The HTTP-edge settings this configuration implies.
    ///
    /// # Errors
    /// As [`Config::time_zone`].
    pub fn api_settings(&self) -> anyhow::Result<bedside_signaling::Settings> {
        use std::time::Duration;
        let mut s = bedside_signaling::Settings::for_local(self.public_base_url.clone());
        s.clinic_name = self.clinic.name.clone();
        s.erasure_vitals = match self.privacy.erasure_vitals {
            ErasureVitals::Delete => bedside_records::erasure::VitalsOnErasure::Deleted,
            ErasureVitals::Pseudonymise => bedside_records::erasure::VitalsOnErasure::Pseudonymised,
        };
        if !self.clinic.mrn_system.is_empty() {
            s.mrn_system = self.clinic.mrn_system.clone();
        }
        s.time_zone = self.time_zone()?;
        s.token_issuer = self.auth.issuer.clone();
        s.password_login = self.auth.password_login;
        s.oidc = self
            .auth
            .oidc
            .as_ref()
            .map(|o| bedside_signaling::auth::oidc::OidcSettings {
                issuer: o.issuer.clone(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.expose().to_owned(),
                display_name: o.display_name.clone(),
                roles_claim: o.roles_claim.clone(),
                admin_values: o.admin_values.clone(),
                clinician_values: o.clinician_values.clone(),
                allowed_algs: o.allowed_algs.clone(),
                create_users: o.create_users,
                scopes: o.scopes.clone(),
            });
        s.token_audience = self.auth.audience.clone();
        s.access_ttl = Duration::from_secs(self.auth.access_ttl_secs);
        s.refresh_ttl = Duration::from_secs(self.auth.refresh_ttl_secs);
        s.join_opens_before = Duration::from_secs(self.visits.join_opens_before_minutes * 60);
        s.no_show_grace = Duration::from_secs(self.visits.no_show_grace_minutes * 60);
        s.login_max_failures_per_account = self.auth.login_max_failures_per_account;
        s.login_max_failures_per_client = self.auth.login_max_failures_per_client;
        s.login_window = Duration::from_secs(self.auth.login_window_secs);
        s.rate_limit_per_second = self.http.rate_limit_per_second;
        s.rate_limit_burst = self.http.rate_limit_burst;
        s.max_body_bytes = self.http.max_body_bytes;
        s.web_root = self.http.web_root.clone();
        s.tls = self.http.tls_cert.is_some();
        s.consent_version = self.visits.consent_version.clone();
        s.consent_text = self.visits.consent_text.clone();
        s.visit_rejoin_grace = Duration::from_secs(self.visits.rejoin_grace_secs);
        s.ice = bedside_signaling::ice::IceSettings {
            stun_urls: self.visits.stun_urls.clone(),
            turn_urls: self.visits.turn_urls.clone(),
            turn_secret: self
                .visits
                .turn_secret
                .as_ref()
                .map(|s| s.expose().to_owned()),
            turn_ttl: Duration::from_secs(self.visits.turn_credential_ttl_secs),
        };
        s.expected_migrations = crate::app::migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        Ok(s)
    }
}

/// An https URL, or plain http to this machine (tests, a local relay).
fn local_or_https(url: &str) -> bool {
    url.starts_with("https://")
        || url.starts_with("http://127.0.0.1")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_when_printed() {
        assert_eq!(
            redacted_url("postgres://bedside:hunter2@db:5432/bedside"),
            "postgres://bedside:<redacted>@db:5432/bedside"
        );
        assert_eq!(
            redacted_url("postgres://postgres@127.0.0.1/bedside"),
            "postgres://postgres@127.0.0.1/bedside"
        );
    }

    #[test]
    fn printed_configuration_hides_secrets() {
        let mut config = Config::default();
        config.auth.signing_key = Secret::from("k".repeat(40).as_str());
        config.mqtt.password = Secret::from("mqtt-secret");
        config.database.url = "postgres://u:db-secret@h/d".into();
        let printed = config.to_redacted_toml();
        assert!(
            !printed.contains("kkkk")
                && !printed.contains("mqtt-secret")
                && !printed.contains("db-secret")
        );
        assert!(printed.contains("<redacted>"));
        assert!(!format!("{config:?}").contains("mqtt-secret"));
    }

    #[test]
    fn mqtt_urls_give_host_and_port() {
        let endpoint = |host: &str, port, tls| MqttEndpoint {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(
            mqtt_endpoint("mqtt://127.0.0.1:1884").unwrap(),
            endpoint("127.0.0.1", 1884, false)
        );
        assert_eq!(
            mqtt_endpoint("mqtt://broker.clinic").unwrap(),
            endpoint("broker.clinic", 1883, false)
        );
        assert_eq!(
            mqtt_endpoint("mqtts://broker.clinic").unwrap(),
            endpoint("broker.clinic", 8883, true)
        );
        assert!(mqtt_endpoint("http://broker").is_err());
        assert!(mqtt_endpoint("mqtt://:1883").is_err());
    }

    #[test]
    fn mqtts_trusts_the_mozilla_roots_or_a_clinics_ca_file() {
        let mut config = Config::default();
        config.mqtt.url = "mqtts://broker.clinic".into();
        assert!(config.mqtt_tls().unwrap().is_some());
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        config.mqtt.ca_file = Some(not_pem);
        let error = config.mqtt_tls().unwrap_err().to_string();
        assert!(error.contains("holds no certificate"), "{error}");
        config.mqtt.ca_file = Some(dir.path().join("missing.pem"));
        assert!(config.validate().is_err());
        config.mqtt.url = "mqtt://broker.clinic".into();
        assert!(
            config.mqtt_tls().unwrap().is_none(),
            "plain mqtt:// needs no CA"
        );
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn a_shared_group_needs_mqtt_5() {
        let mut config = Config::default();
        config.ingest.shared_group = Some("bedside".into());
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("mqtt.protocol"), "{refused}");
        config.mqtt.protocol = MqttProtocol::V5;
        config.validate().unwrap();
        let parsed: MqttConfig = toml::from_str("protocol = \"5\"").unwrap();
        assert_eq!(parsed.protocol, MqttProtocol::V5);
        assert!(toml::from_str::<MqttConfig>("protocol = \"4\"").is_err());
        assert!(toml::from_str::<MqttConfig>("protocol = 1").is_err());
        // The environment's BEDSIDE_MQTT__PROTOCOL=5 reaches serde as a number.
        let from_env: Config =
            Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(("mqtt.protocol", 5))
                .extract()
                .unwrap();
        assert_eq!(from_env.mqtt.protocol, MqttProtocol::V5);
        let printed = toml::to_string(&from_env.mqtt).unwrap();
        assert!(printed.contains("protocol = \"5\""), "{printed}");
    }
}
