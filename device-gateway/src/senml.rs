//! SenML (RFC 8428) packs to readings: a pure decoder with no I/O.
//!
//! A pack is an array of records in JSON or CBOR. Base fields (`bn`, `bt`,
//! `bu`, `bv`, `bver`) carry over to the records after them, as RFC 8428
//! §4.6 resolves them: name = base name + name, time = base time + time
//! (a resolved time below 2^28 is relative to now, so a record with no time
//! gets the receive time), value = base value + value, unit = unit or base
//! unit (or the metric's canonical unit when neither is given).
//!
//! **Good records are never lost to bad neighbours.** A pack that cannot be
//! parsed at all (not JSON/CBOR, not an array, too large, too many records,
//! an unsupported version) is refused whole with a [`PackError`]; inside a
//! pack, each record is decoded on its own: good ones become [`Reading`]s,
//! bad ones [`Rejection`]s with a bounded [`Reason`] and a short detail.
//!
//! Names are Bedside metric names (`heart_rate`) or LOINC codes (`8867-4`),
//! optionally after a device prefix ending in `:` or `/` (`urn:dev:x:heart_rate`).
//! Values are converted to the metric's canonical unit and must be finite
//! and plausible. Level of consciousness arrives as a string (`vs`: ACVPU
//! letter or word); supplemental oxygen as a boolean (`vb`) or 0/1 (`v`).
//!
//! Format: the topic decides (`…/vitals/cbor` is CBOR); on `…/vitals` the
//! first byte decides: `[` (after whitespace) is JSON, a CBOR array header
//! (major type 4) is CBOR.

use std::collections::BTreeMap;

use bedside_vitals_store::metric::{Metric, ValueError};
use chrono::{DateTime, Duration, TimeDelta, Utc};

/// SenML times below this are relative to the receive time (RFC 8428 §4.5.3).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0; // 2^28
/// The SenML version this decoder implements (RFC 8428 is version 10).
const SUPPORTED_VERSION: i64 = 10;

/// Payload encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/senml+json`.
    Json,
    /// `application/senml+cbor`.
    Cbor,
}

impl Format {
    /// Picks the format from the topic and, on the plain topic, the first byte.
    pub fn detect(topic: &str, payload: &[u8]) -> Option<Format> {
        if topic.ends_with("/vitals/cbor") {
            return Some(Format::Cbor);
        }
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Some(Format::Json),
            Some(0x80..=0x9f) => Some(Format::Cbor),
            _ => None,
        }
    }
}

/// Limits on what one message may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload in bytes.
    pub max_payload_bytes: usize,
    /// Most records in one pack.
    pub max_records: usize,
    /// How far in the future a reading may claim to be (device clocks drift).
    pub max_future: Duration,
    /// How old a reading may be (older ones fall outside retention).
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_records: 512,
            max_future: Duration::minutes(5),
            max_age: Duration::days(365),
        }
    }
}

/// A validated reading in the metric's canonical unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// What was measured.
    pub metric: Metric,
    /// The value in [`Metric::unit`].
    pub value: f64,
    /// When it was measured.
    pub time: DateTime<Utc>,
}

/// A device's own battery level (not a reading of the patient): a record
/// named `battery` or `battery_level`, in `%EL` (RFC 8428's "percentage,
/// remaining battery energy level"), `%`, or `/` (a ratio, 0–1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Battery {
    /// Remaining charge, 0–100 %.
    pub percent: f64,
    /// When it was measured.
    pub time: DateTime<Utc>,
}

/// Why a record (or a pack) was refused. A bounded set: these are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not JSON/CBOR, or not an array of records.
    MalformedPayload,
    /// Over the size limit.
    PayloadTooLarge,
    /// More records than allowed.
    TooManyRecords,
    /// `bver` newer than RFC 8428's 10.
    UnsupportedVersion,
    /// A record that is not a map/object.
    MalformedRecord,
    /// A field of the wrong type.
    WrongType,
    /// A field ending in `_` that this decoder does not understand (RFC 8428 §4.4).
    MustUnderstand,
    /// No resolved name.
    MissingName,
    /// A name that is no Bedside metric or LOINC code.
    UnknownMetric,
    /// No value this metric can use.
    MissingValue,
    /// A unit not accepted for the metric.
    UnknownUnit,
    /// NaN or infinite.
    NotFinite,
    /// Outside the plausible range.
    Implausible,
    /// Too far in the future.
    TimeInFuture,
    /// Older than retention.
    TimeTooOld,
}

impl Reason {
    /// The stored and labelled spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedPayload => "malformed_payload",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::TooManyRecords => "too_many_records",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::MalformedRecord => "malformed_record",
            Reason::WrongType => "wrong_type",
            Reason::MustUnderstand => "must_understand_field",
            Reason::MissingName => "missing_name",
            Reason::UnknownMetric => "unknown_metric",
            Reason::MissingValue => "missing_value",
            Reason::UnknownUnit => "unknown_unit",
            Reason::NotFinite => "not_finite",
            Reason::Implausible => "implausible_value",
            Reason::TimeInFuture => "time_in_future",
            Reason::TimeTooOld => "time_too_old",
        }
    }
}

/// A refused record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Position in the pack.
    pub index: usize,
    /// Why.
    pub reason: Reason,
    /// A short explanation (no payload contents beyond a field name or unit).
    pub detail: String,
}

/// A pack refused whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct PackError {
    /// Why.
    pub reason: Reason,
    /// A short explanation.
    pub detail: String,
}

impl PackError {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a pack decoded to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// The good readings, in pack order.
    pub readings: Vec<Reading>,
    /// The refused records.
    pub rejections: Vec<Rejection>,
    /// The newest battery level in the pack, if it reported one.
    pub battery: Option<Battery>,
}

/// A field value as either encoding carries it.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Number(f64),
    Text(String),
    Bool(bool),
    Bytes,
    Other,
}

/// A record's fields by SenML label, encoding-neutral.
type RawRecord = BTreeMap<String, Field>;

/// Decodes a pack.
///
/// # Errors
/// [`PackError`] when the pack as a whole cannot be used.
pub fn decode(
    payload: &[u8],
    format: Format,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<Decoded, PackError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(PackError::new(
            Reason::PayloadTooLarge,
            format!(
                "{} bytes, limit {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let records = match format {
        Format::Json => parse_json(payload, limits)?,
        Format::Cbor => parse_cbor(payload, limits)?,
    };
    resolve(records, received_at, limits)
}

fn parse_json(
    payload: &[u8],
    limits: &Limits,
) -> Result<Vec<Result<RawRecord, Rejection>>, PackError> {
    // serde_json refuses nesting deeper than 128 levels, so a hostile pack
    // cannot exhaust the stack.
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
        PackError::new(
            Reason::MalformedPayload,
            format!("not JSON: {}", e.classify_name()),
        )
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(PackError::new(
            Reason::MalformedPayload,
            "a SenML pack is a JSON array",
        ));
    };
    check_count(items.len(), limits)?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            serde_json::Value::Object(map) => {
                Ok(map.into_iter().map(|(k, v)| (k, json_field(v))).collect())
            }
            _ => Err(Rejection {
                index,
                reason: Reason::MalformedRecord,
                detail: "a record is a JSON object".into(),
            }),
        })
        .collect())
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Eof => "truncated",
            serde_json::error::Category::Data => "invalid data",
            serde_json::error::Category::Io => "unreadable",
        }
    }
}

fn json_field(value: serde_json::Value) -> Field {
    match value {
        serde_json::Value::Number(n) => n.as_f64().map_or(Field::Other, Field::Number),
        serde_json::Value::String(s) => Field::Text(s),
        serde_json::Value::Bool(b) => Field::Bool(b),
        _ => Field::Other,
    }
}

/// CBOR labels of RFC 8428 Table 6.
fn cbor_label(key: i128) -> Option<&'static str> {
    Some(match key {
        -1 => "bver",
        -2 => "bn",
        -3 => "bt",
        -4 => "bu",
        -5 => "bv",
        -6 => "bs",
        0 => "n",
        1 => "u",
        2 => "v",
        3 => "vs",
        4 => "vb",
        5 => "s",
        6 => "t",
        7 => "ut",
        8 => "vd",
        _ => return None,
    })
}

fn parse_cbor(
    payload: &[u8],
    limits: &Limits,
) -> Result<Vec<Result<RawRecord, Rejection>>, PackError> {
    let value: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(payload, 32)
        .map_err(|e| {
            PackError::new(
                Reason::MalformedPayload,
                format!("not CBOR: {}", cbor_error_name(&e)),
            )
        })?;
    let ciborium::Value::Array(items) = value else {
        return Err(PackError::new(
            Reason::MalformedPayload,
            "a SenML pack is a CBOR array",
        ));
    };
    check_count(items.len(), limits)?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let ciborium::Value::Map(entries) = item else {
                return Err(Rejection {
                    index,
                    reason: Reason::MalformedRecord,
                    detail: "a record is a CBOR map".into(),
                });
            };
            let mut record = RawRecord::new();
            for (key, value) in entries {
                let label = match key {
                    ciborium::Value::Integer(i) => match cbor_label(i128::from(i)) {
                        Some(label) => label.to_owned(),
                        // Unknown negative labels are "must understand" like `_` names.
                        None if i128::from(i) < 0 => format!("{}_", i128::from(i)),
                        None => continue,
                    },
                    ciborium::Value::Text(t) => t,
                    _ => {
                        return Err(Rejection {
                            index,
                            reason: Reason::MalformedRecord,
                            detail: "a record key is a label or text".into(),
                        });
                    }
                };
                record.insert(label, cbor_field(value));
            }
            Ok(record)
        })
        .collect())
}

fn cbor_error_name<T>(error: &ciborium::de::Error<T>) -> &'static str {
    match error {
        ciborium::de::Error::Io(_) => "truncated",
        ciborium::de::Error::Syntax(_) => "syntax error",
        ciborium::de::Error::Semantic(..) => "invalid data",
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply",
    }
}

fn cbor_field(value: ciborium::Value) -> Field {
    match value {
        ciborium::Value::Integer(i) => Field::Number(i128::from(i) as f64),
        ciborium::Value::Float(f) => Field::Number(f),
        ciborium::Value::Text(t) => Field::Text(t),
        ciborium::Value::Bool(b) => Field::Bool(b),
        ciborium::Value::Bytes(_) => Field::Bytes,
        _ => Field::Other,
    }
}

fn check_count(n: usize, limits: &Limits) -> Result<(), PackError> {
    if n > limits.max_records {
        return Err(PackError::new(
            Reason::TooManyRecords,
            format!("{n} records, limit {}", limits.max_records),
        ));
    }
    Ok(())
}

/// The base fields in force while walking a pack.
#[derive(Debug, Default)]
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
}

const KNOWN_FIELDS: [&str; 15] = [
    "bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "s", "t", "ut", "vd",
];

fn resolve(
    records: Vec<Result<RawRecord, Rejection>>,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<Decoded, PackError> {
    let mut base = Base::default();
    let mut out = Decoded::default();
    for (index, record) in records.into_iter().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(rejection) => {
                out.rejections.push(rejection);
                continue;
            }
        };
        let reject = |reason: Reason, detail: String| Rejection {
            index,
            reason,
            detail,
        };
        // The version applies to the whole pack: a newer one means fields
        // we may misread, so nothing in it is trusted.
        if let Some(v) = record.get("bver") {
            match v {
                Field::Number(v) if *v <= SUPPORTED_VERSION as f64 => {}
                Field::Number(v) => {
                    return Err(PackError::new(
                        Reason::UnsupportedVersion,
                        format!("bver {v}"),
                    ));
                }
                _ => {
                    out.rejections
                        .push(reject(Reason::WrongType, "bver must be a number".into()));
                    continue;
                }
            }
        }
        if let Some(field) = record
            .keys()
            .find(|k| k.ends_with('_') && !KNOWN_FIELDS.contains(&k.as_str()))
        {
            out.rejections.push(reject(
                Reason::MustUnderstand,
                format!("field {}", truncate(field)),
            ));
            continue;
        }
        // Base fields first: they apply to this record and the ones after it.
        match update_base(&mut base, &record) {
            Ok(()) => {}
            Err(field) => {
                out.rejections.push(reject(
                    Reason::WrongType,
                    format!("{field} has the wrong type"),
                ));
                continue;
            }
        }
        let has_value = ["v", "vs", "vb", "vd", "s"]
            .iter()
            .any(|k| record.contains_key(*k));
        let has_name = record.contains_key("n");
        if !has_value && !has_name {
            // A record of base fields only (e.g. the first of a pack) carries no reading.
            continue;
        }
        let name = match record_name(&base, &record) {
            Ok(name) => name,
            Err((reason, detail)) => {
                out.rejections.push(reject(reason, detail));
                continue;
            }
        };
        if is_battery(&name) {
            match battery(&base, &record, received_at, limits) {
                Ok(b) if out.battery.is_none_or(|held| b.time >= held.time) => {
                    out.battery = Some(b);
                }
                Ok(_) => {}
                Err((reason, detail)) => out.rejections.push(reject(reason, detail)),
            }
            continue;
        }
        match reading(&name, &base, &record, received_at, limits) {
            Ok(r) => out.readings.push(r),
            Err((reason, detail)) => out.rejections.push(reject(reason, detail)),
        }
    }
    Ok(out)
}

fn update_base(base: &mut Base, record: &RawRecord) -> Result<(), &'static str> {
    if let Some(f) = record.get("bn") {
        let Field::Text(t) = f else { return Err("bn") };
        base.name = t.clone();
    }
    if let Some(f) = record.get("bt") {
        let Field::Number(t) = f else {
            return Err("bt");
        };
        base.time = *t;
    }
    if let Some(f) = record.get("bu") {
        let Field::Text(u) = f else { return Err("bu") };
        base.unit = Some(u.clone());
    }
    if let Some(f) = record.get("bv") {
        let Field::Number(v) = f else {
            return Err("bv");
        };
        base.value = *v;
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn metric_for(name: &str) -> Option<Metric> {
    Metric::from_name(name).or_else(|| name.rsplit([':', '/']).next().and_then(Metric::from_name))
}

/// ACVPU from a letter or word.
fn consciousness_code(text: &str) -> Option<f64> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "a" | "alert" => 0.0,
        "c" | "confusion" | "new_confusion" | "new confusion" => 1.0,
        "v" | "voice" => 2.0,
        "p" | "pain" => 3.0,
        "u" | "unresponsive" => 4.0,
        _ => return None,
    })
}

type Refusal = (Reason, String);

/// A record's resolved name: the base name followed by its own.
fn record_name(base: &Base, record: &RawRecord) -> Result<String, Refusal> {
    let name = match record.get("n") {
        None => base.name.clone(),
        Some(Field::Text(n)) => format!("{}{n}", base.name),
        Some(_) => return Err((Reason::WrongType, "n has the wrong type".into())),
    };
    if name.is_empty() {
        return Err((Reason::MissingName, "no name and no base name".into()));
    }
    Ok(name)
}

/// Whether a resolved name is the device's battery level.
fn is_battery(name: &str) -> bool {
    matches!(
        name.rsplit([':', '/']).next(),
        Some("battery" | "battery_level")
    )
}

/// A battery record.
fn battery(
    base: &Base,
    record: &RawRecord,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<Battery, Refusal> {
    let value = match record.get("v") {
        Some(Field::Number(v)) => base.value + v,
        Some(_) => return Err((Reason::WrongType, "v has the wrong type".into())),
        None => return Err((Reason::MissingValue, "battery needs a numeric v".into())),
    };
    let unit = match record.get("u") {
        None => base.unit.clone(),
        Some(Field::Text(u)) => Some(u.clone()),
        Some(_) => return Err((Reason::WrongType, "u has the wrong type".into())),
    };
    let percent = match unit.as_deref() {
        None | Some("%EL" | "%") => value,
        Some("/") => value * 100.0,
        Some(other) => {
            return Err((
                Reason::UnknownUnit,
                format!("unit {} for battery", truncate(other)),
            ));
        }
    };
    if !percent.is_finite() {
        return Err((Reason::NotFinite, "battery is not a finite number".into()));
    }
    if !(0.0..=100.0).contains(&percent) {
        return Err((Reason::Implausible, "battery outside 0–100 %".into()));
    }
    Ok(Battery {
        percent,
        time: record_time(base, record, received_at, limits)?,
    })
}

fn reading(
    name: &str,
    base: &Base,
    record: &RawRecord,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<Reading, Refusal> {
    let metric = metric_for(name)
        .ok_or_else(|| (Reason::UnknownMetric, format!("name {}", truncate(name))))?;
    let unit = match record.get("u") {
        None => base.unit.clone(),
        Some(Field::Text(u)) => Some(u.clone()),
        Some(_) => return Err((Reason::WrongType, "u has the wrong type".into())),
    };
    let raw_value = match record.get("v") {
        Some(Field::Number(v)) => base.value + v,
        Some(_) => return Err((Reason::WrongType, "v has the wrong type".into())),
        None => match (metric, record.get("vb"), record.get("vs")) {
            (Metric::SupplementalOxygen, Some(Field::Bool(b)), _) => f64::from(u8::from(*b)),
            (Metric::SupplementalOxygen, Some(_), _) => {
                return Err((Reason::WrongType, "vb has the wrong type".into()));
            }
            (Metric::Consciousness, _, Some(Field::Text(t))) => consciousness_code(t)
                .ok_or_else(|| (Reason::WrongType, "vs is no ACVPU level".into()))?,
            (Metric::Consciousness, _, Some(_)) => {
                return Err((Reason::WrongType, "vs has the wrong type".into()));
            }
            _ => return Err((Reason::MissingValue, format!("{metric} needs a numeric v"))),
        },
    };
    // A string or boolean value is already in the canonical coding.
    let unit = if record.contains_key("v") { unit } else { None };
    let value = metric
        .normalise(raw_value, unit.as_deref())
        .map_err(|e| match e {
            ValueError::UnknownUnit { .. } => (Reason::UnknownUnit, e.to_string()),
            ValueError::NotFinite => (Reason::NotFinite, e.to_string()),
            ValueError::Implausible { .. } => (Reason::Implausible, e.to_string()),
        })?;
    let time = record_time(base, record, received_at, limits)?;
    Ok(Reading {
        metric,
        value,
        time,
    })
}

/// A record's time (base time plus its own), within the limits.
fn record_time(
    base: &Base,
    record: &RawRecord,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<DateTime<Utc>, Refusal> {
    let time = match record.get("t") {
        None => base.time,
        Some(Field::Number(t)) => base.time + t,
        Some(_) => return Err((Reason::WrongType, "t has the wrong type".into())),
    };
    let time = resolve_time(time, received_at)
        .ok_or_else(|| (Reason::NotFinite, "the time is not a usable number".into()))?;
    if time > received_at + limits.max_future {
        return Err((
            Reason::TimeInFuture,
            format!("{} s ahead", (time - received_at).num_seconds()),
        ));
    }
    if time < received_at - limits.max_age {
        return Err((
            Reason::TimeTooOld,
            format!("{} days old", (received_at - time).num_days()),
        ));
    }
    Ok(time)
}

/// Absolute SenML time (seconds since the epoch, or relative to now below 2^28)
/// to an instant with microsecond precision.
fn resolve_time(seconds: f64, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() || seconds.abs() > 1e11 {
        return None;
    }
    let micros = (seconds * 1e6).round() as i64;
    if seconds.abs() < RELATIVE_TIME_LIMIT {
        received_at.checked_add_signed(TimeDelta::microseconds(micros))
    } else {
        DateTime::<Utc>::from_timestamp_micros(micros)
    }
}

#[cfg(test)]
mod tests;
