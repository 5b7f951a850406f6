//! Which simulcast layer of a published video each subscriber gets.
//!
//! A browser publishes its camera as up to three layers (separate
//! encodings at a quarter, half and full resolution). Each subscriber gets
//! one of them on its copy of the track, chosen from:
//!
//! - **the size it shows the video at** (`preferred_layer`): the smallest
//!   layer at least as tall as the tile, or the tallest there is — a
//!   thumbnail never costs a full-resolution stream;
//! - **its bandwidth**: an estimate of what reaches the subscriber
//!   ([`BandwidthEstimate`], from the loss its receiver reports give); a
//!   layer whose measured bitrate is over [`HEADROOM`] of it is not chosen;
//! - **what is being sent**: a layer with no packets for [`LAYER_IDLE`] is
//!   skipped (browsers pause their top layers when their own uplink is
//!   short).
//!
//! After a move down for bandwidth, moving up again waits
//! [`UPGRADE_HOLD`], however fast the estimate recovers: trying a layer
//! again too soon after it failed would oscillate.
//!
//! The switch itself happens on the new layer's next keyframe (asked for at
//! once), so the subscriber's decoder never gets a frame it cannot decode.
//!
//! Browsers keep naming their layers across renegotiations only because
//! the SFU never acknowledges a layer's SSRC in its reports
//! (`crate::rtcp_filter`).

use std::time::{Duration, Instant};

/// Share of the subscriber's estimated bandwidth a layer may use.
pub const HEADROOM: f64 = 0.9;
/// A layer silent this long is not being sent.
pub const LAYER_IDLE: Duration = Duration::from_secs(1);
/// How long after a move down for bandwidth before moving up is tried.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(8);

/// One layer of a published video, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// Its SSRC.
    pub ssrc: u32,
    /// Bits per second over the last measurement window.
    pub bitrate_bps: u64,
    /// The height its last keyframe declared.
    pub height: Option<u16>,
    /// Its last packet.
    pub last_packet: Instant,
}

/// The layers worth choosing from, lowest first: the ones being sent,
/// ordered by height when every one has declared it, else by bitrate.
fn ranked(layers: &[Layer], now: Instant) -> Vec<Layer> {
    let mut active: Vec<Layer> = layers
        .iter()
        .copied()
        .filter(|layer| now.saturating_duration_since(layer.last_packet) < LAYER_IDLE)
        .collect();
    if active.iter().all(|layer| layer.height.is_some()) {
        active.sort_by_key(|layer| (layer.height, layer.bitrate_bps));
    } else {
        active.sort_by_key(|layer| layer.bitrate_bps);
    }
    active
}

/// Loss above which the estimate drops to what arrived, less half the loss.
pub const CONGESTED_LOSS: f64 = 0.10;
/// Loss below which the estimate grows by [`GROWTH`] per report.
pub const CLEAR_LOSS: f64 = 0.02;
/// Growth of the estimate per statistics interval (two seconds) while loss
/// is low: libwebrtc's 8 % a second.
pub const GROWTH: f64 = 1.17;
/// The estimate never goes below this (the lowest layer and audio).
pub const MIN_ESTIMATE_BPS: u64 = 100_000;
/// Nor above this (more than any layer needs).
pub const MAX_ESTIMATE_BPS: u64 = 10_000_000;

/// A subscriber's bandwidth, estimated from the loss on what the SFU sends
/// it: libwebrtc's loss-based controller. Unknown (no limit) until the
/// first interval with congestion: a call starts at the layers the sizes
/// ask for. With loss over [`CONGESTED_LOSS`] it drops to the rate that
/// arrived times (1 − loss / 2); with loss under [`CLEAR_LOSS`] it grows by
/// [`GROWTH`] per interval, which lets a subscriber that moved down move
/// up again once its network recovers.
///
/// (Browsers also send a receive-side estimate, REMB, for what the SFU
/// forwards; it follows the incoming rate — at most about 1.5 times it —
/// and so never says a higher layer would fit: a subscriber on the lowest
/// layer would stay there.)
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BandwidthEstimate {
    bps: Option<u64>,
}

impl BandwidthEstimate {
    /// The estimate, bits per second, once there is one.
    pub fn bps(&self) -> Option<u64> {
        self.bps
    }

    /// One statistics interval: the rate the SFU sent at, and the share of
    /// it the subscriber reports lost.
    pub fn update(&mut self, sent_bps: u64, loss: f64) {
        if loss > CONGESTED_LOSS {
            let arrived = sent_bps as f64 * (1.0 - loss / 2.0);
            self.bps = Some((arrived as u64).clamp(MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS));
        } else if loss < CLEAR_LOSS
            && let Some(bps) = self.bps
        {
            self.bps = Some(((bps as f64 * GROWTH) as u64).min(MAX_ESTIMATE_BPS));
        }
    }
}

/// What a subscriber asks for and can take.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wants {
    /// The height it shows the video at (device pixels); `None`: as large as
    /// there is.
    pub max_height: Option<u16>,
    /// Its bandwidth estimate for this video, bits per second.
    pub bandwidth_bps: Option<u64>,
    /// When it last moved down for bandwidth.
    pub last_downgrade: Option<Instant>,
}

/// The layer a subscriber should receive of `layers`, given it receives
/// `current` now; `None` when no layer is being sent. The second value
/// says whether the choice is a move down for bandwidth.
///
/// A new subscription starts at the layer its size asks for, within the
/// estimate; a layer whose bitrate is over what the estimate allows
/// ([`HEADROOM`]) steps down one; a subscription below the layer its size
/// asks for steps up one when that fits, once [`UPGRADE_HOLD`] has passed
/// since its last move down (a step up that fails moves down again).
pub fn choose(
    layers: &[Layer],
    current: Option<u32>,
    wants: &Wants,
    now: Instant,
) -> Option<(u32, bool)> {
    let ranked = ranked(layers, now);
    if ranked.is_empty() {
        return None;
    }
    let by_size = match wants.max_height {
        Some(shown) => ranked
            .iter()
            .position(|layer| layer.height.is_some_and(|height| height >= shown))
            .unwrap_or(ranked.len() - 1),
        None => ranked.len() - 1,
    };
    let budget = wants
        .bandwidth_bps
        .map(|bandwidth| (bandwidth as f64 * HEADROOM) as u64);
    let fits = |layer: &Layer| budget.is_none_or(|budget| layer.bitrate_bps <= budget);
    let Some(rank) = current.and_then(|ssrc| ranked.iter().position(|layer| layer.ssrc == ssrc))
    else {
        // Starting (or the current layer stopped): the size's layer, or the
        // highest below it that fits.
        let start = (0..=by_size).rev().find(|&i| fits(&ranked[i])).unwrap_or(0);
        return Some((ranked[start].ssrc, false));
    };
    if by_size < rank {
        // Shown smaller now.
        return Some((ranked[by_size].ssrc, false));
    }
    if rank > 0 && !fits(&ranked[rank]) {
        return Some((ranked[rank - 1].ssrc, true));
    }
    let held = wants
        .last_downgrade
        .is_some_and(|at| now.saturating_duration_since(at) < UPGRADE_HOLD);
    if by_size > rank && !held && fits(&ranked[rank + 1]) {
        return Some((ranked[rank + 1].ssrc, false));
    }
    Some((ranked[rank].ssrc, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(now: Instant) -> Vec<Layer> {
        vec![
            Layer {
                ssrc: 3,
                bitrate_bps: 1_500_000,
                height: Some(720),
                last_packet: now,
            },
            Layer {
                ssrc: 1,
                bitrate_bps: 150_000,
                height: Some(180),
                last_packet: now,
            },
            Layer {
                ssrc: 2,
                bitrate_bps: 500_000,
                height: Some(360),
                last_packet: now,
            },
        ]
    }

    #[test]
    fn the_size_shown_picks_the_smallest_layer_tall_enough() {
        let now = Instant::now();
        let pick = |max_height| {
            choose(
                &layers(now),
                None,
                &Wants {
                    max_height,
                    ..Wants::default()
                },
                now,
            )
            .map(|c| c.0)
        };
        assert_eq!(pick(None), Some(3), "no size given: the best there is");
        assert_eq!(pick(Some(120)), Some(1), "a thumbnail");
        assert_eq!(pick(Some(180)), Some(1));
        assert_eq!(pick(Some(300)), Some(2));
        assert_eq!(pick(Some(1080)), Some(3), "larger than any: the tallest");
    }

    #[test]
    fn congestion_steps_down_and_probes_step_up_after_the_hold() {
        let now = Instant::now();
        let fresh = |at: Instant| {
            layers(now)
                .into_iter()
                .map(|layer| Layer {
                    last_packet: at,
                    ..layer
                })
                .collect::<Vec<_>>()
        };
        // Starting with an estimate of 700 kb/s: the half-size layer.
        let mut wants = Wants {
            bandwidth_bps: Some(700_000),
            ..Wants::default()
        };
        assert_eq!(choose(&layers(now), None, &wants, now), Some((2, false)));
        // Receiving the full layer with an estimate below its rate: congestion.
        assert_eq!(choose(&layers(now), Some(3), &wants, now), Some((2, true)));
        // The estimate recovers, but the step up waits for the hold.
        wants.last_downgrade = Some(now);
        wants.bandwidth_bps = Some(2_000_000);
        let soon = now + Duration::from_secs(2);
        assert_eq!(
            choose(&fresh(soon), Some(2), &wants, soon),
            Some((2, false)),
            "held"
        );
        let later = now + UPGRADE_HOLD;
        assert_eq!(
            choose(&fresh(later), Some(2), &wants, later),
            Some((3, false)),
            "up again"
        );
        wants.bandwidth_bps = Some(1_000_000);
        assert_eq!(
            choose(&fresh(later), Some(2), &wants, later),
            Some((2, false)),
            "does not fit"
        );
        // Less than even the lowest needs: it stays at the lowest (audio
        // only is the remedy for that, see `rooms`).
        wants.bandwidth_bps = Some(10_000);
        assert_eq!(
            choose(&fresh(later), Some(1), &wants, later),
            Some((1, false))
        );
        // Shown as a thumbnail: down at once, and not counted as congestion.
        let thumbnail = Wants {
            max_height: Some(90),
            ..Wants::default()
        };
        assert_eq!(
            choose(&fresh(later), Some(3), &thumbnail, later),
            Some((1, false))
        );
    }

    #[test]
    fn the_estimate_drops_on_congestion_and_recovers_while_clear() {
        let mut estimate = BandwidthEstimate::default();
        estimate.update(1_500_000, 0.05);
        assert_eq!(estimate.bps(), None, "no congestion yet: no limit");
        estimate.update(1_500_000, 0.01);
        assert_eq!(estimate.bps(), None);
        estimate.update(1_500_000, 0.20);
        assert_eq!(
            estimate.bps(),
            Some(1_350_000),
            "what arrived, less half the loss"
        );
        estimate.update(500_000, 0.05);
        assert_eq!(
            estimate.bps(),
            Some(1_350_000),
            "between the thresholds: held"
        );
        estimate.update(500_000, 0.0);
        assert_eq!(estimate.bps(), Some(1_579_500));
        estimate.update(10_000, 0.9);
        assert_eq!(estimate.bps(), Some(MIN_ESTIMATE_BPS));
        for _ in 0..100 {
            estimate.update(500_000, 0.0);
        }
        assert_eq!(estimate.bps(), Some(MAX_ESTIMATE_BPS));
    }

    #[test]
    fn layers_not_being_sent_are_skipped_and_unknown_heights_rank_by_bitrate() {
        let now = Instant::now();
        let mut layers = layers(now);
        layers[0].last_packet = now - LAYER_IDLE;
        let wants = Wants::default();
        assert_eq!(choose(&layers, None, &wants, now), Some((2, false)));
        for layer in &mut layers {
            layer.height = None;
        }
        layers[0].last_packet = now;
        assert_eq!(choose(&layers, None, &wants, now), Some((3, false)));
        assert_eq!(choose(&[], None, &wants, now), None);
    }
}
