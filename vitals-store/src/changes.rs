//! Change notifications for in-memory copies of database rows.
//!
//! The alert engine keeps each active patient's inputs (thresholds, NEWS2
//! settings, live alerts) in memory, and the device gateway each device's
//! assignment history, so that the common reading costs no query. Triggers
//! announce every change on a PostgreSQL channel (migrations 0003 and
//! 1005); [`listen`] turns those notices into [`Forget`] orders.
//!
//! Notices sent while the listening connection is down are lost, so every
//! (re)connection starts with [`Forget::All`]: a copy is then at worst read
//! again, never kept stale.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Channel on which a patient's alert inputs are announced (payload: patient id).
pub const ALERT_INPUTS: &str = "bedside_alert_inputs";
/// Channel on which a device's assignments are announced (payload: device id).
pub const DEVICE_ASSIGNMENTS: &str = "bedside_device_assignments";

/// What a holder of copies must forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forget {
    /// The copies about this id.
    One(Uuid),
    /// Everything: notices may have been missed.
    All,
}

/// Listens on `channel` until the returned receiver is dropped, retrying
/// with backoff while the database is unreachable. The first order is
/// always [`Forget::All`], and so is the first after each reconnection.
pub fn listen(db: PgPool, channel: &'static str) -> mpsc::UnboundedReceiver<Forget> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !tx.is_closed() {
            let mut listener = match PgListener::connect_with(&db).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, channel, "cannot listen for changes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(error) = listener.listen(channel).await {
                tracing::warn!(%error, channel, "cannot listen for changes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            backoff = Duration::from_millis(100);
            if tx.send(Forget::All).is_err() {
                return;
            }
            loop {
                let order = tokio::select! {
                    notice = listener.try_recv() => match notice {
                        Ok(Some(notice)) => match Uuid::parse_str(notice.payload()) {
                            Ok(id) => Forget::One(id),
                            Err(_) => Forget::All,
                        },
                        // The connection dropped and was made again: notices
                        // in between are lost.
                        Ok(None) => Forget::All,
                        Err(error) => {
                            tracing::warn!(%error, channel, "lost the change listener; reconnecting");
                            break;
                        }
                    },
                    () = tx.closed() => return,
                };
                if tx.send(order).is_err() {
                    return;
                }
            }
        }
    });
    rx
}
