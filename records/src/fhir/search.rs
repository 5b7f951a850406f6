//! FHIR search parameter values, parsed into typed filters.
//!
//! Only what Bedside's searches use: dates with the comparison prefixes
//! (`eq`, `ge`, `gt`, `le`, `lt`, and `sa`/`eb`, which for a point in time
//! mean `gt`/`lt`), tokens (`system|code`), references (`Patient/{id}` or
//! a bare id), `_count`, `_sort` and `_total`. A value that cannot be
//! understood is an error naming the parameter, never a silently broader
//! search: a clinician's system that asked for one week must not get a year.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A search parameter that cannot be used, and why (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search parameter {param}: {reason}")]
pub struct SearchError {
    /// The parameter as sent.
    pub param: String,
    /// Why.
    pub reason: String,
}

impl SearchError {
    /// A new error.
    pub fn new(param: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            reason: reason.into(),
        }
    }
}

/// A search's parameters as sent: decoded name/value pairs, in order,
/// names possibly repeated (`date=ge…&date=lt…`).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Parameters every search accepts besides its own: formatting and paging.
const COMMON: &[&str] = &[
    "_format", "_pretty", "_count", "_total", "_cursor", "_offset",
];

impl Query {
    /// From decoded pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// Every value of a parameter (modifiers are part of the name: `name:exact`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The one value of a parameter that may appear once.
    ///
    /// # Errors
    /// When it appears more than once.
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, SearchError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(SearchError::new(name, "may be given only once"));
        }
        Ok(first)
    }

    /// Parameter names the search does not know (besides the common ones).
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        let mut unknown: Vec<&str> = self
            .pairs
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !known.contains(n) && !COMMON.contains(n))
            .collect();
        unknown.dedup();
        unknown
    }

    /// The pairs, for building paging links.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// A half-open time range `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Narrows the range by one `date` value (all given values must hold).
    ///
    /// # Errors
    /// An unknown prefix or a value that is not a FHIR date or dateTime.
    pub fn narrow(&mut self, param: &str, raw: &str, tz: Tz) -> Result<(), SearchError> {
        let (prefix, value) = split_prefix(raw);
        let (start, end) = parse_date_range(value, tz)
            .ok_or_else(|| SearchError::new(param, format!("{value:?} is not a FHIR date or dateTime (e.g. 2026-03-01 or 2026-03-01T08:00:00Z)")))?;
        let (from, to) = match prefix {
            "eq" => (Some(start), Some(end)),
            "ge" => (Some(start), None),
            "gt" | "sa" => (Some(end), None),
            "le" => (None, Some(end)),
            "lt" | "eb" => (None, Some(start)),
            other => {
                return Err(SearchError::new(
                    param,
                    format!("prefix {other:?} is not supported (use eq, ge, gt, le, lt, sa or eb)"),
                ));
            }
        };
        if let Some(from) = from {
            self.from = Some(self.from.map_or(from, |f| f.max(from)));
        }
        if let Some(to) = to {
            self.to = Some(self.to.map_or(to, |t| t.min(to)));
        }
        Ok(())
    }

    /// Whether nothing can match.
    pub fn is_empty(&self) -> bool {
        matches!((self.from, self.to), (Some(f), Some(t)) if f >= t)
    }
}

/// Splits a two-letter comparison prefix off a value (`eq` when none).
fn split_prefix(raw: &str) -> (&str, &str) {
    let bytes = raw.as_bytes();
    if bytes.len() > 2 && bytes[0].is_ascii_lowercase() && bytes[1].is_ascii_lowercase() {
        (&raw[..2], &raw[2..])
    } else {
        ("eq", raw)
    }
}

/// The instants a FHIR date or dateTime value covers, by its precision:
/// `2026` is that year, `2026-03-01` that day, `2026-03-01T08:00Z` that
/// minute. Values without an offset are in the clinic's time zone.
pub fn parse_date_range(value: &str, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let local = |naive: NaiveDateTime| -> Option<DateTime<Utc>> {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            // The hour clocks skip or repeat: the earliest reading of it.
            LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
            LocalResult::None => Some(tz.from_utc_datetime(&naive).with_timezone(&Utc)),
        }
    };
    let day = |d: NaiveDate| d.and_time(NaiveTime::MIN);
    match value.len() {
        4 => {
            let year: i32 = value.parse().ok()?;
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            let end = NaiveDate::from_ymd_opt(year + 1, 1, 1)?;
            Some((local(day(start))?, local(day(end))?))
        }
        7 => {
            let start = NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d").ok()?;
            let end = start.checked_add_months(chrono::Months::new(1))?;
            Some((local(day(start))?, local(day(end))?))
        }
        10 => {
            let start = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
            Some((local(day(start))?, local(day(start.succ_opt()?))?))
        }
        _ => parse_date_time(value, tz, local),
    }
}

fn parse_date_time(
    value: &str,
    _tz: Tz,
    local: impl Fn(NaiveDateTime) -> Option<DateTime<Utc>>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (date_time, offset) = match value.find(['Z', '+']).or_else(|| {
        // A '-' after the time part starts an offset.
        value.get(11..).and_then(|t| t.find('-')).map(|i| i + 11)
    }) {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    let (naive, precision) =
        if let Ok(t) = NaiveDateTime::parse_from_str(date_time, "%Y-%m-%dT%H:%M") {
            (t, Duration::minutes(1))
        } else if let Ok(t) = NaiveDateTime::parse_from_str(date_time, "%Y-%m-%dT%H:%M:%S") {
            (t, Duration::seconds(1))
        } else {
            let t = NaiveDateTime::parse_from_str(date_time, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
            let digits = date_time.rsplit('.').next()?.len() as u32;
            (
                t,
                Duration::nanoseconds(10_i64.pow(9_u32.saturating_sub(digits.min(9)))),
            )
        };
    let start = match offset {
        None => local(naive)?,
        Some("Z") => Utc.from_utc_datetime(&naive),
        Some(offset) => {
            let fixed = DateTime::parse_from_str(
                &format!("2000-01-01T00:00:00{offset}"),
                "%Y-%m-%dT%H:%M:%S%:z",
            )
            .ok()?;
            fixed
                .offset()
                .from_local_datetime(&naive)
                .single()?
                .with_timezone(&Utc)
        }
    };
    Some((start, start + precision))
}

/// A token value: `code`, `system|code` or `|code` (explicitly no system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `None`: any system; `Some(None)`: no system; `Some(Some(s))`: system `s`.
    pub system: Option<Option<String>>,
    /// The code or identifier value; empty for `system|` (any code of the
    /// system).
    pub code: String,
}

impl Token {
    /// Parses one token (no commas).
    ///
    /// # Errors
    /// An empty code.
    pub fn parse(param: &str, raw: &str) -> Result<Token, SearchError> {
        let (system, code) = match raw.split_once('|') {
            Some(("", code)) => (Some(None), code),
            Some((system, code)) => (Some(Some(system.to_owned())), code),
            None => (None, raw),
        };
        // `system|` (any code of that system) is the one way to have no code.
        if code.is_empty() && !matches!(system, Some(Some(_))) {
            return Err(SearchError::new(
                param,
                "needs a code (system|code, |code or code)",
            ));
        }
        Ok(Token {
            system,
            code: code.to_owned(),
        })
    }

    /// Whether the token matches every code of its system (`system|`).
    pub fn any_code(&self) -> bool {
        self.code.is_empty()
    }

    /// Whether the token allows `system`.
    pub fn allows_system(&self, system: &str) -> bool {
        match &self.system {
            None => true,
            Some(None) => false,
            Some(Some(s)) => s == system,
        }
    }
}

/// Tokens of a parameter: every value, each a comma-separated list (OR).
///
/// # Errors
/// As [`Token::parse`].
pub fn tokens(query: &Query, param: &str) -> Result<Vec<Token>, SearchError> {
    let mut out = Vec::new();
    for value in query.all(param) {
        for one in value.split(',') {
            out.push(Token::parse(param, one)?);
        }
    }
    Ok(out)
}

/// The id a reference parameter names: `{id}`, `{Type}/{id}` or an
/// absolute URL ending in `{Type}/{id}`, where the type must be `resource_type`.
///
/// # Errors
/// Another resource type, or an id that is not one of Bedside's.
pub fn reference_id(
    param: &str,
    raw: &str,
    resource_type: &str,
) -> Result<uuid::Uuid, SearchError> {
    let mut parts = raw.rsplitn(3, '/');
    let id = parts.next().unwrap_or_default();
    if let Some(kind) = parts.next()
        && kind != resource_type
    {
        return Err(SearchError::new(
            param,
            format!("must refer to a {resource_type}"),
        ));
    }
    uuid::Uuid::try_parse(id)
        .map_err(|_| SearchError::new(param, format!("{id:?} is not a {resource_type} id")))
}

/// Page size: `_count`, default 50, at most 1000 (larger asks get 1000).
/// `_count=0` asks for the total alone.
///
/// # Errors
/// Not a whole number.
pub fn count(query: &Query) -> Result<i64, SearchError> {
    match query.single("_count")? {
        None => Ok(50),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n.min(1000))
            .ok_or_else(|| SearchError::new("_count", "must be a whole number from 0")),
    }
}

/// Whether to sort newest first: `_sort=date` (oldest first) or `-date`;
/// `default_newest_first` when absent.
///
/// # Errors
/// Any other sort key.
pub fn newest_first(query: &Query, default_newest_first: bool) -> Result<bool, SearchError> {
    match query.single("_sort")? {
        None => Ok(default_newest_first),
        Some("date") => Ok(false),
        Some("-date") => Ok(true),
        Some(other) => Err(SearchError::new(
            "_sort",
            format!("{other:?} is not supported (use date or -date)"),
        )),
    }
}

/// Whether to count the total: `_total=accurate` (default) or `none`.
///
/// # Errors
/// Any other value (`estimate` is not offered).
pub fn wants_total(query: &Query) -> Result<bool, SearchError> {
    match query.single("_total")? {
        None | Some("accurate") => Ok(true),
        Some("none") => Ok(false),
        Some(other) => Err(SearchError::new(
            "_total",
            format!("{other:?} is not supported (use accurate or none)"),
        )),
    }
}

/// The offset of an offset-paged search (`_offset`, default 0).
///
/// # Errors
/// Not a whole number.
pub fn offset(query: &Query) -> Result<i64, SearchError> {
    match query.single("_offset")? {
        None => Ok(0),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=1_000_000).contains(n))
            .ok_or_else(|| SearchError::new("_offset", "must be a whole number from 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TZ: Tz = chrono_tz::Europe::Berlin;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn range(values: &[&str]) -> Result<TimeRange, SearchError> {
        let mut r = TimeRange::default();
        for v in values {
            r.narrow("date", v, TZ)?;
        }
        Ok(r)
    }

    #[test]
    fn a_day_is_the_clinics_day() {
        let r = range(&["2026-03-01"]).unwrap();
        assert_eq!(r.from, Some(utc("2026-02-28T23:00:00Z")));
        assert_eq!(r.to, Some(utc("2026-03-01T23:00:00Z")));
    }

    #[test]
    fn prefixes_bound_the_range_by_the_values_precision() {
        let r = range(&["ge2026-03-01T10:00:00Z", "lt2026-03-02T10:00:00Z"]).unwrap();
        assert_eq!(r.from, Some(utc("2026-03-01T10:00:00Z")));
        assert_eq!(r.to, Some(utc("2026-03-02T10:00:00Z")));
        let r = range(&["gt2026"]).unwrap();
        assert_eq!(r.from, Some(utc("2026-12-31T23:00:00Z")));
        let r = range(&["le2026-03"]).unwrap();
        assert_eq!(r.to, Some(utc("2026-03-31T22:00:00Z")));
        let r = range(&["eq2026-03-01T10:00+02:00"]).unwrap();
        assert_eq!(r.from, Some(utc("2026-03-01T08:00:00Z")));
        assert_eq!(r.to, Some(utc("2026-03-01T08:01:00Z")));
        let r = range(&["2026-03-01T10:00:00.5Z"]).unwrap();
        assert_eq!(r.to, Some(utc("2026-03-01T10:00:00.6Z")));
        assert!(range(&["ge2026-03-02", "lt2026-03-01"]).unwrap().is_empty());
    }

    #[test]
    fn malformed_dates_and_unknown_prefixes_are_errors() {
        for bad in [
            "",
            "yesterday",
            "ne2026-01-01",
            "ap2026-01-01",
            "2026-13-01",
            "2026-02-30",
            "2026-03-01T25:00Z",
            "2026-03-01T10:00:00+99:00",
            "ge",
            "20260301",
            "2026-3-1",
        ] {
            assert!(range(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_and_references() {
        assert_eq!(
            Token::parse("code", "http://loinc.org|8867-4").unwrap(),
            Token {
                system: Some(Some("http://loinc.org".into())),
                code: "8867-4".into()
            }
        );
        assert_eq!(Token::parse("code", "|x").unwrap().system, Some(None));
        assert!(
            Token::parse("code", "http://loinc.org|")
                .unwrap()
                .any_code()
        );
        for bad in ["", "|"] {
            assert!(Token::parse("code", bad).is_err(), "{bad:?}");
        }
        let id = uuid::Uuid::new_v4();
        for raw in [
            id.to_string(),
            format!("Patient/{id}"),
            format!("https://clinic.example/fhir/Patient/{id}"),
        ] {
            assert_eq!(reference_id("patient", &raw, "Patient").unwrap(), id);
        }
        assert!(reference_id("patient", &format!("Practitioner/{id}"), "Patient").is_err());
        assert!(reference_id("patient", "Patient/123", "Patient").is_err());
    }

    #[test]
    fn paging_parameters() {
        let q = |s: &str| {
            Query::new(vec![(
                s.split('=').next().unwrap().into(),
                s.split('=').nth(1).unwrap().into(),
            )])
        };
        assert_eq!(count(&q("_count=5")).unwrap(), 5);
        assert_eq!(count(&q("_count=100000")).unwrap(), 1000);
        assert!(count(&q("_count=-1")).is_err());
        assert!(count(&q("_count=ten")).is_err());
        assert!(newest_first(&q("_sort=-date"), false).unwrap());
        assert!(!newest_first(&q("_sort=date"), true).unwrap());
        assert!(newest_first(&q("_sort=value"), true).is_err());
        assert!(!wants_total(&q("_total=none")).unwrap());
        assert!(wants_total(&q("_total=estimate")).is_err());
        let twice = Query::new(vec![
            ("_count".into(), "1".into()),
            ("_count".into(), "2".into()),
        ]);
        assert!(count(&twice).is_err());
    }
}
