//! Application state, settings and the router.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use chrono_tz::Tz;
use sqlx::PgPool;

use crate::auth::tokens::TokenKeys;
use crate::layers;
use crate::metrics::HttpMetrics;

/// Everything the HTTP edge needs to know from configuration. The server
/// crate fills it from the TOML file and environment; each field's default
/// and its reason live there.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The URL patients and staff open, e.g. `https://clinic.example`; join links start with it.
    pub public_base_url: String,
    /// Clinic name shown on pages.
    pub clinic_name: String,
    /// `Patient.identifier.system` of the clinic's MRNs in FHIR.
    pub mrn_system: String,
    /// What an erasure does to the patient's readings.
    pub erasure_vitals: bedside_records::erasure::VitalsOnErasure,
    /// Whether staff may sign in with e-mail and password.
    pub password_login: bool,
    /// The clinic's OpenID Connect provider, when staff sign in through it.
    pub oidc: Option<crate::auth::oidc::OidcSettings>,
    /// The clinic's time zone: appointment days and local times use it.
    pub time_zone: Tz,
    /// Issuer and audience written into and required of every token.
    pub token_issuer: String,
    /// See `token_issuer`.
    pub token_audience: String,
    /// Lifetime of access and visit tokens (at most 15 minutes).
    pub access_ttl: Duration,
    /// Lifetime of a refresh token family member.
    pub refresh_ttl: Duration,
    /// How long before the start a join link opens.
    pub join_opens_before: Duration,
    /// How long after the start a booked patient becomes a no-show.
    pub no_show_grace: Duration,
    /// Failed logins per account within `login_window` before throttling.
    pub login_max_failures_per_account: i64,
    /// Failed logins per client address within `login_window` before throttling.
    pub login_max_failures_per_client: i64,
    /// The throttling window.
    pub login_window: Duration,
    /// Sustained requests per second per client address.
    pub rate_limit_per_second: u32,
    /// Burst of requests a client address may send above the sustained rate.
    pub rate_limit_burst: u32,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Directory of the built web client; `None` serves no pages.
    pub web_root: Option<PathBuf>,
    /// Whether the server terminates TLS itself (turns on HSTS).
    pub tls: bool,
    /// Version tag of the telemedicine consent text patients accept.
    pub consent_version: String,
    /// The consent text itself.
    pub consent_text: String,
    /// How many migrations a ready database has applied (all of them).
    pub expected_migrations: usize,
    /// How long a video-visit participant whose connection dropped may
    /// rejoin without being admitted again.
    pub visit_rejoin_grace: Duration,
    /// The STUN and TURN servers browsers get for video visits.
    pub ice: crate::ice::IceSettings,
}

impl Settings {
    /// Settings fit for tests and local development: everything at its
    /// documented default, `public_base_url` as given.
    pub fn for_local(public_base_url: impl Into<String>) -> Self {
        let public_base_url: String = public_base_url.into();
        Self {
            mrn_system: format!("{}/fhir/sid/mrn", public_base_url.trim_end_matches('/')),
            public_base_url,
            erasure_vitals: bedside_records::erasure::VitalsOnErasure::Deleted,
            password_login: true,
            oidc: None,
            clinic_name: "Bedside Clinic".into(),
            time_zone: chrono_tz::Europe::Berlin,
            token_issuer: "bedside".into(),
            token_audience: "bedside-api".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(12 * 3600),
            join_opens_before: Duration::from_secs(15 * 60),
            no_show_grace: Duration::from_secs(15 * 60),
            login_max_failures_per_account: 5,
            login_max_failures_per_client: 20,
            login_window: Duration::from_secs(15 * 60),
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            max_body_bytes: 64 * 1024,
            web_root: None,
            tls: false,
            consent_version: "2026-01".into(),
            consent_text: DEFAULT_CONSENT_TEXT.into(),
            visit_rejoin_grace: Duration::from_secs(120),
            ice: crate::ice::IceSettings::default(),
            expected_migrations: bedside_records::MIGRATOR
                .iter()
                .filter(|m| m.migration_type.is_up_migration())
                .count(),
        }
    }
}

/// The consent text shipped with Bedside; clinics replace it in configuration.
pub const DEFAULT_CONSENT_TEXT: &str = "I agree to receive care by video. I understand that a video visit may not be suitable for every condition, that my clinician may ask me to come in person, that the call is encrypted and not recorded, and that I can withdraw this consent at any time.";

/// Called after a device is provisioned so the MQTT broker's credentials
/// follow the registry. The server wires it to rewriting Mosquitto's
/// password and ACL files and reloading the broker; an error is reported
/// to the admin, and the device stays registered.
pub type DevicesChanged =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<bool, String>> + Send + Sync>;

/// A readiness check another part of the server registers (e.g. the device
/// gateway: connected to the broker and storing).
pub type ReadinessCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    settings: Settings,
    keys: TokenKeys,
    link_secret: bedside_records::join_links::LinkSecret,
    oidc: Option<crate::auth::oidc::Provider>,
    metrics: HttpMetrics,
    limiter: layers::ClientLimiter,
    devices_changed: std::sync::OnceLock<DevicesChanged>,
    readiness: std::sync::RwLock<Vec<(&'static str, ReadinessCheck)>>,
    live: crate::live::LiveHub,
    visits: crate::visits::Visits,
    sfu: std::sync::OnceLock<bedside_sfu::rooms::Sfu>,
}

impl AppState {
    /// Builds the state. `signing_key` is the HMAC key for tokens (at least 32 bytes).
    ///
    /// # Panics
    /// When `signing_key` is shorter than 32 bytes or the rate limits are zero:
    /// both are configuration bugs the server checks before calling this.
    pub fn new(
        db: PgPool,
        settings: Settings,
        signing_key: &[u8],
        registry: &prometheus::Registry,
    ) -> Self {
        let limiter =
            layers::client_limiter(settings.rate_limit_per_second, settings.rate_limit_burst);
        let settings_grace = settings.visit_rejoin_grace;
        Self {
            inner: Arc::new(Inner {
                db,
                keys: TokenKeys::new(
                    signing_key,
                    &settings.token_issuer,
                    &settings.token_audience,
                ),
                link_secret: bedside_records::join_links::LinkSecret::from_signing_key(signing_key),
                oidc: settings.oidc.clone().and_then(|oidc| {
                    let callback = format!(
                        "{}/api/v1/auth/oidc/callback",
                        settings.public_base_url.trim_end_matches('/')
                    );
                    crate::auth::oidc::Provider::new(oidc, callback)
                        .map_err(|error| tracing::error!(%error, "OpenID Connect is off"))
                        .ok()
                }),
                settings,
                metrics: HttpMetrics::register(registry),
                limiter,
                devices_changed: std::sync::OnceLock::new(),
                readiness: std::sync::RwLock::new(Vec::new()),
                live: crate::live::LiveHub::default(),
                visits: crate::visits::Visits::new(settings_grace),
                sfu: std::sync::OnceLock::new(),
            }),
        }
    }
    /// Installs the hook run after devices change (once; later calls are ignored).
    pub fn set_devices_changed(&self, hook: DevicesChanged) {
        let _ = self.inner.devices_changed.set(hook);
    }
    /// Adds a named check that `/readyz` reports and requires.
    pub fn add_readiness_check(&self, name: &'static str, check: ReadinessCheck) {
        self.inner
            .readiness
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, check));
    }
    /// Evaluates the registered checks.
    pub fn readiness_checks(&self) -> Vec<(&'static str, bool)> {
        let checks = self
            .inner
            .readiness
            .read()
            .unwrap_or_else(|e| e.into_inner());
        checks
            .iter()
            .map(|(name, check)| (*name, check()))
            .collect()
    }
    /// Runs the devices-changed hook; `None` when none is installed.
    pub async fn devices_changed(&self) -> Option<Result<bool, String>> {
        let hook = self.inner.devices_changed.get()?.clone();
        Some(hook().await)
    }
    /// Installs the SFU video visits send their media through (once).
    pub fn set_sfu(&self, sfu: bedside_sfu::rooms::Sfu) {
        let _ = self.inner.sfu.set(sfu);
    }
    /// The SFU, when the server runs one.
    pub fn sfu(&self) -> Option<&bedside_sfu::rooms::Sfu> {
        self.inner.sfu.get()
    }
    /// The video-visit rooms.
    pub fn visits(&self) -> &crate::visits::Visits {
        &self.inner.visits
    }
    /// The live hub clinician feeds subscribe to.
    pub fn live(&self) -> &crate::live::LiveHub {
        &self.inner.live
    }
    /// The database pool.
    pub fn db(&self) -> &PgPool {
        &self.inner.db
    }
    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    /// Token keys.
    pub fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }
    /// The clinic's OpenID Connect provider, when configured.
    pub fn oidc(&self) -> Option<&crate::auth::oidc::Provider> {
        self.inner.oidc.as_ref()
    }
    /// The key patients' join-link tokens are derived under.
    pub fn link_secret(&self) -> &bedside_records::join_links::LinkSecret {
        &self.inner.link_secret
    }
    pub(crate) fn metrics(&self) -> &HttpMetrics {
        &self.inner.metrics
    }
    pub(crate) fn limiter(&self) -> &layers::ClientLimiter {
        &self.inner.limiter
    }
}

/// The whole HTTP application: API, health, and the web client.
pub fn router(state: AppState) -> Router {
    let api =
        crate::routes::api_router().layer(DefaultBodyLimit::max(state.settings().max_body_bytes));
    let app = Router::new()
        .merge(crate::routes::system::router())
        .nest("/api/v1", api)
        .nest(
            "/fhir",
            crate::fhir::router().layer(DefaultBodyLimit::max(state.settings().max_body_bytes)),
        )
        .route("/ws", axum::routing::get(crate::feed::upgrade))
        .route(
            "/calendar/{file}",
            axum::routing::get(crate::routes::calendar::feed),
        )
        .merge(crate::web::router(state.settings().web_root.as_deref()));
    layers::apply(app, state.clone()).with_state(state)
}
