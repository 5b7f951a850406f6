//! Appointment reminders: plans outbox rows, claims the due ones, and sends
//! them by e-mail (SMTP, with lettre) or by text message (the clinic's SMS
//! webhook), recording each outcome (see `bedside_records::reminders` for
//! the delivery guarantee).
//!
//! Messages carry the day and time in the clinic's time zone, the
//! clinician's name and, for a video visit, the patient's live join link
//! (the same link the clinic sent; a reminder never replaces it). They
//! carry no diagnosis or reason for the visit: e-mail and SMS are not
//! private channels. Logs name the outbox row and the appointment only.

use std::time::Duration;

use bedside_records::join_links;
use bedside_records::reminders::{self, Channel, DueReminder, Outcome};
use bedside_signaling::AppState;
use chrono::Utc;
use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use tokio::sync::watch;

use crate::config::RemindersConfig;

/// Rows claimed per pass.
const BATCH: i64 = 50;

/// Everything a pass needs, built once.
pub struct Sender {
    state: AppState,
    config: RemindersConfig,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    http: reqwest::Client,
    channels: Vec<Channel>,
}

impl Sender {
    /// The sender for `config`.
    ///
    /// # Errors
    /// A malformed SMTP URL.
    pub fn new(state: AppState, config: RemindersConfig) -> anyhow::Result<Self> {
        let smtp = match config.smtp_url.as_ref().map(|u| u.expose()) {
            Some(url) if !url.is_empty() => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("reminders.smtp_url: {e}"))?
                    .timeout(Some(Duration::from_secs(30)))
                    .build(),
            ),
            _ => None,
        };
        let mut channels = Vec::new();
        if smtp.is_some() {
            channels.push(Channel::Email);
        }
        if config
            .sms_webhook_url
            .as_deref()
            .is_some_and(|u| !u.is_empty())
        {
            channels.push(Channel::Sms);
        }
        Ok(Self {
            state,
            config,
            smtp,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                // A redirect would carry the message and its signature to
                // another host.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            channels,
        })
    }

    /// One pass now.
    ///
    /// # Errors
    /// As [`Sender::pass_at`].
    pub async fn pass(&self) -> anyhow::Result<usize> {
        self.pass_at(Utc::now()).await
    }

    /// One pass as of `now` (tests move it): plan, claim, send, record.
    /// Returns the reminders sent.
    ///
    /// # Errors
    /// When the database fails (sending failures are recorded per row).
    pub async fn pass_at(&self, now: chrono::DateTime<Utc>) -> anyhow::Result<usize> {
        if self.channels.is_empty() {
            return Ok(0);
        }
        let db = self.state.db();
        let longest = self.config.lead_minutes.iter().copied().max().unwrap_or(0);
        reminders::plan(
            db,
            now,
            chrono::Duration::minutes(i64::from(longest) + 60),
            &self.config.lead_minutes,
            &self.channels,
        )
        .await?;
        let lease = chrono::Duration::seconds(self.config.lease_secs as i64);
        let mut sent = 0;
        // One claim per reminder, so each lease starts when its send does
        // (a batch's last rows would otherwise outlive their lease).
        for _ in 0..BATCH {
            let Some(due) = reminders::claim(db, now, lease, 1).await?.pop() else {
                break;
            };
            let outcome = self.deliver(&due, now).await;
            let (outcome, code) = match outcome {
                Ok(()) => (Outcome::Sent, "sent"),
                Err(Failure::Skip(reason)) => (Outcome::Skipped(reason), reason),
                Err(Failure::Permanent(reason)) => (Outcome::Failed(reason), reason),
                Err(Failure::Transient(reason)) if due.attempts >= self.config.max_attempts => {
                    (Outcome::Failed(reason), reason)
                }
                Err(Failure::Transient(reason)) => {
                    // 1, 2, 4, … minutes, at most an hour.
                    let backoff = 60i64 << (due.attempts - 1).clamp(0, 6);
                    let at = now + chrono::Duration::seconds(backoff.min(3600));
                    (Outcome::Retry(reason, at), reason)
                }
            };
            let recorded = reminders::record(db, due.id, due.attempts, outcome, Utc::now()).await?;
            if !recorded {
                tracing::warn!(reminder = %due.id, "a reminder's claim was taken over before its outcome was recorded");
            }
            if outcome == Outcome::Sent {
                sent += 1;
            }
            tracing::info!(reminder = %due.id, appointment = %due.appointment_id,
                channel = %due.channel, outcome = code, "reminder");
        }
        Ok(sent)
    }

    async fn deliver(&self, due: &DueReminder, now: chrono::DateTime<Utc>) -> Result<(), Failure> {
        if !due.still_due {
            return Err(Failure::Skip("no_longer_booked"));
        }
        let text = self.text(due).await?;
        // The claim may be a while old: cancelled, moved or erased since?
        let still = reminders::still_due(self.state.db(), due.id, now)
            .await
            .map_err(|_| Failure::Transient("database"))?;
        if !still {
            return Err(Failure::Skip("no_longer_booked"));
        }
        match due.channel.as_str() {
            "email" => self.email(due, text).await,
            "sms" => self.sms(due, text).await,
            _ => Err(Failure::Permanent("unknown_channel")),
        }
    }

    /// The message, the same words for both channels.
    async fn text(&self, due: &DueReminder) -> Result<Reminder, Failure> {
        let settings = self.state.settings();
        let local = due.starts_at.with_timezone(&settings.time_zone);
        let when = local.format("%A %-d %B %Y at %H:%M").to_string();
        let base = settings.public_base_url.trim_end_matches('/');
        let (what, how) = match due.kind {
            bedside_records::domain::AppointmentKind::Video => {
                let token = join_links::live_token(
                    self.state.db(),
                    due.appointment_id,
                    self.state.link_secret(),
                )
                .await
                .map_err(|_| Failure::Transient("database"))?;
                let opens = settings.join_opens_before.as_secs() / 60;
                let how = match token {
                    Some(token) => format!(
                        "Join from your browser, from {opens} minutes before the start:\n{base}/join#t={token}"
                    ),
                    // A link the server cannot write out again (issued before
                    // links were derived): never replace it with a new one.
                    None => format!(
                        "Join from your browser with the link {} sent you, from {opens} minutes before the start.",
                        settings.clinic_name
                    ),
                };
                ("video visit", how)
            }
            bedside_records::domain::AppointmentKind::InPerson => (
                "visit at the clinic",
                format!("Please come to {}.", settings.clinic_name),
            ),
        };
        Ok(Reminder {
            subject: format!("Reminder: your {what} on {when}"),
            body: format!(
                "Hello {name},\n\nThis is a reminder of your {what} with {clinician} on {when} ({tz}).\n\n{how}\n\nIf you cannot come, please let {clinic} know.\n",
                name = due.given_name,
                clinician = due.practitioner_name,
                tz = settings.time_zone,
                clinic = settings.clinic_name,
            ),
        })
    }

    async fn email(&self, due: &DueReminder, text: Reminder) -> Result<(), Failure> {
        let smtp = self.smtp.as_ref().ok_or(Failure::Skip("email_off"))?;
        let to = due.email.as_deref().ok_or(Failure::Skip("no_address"))?;
        let from = self
            .config
            .from
            .parse()
            .map_err(|_| Failure::Permanent("bad_from_address"))?;
        let to = to.parse().map_err(|_| Failure::Permanent("bad_address"))?;
        let host = url_host(&self.state.settings().public_base_url);
        let message = Message::builder()
            .from(from)
            .to(to)
            // The outbox row's id: a repeat after a crash is the same message.
            .message_id(Some(format!("<reminder-{}@{host}>", due.id)))
            .subject(text.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.body)
            .map_err(|_| Failure::Permanent("bad_message"))?;
        match smtp.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent("smtp_rejected")),
            Err(_) => Err(Failure::Transient("smtp_unavailable")),
        }
    }

    async fn sms(&self, due: &DueReminder, text: Reminder) -> Result<(), Failure> {
        let url = self
            .config
            .sms_webhook_url
            .as_deref()
            .ok_or(Failure::Skip("sms_off"))?;
        let to = due.phone.as_deref().ok_or(Failure::Skip("no_address"))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "id": due.id,
            "to": to,
            "text": format!("{}\n{}", text.subject, text.body),
        }))
        .map_err(|_| Failure::Permanent("bad_message"))?;
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            // Lets the gateway drop a repeat after a crash.
            .header("idempotency-key", due.id.to_string());
        if let Some(secret) = self.config.sms_webhook_secret.as_ref() {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .map_err(|_| Failure::Permanent("bad_secret"))?;
            mac.update(&body);
            let signature = hex_lower(&mac.finalize().into_bytes());
            request = request.header("x-bedside-signature", format!("sha256={signature}"));
        }
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response)
                if response.status().is_client_error()
                    && !matches!(response.status().as_u16(), 408 | 429) =>
            {
                Err(Failure::Permanent("sms_rejected"))
            }
            Ok(_) | Err(_) => Err(Failure::Transient("sms_unavailable")),
        }
    }
}

struct Reminder {
    subject: String,
    body: String,
}

/// Why a reminder was not sent now; the reasons are codes for the outbox.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Skip(&'static str),
    Transient(&'static str),
    Permanent(&'static str),
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn url_host(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
        .unwrap_or("bedside.invalid")
        .to_owned()
}

/// Runs passes every `reminders.every_secs` until `stop`.
pub async fn run(sender: Sender, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(sender.config.every_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(error) = sender.pass().await {
            tracing::warn!(%error, "reminder pass failed; retrying next tick");
        }
    }
}
