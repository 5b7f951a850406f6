//! The decoder against good packs and a malformed corpus.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn json(payload: &str) -> Result<Decoded, PackError> {
    decode(payload.as_bytes(), Format::Json, now(), &Limits::default())
}

fn cbor(value: &ciborium::Value) -> Result<Decoded, PackError> {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(value, &mut bytes).unwrap();
    decode(&bytes, Format::Cbor, now(), &Limits::default())
}

fn reasons(d: &Decoded) -> Vec<(usize, Reason)> {
    d.rejections.iter().map(|r| (r.index, r.reason)).collect()
}

#[test]
fn a_blood_pressure_pack_resolves_base_fields() {
    let t = now().timestamp();
    let d = json(&format!(
        r#"[{{"bn":"urn:dev:cuff-7:","bt":{t},"bu":"mm[Hg]","bver":10,"n":"systolic_bp","v":128}},
            {{"n":"diastolic_bp","v":84,"t":1}},
            {{"n":"heart_rate","u":"beat/min","v":71,"t":1}}]"#
    ))
    .unwrap();
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(d.readings.len(), 3);
    assert_eq!(
        (
            d.readings[0].metric,
            d.readings[0].value,
            d.readings[0].time
        ),
        (Metric::SystolicBp, 128.0, now())
    );
    assert_eq!(
        (d.readings[1].metric, d.readings[1].value),
        (Metric::DiastolicBp, 84.0)
    );
    assert_eq!(d.readings[1].time, now() + Duration::seconds(1));
    assert_eq!(d.readings[2].metric, Metric::HeartRate);
}

#[test]
fn loinc_names_units_and_relative_times() {
    let d = json(r#"[{"n":"8310-5","u":"[degF]","v":98.6},{"n":"59408-5","v":97,"t":-30},{"n":"29463-7","u":"[lb_av]","v":154}]"#).unwrap();
    assert!(d.rejections.is_empty());
    assert!((d.readings[0].value - 37.0).abs() < 1e-9);
    assert_eq!(d.readings[0].time, now(), "no time: the receive time");
    assert_eq!(
        d.readings[1].time,
        now() - Duration::seconds(30),
        "small times are relative"
    );
    assert!((d.readings[2].value - 69.853_224_98).abs() < 1e-6);
}

#[test]
fn base_value_adds_and_strings_and_booleans_code_acvpu_and_oxygen() {
    let d = json(r#"[{"bn":"","bv":100,"n":"heart_rate","v":-28},{"n":"consciousness","vs":"V"},{"n":"supplemental_oxygen","vb":true}]"#).unwrap();
    assert!(d.rejections.is_empty(), "{:?}", d.rejections);
    assert_eq!(d.readings[0].value, 72.0);
    assert_eq!(
        (d.readings[1].metric, d.readings[1].value),
        (Metric::Consciousness, 2.0)
    );
    assert_eq!(
        (d.readings[2].metric, d.readings[2].value),
        (Metric::SupplementalOxygen, 1.0)
    );
}

#[test]
fn cbor_packs_decode_like_json() {
    use ciborium::Value as V;
    let t = now().timestamp();
    let pack = V::Array(vec![
        V::Map(vec![
            (V::Integer((-2).into()), V::Text("dev:".into())),
            (V::Integer((-3).into()), V::Integer(t.into())),
            (V::Integer(0.into()), V::Text("spo2".into())),
            (V::Integer(2.into()), V::Integer(96.into())),
        ]),
        V::Map(vec![
            (V::Integer(0.into()), V::Text("heart_rate".into())),
            (V::Integer(2.into()), V::Float(64.5)),
        ]),
        V::Map(vec![
            (V::Integer(0.into()), V::Text("heart_rate".into())),
            (V::Integer(2.into()), V::Float(f64::NAN)),
        ]),
        V::Map(vec![
            (V::Integer(0.into()), V::Text("heart_rate".into())),
            (V::Integer(2.into()), V::Float(f64::INFINITY)),
        ]),
    ]);
    let d = cbor(&pack).unwrap();
    assert_eq!(d.readings.len(), 2);
    assert_eq!(
        (
            d.readings[0].metric,
            d.readings[0].value,
            d.readings[0].time
        ),
        (Metric::Spo2, 96.0, now())
    );
    assert_eq!(
        reasons(&d),
        vec![(2, Reason::NotFinite), (3, Reason::NotFinite)]
    );
}

#[test]
fn format_detection() {
    assert_eq!(
        Format::detect("bedside/v1/devices/x/vitals/cbor", b"["),
        Some(Format::Cbor)
    );
    assert_eq!(
        Format::detect("bedside/v1/devices/x/vitals", b"  [{}]"),
        Some(Format::Json)
    );
    assert_eq!(
        Format::detect("bedside/v1/devices/x/vitals", &[0x81, 0xa0]),
        Some(Format::Cbor)
    );
    assert_eq!(
        Format::detect("bedside/v1/devices/x/vitals", b"{\"n\":1}"),
        None
    );
    assert_eq!(Format::detect("bedside/v1/devices/x/vitals", b""), None);
}

#[test]
fn whole_packs_that_cannot_be_used_are_refused_with_a_reason() {
    let corpus: &[(&str, Reason)] = &[
        ("", Reason::MalformedPayload),
        ("[", Reason::MalformedPayload),
        ("not json", Reason::MalformedPayload),
        (r#"{"n":"heart_rate","v":70}"#, Reason::MalformedPayload),
        (r#"[{"n":"heart_rate","v":NaN}]"#, Reason::MalformedPayload),
        (
            r#"[{"n":"heart_rate","v":Infinity}]"#,
            Reason::MalformedPayload,
        ),
        ("\"just a string\"", Reason::MalformedPayload),
        (
            r#"[{"bver":11,"n":"heart_rate","v":70}]"#,
            Reason::UnsupportedVersion,
        ),
    ];
    for (payload, reason) in corpus {
        let err = json(payload).unwrap_err();
        assert_eq!(err.reason, *reason, "{payload:?}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(json(&deep).unwrap_err().reason, Reason::MalformedPayload);
    let many = format!("[{}]", vec![r#"{"n":"heart_rate","v":70}"#; 513].join(","));
    assert_eq!(json(&many).unwrap_err().reason, Reason::TooManyRecords);
    let huge = format!(
        r#"[{{"n":"heart_rate","v":70,"x":"{}"}}]"#,
        "a".repeat(70_000)
    );
    assert_eq!(json(&huge).unwrap_err().reason, Reason::PayloadTooLarge);
    for bytes in [&[0x9f][..], &[0xff, 0x00], &[0x81, 0xa1, 0x02]] {
        let err = decode(bytes, Format::Cbor, now(), &Limits::default()).unwrap_err();
        assert_eq!(err.reason, Reason::MalformedPayload, "{bytes:?}");
    }
    let mut deep_cbor = vec![0x81u8; 1000];
    deep_cbor.push(0x80);
    assert_eq!(
        decode(&deep_cbor, Format::Cbor, now(), &Limits::default())
            .unwrap_err()
            .reason,
        Reason::MalformedPayload
    );
}

#[test]
fn bad_records_are_refused_one_by_one_and_good_neighbours_survive() {
    let t = now().timestamp();
    let d = json(&format!(
        r#"[
        {{"n":"heart_rate","v":70}},
        {{"n":"heart_rate","v":"seventy"}},
        {{"v":70}},
        {{"n":"pulse_pressure","v":40}},
        {{"n":"heart_rate","u":"furlong/fortnight","v":70}},
        {{"n":"spo2","v":140}},
        {{"n":"heart_rate","v":70,"t":{future}}},
        {{"n":"heart_rate","v":70,"t":{ancient}}},
        {{"n":"heart_rate"}},
        {{"n":"heart_rate","v":70,"crit_":1}},
        42,
        {{"n":7,"v":70}},
        {{"n":"consciousness","vs":"sleepy"}},
        {{"n":"heart_rate","v":70,"t":"now"}},
        {{"bn":5,"n":"heart_rate","v":70}},
        {{"n":"spo2","v":98}}
    ]"#,
        future = t + 3600,
        ancient = t - 400 * 86_400,
    ))
    .unwrap();
    assert_eq!(d.readings.len(), 2, "{:?}", d.rejections);
    assert_eq!(d.readings[1].metric, Metric::Spo2);
    assert_eq!(
        reasons(&d),
        vec![
            (1, Reason::WrongType),
            (2, Reason::MissingName),
            (3, Reason::UnknownMetric),
            (4, Reason::UnknownUnit),
            (5, Reason::Implausible),
            (6, Reason::TimeInFuture),
            (7, Reason::TimeTooOld),
            (8, Reason::MissingValue),
            (9, Reason::MustUnderstand),
            (10, Reason::MalformedRecord),
            (11, Reason::WrongType),
            (12, Reason::WrongType),
            (13, Reason::WrongType),
            (14, Reason::WrongType),
        ]
    );
    assert!(d.rejections.iter().all(|r| r.detail.len() < 200));
}

#[test]
fn a_base_only_record_carries_no_reading() {
    let d = json(r#"[{"bn":"urn:dev:x:","bu":"Cel"},{"n":"body_temperature","v":37.2}]"#).unwrap();
    assert_eq!((d.readings.len(), d.rejections.len()), (1, 0));
}

proptest::proptest! {
    // Arbitrary bytes never panic the decoder, in either format.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode(&bytes, Format::Json, now(), &Limits::default());
        let _ = decode(&bytes, Format::Cbor, now(), &Limits::default());
    }

    // Every record of a pack is accounted for: a reading, a rejection, or a base-only record.
    #[test]
    fn every_record_is_accounted_for(values in proptest::collection::vec(-1000.0f64..1000.0, 1..40)) {
        let pack = values.iter().map(|v| format!(r#"{{"n":"heart_rate","v":{v}}}"#)).collect::<Vec<_>>().join(",");
        let d = json(&format!("[{pack}]")).unwrap();
        proptest::prop_assert_eq!(d.readings.len() + d.rejections.len(), values.len());
        for r in &d.readings {
            proptest::prop_assert!((20.0..=300.0).contains(&r.value));
        }
    }
}

#[test]
fn a_battery_level_is_the_devices_not_a_reading_and_bad_ones_are_refused() {
    let t = now().timestamp();
    let d = json(&format!(
        r#"[{{"bn":"urn:dev:ox1:","bt":{t}}},
            {{"n":"spo2","v":97}},
            {{"n":"battery","u":"%EL","v":81,"t":-60}},
            {{"n":"battery","u":"/","v":0.8}}]"#
    ))
    .unwrap();
    assert_eq!(d.readings.len(), 1, "the battery is no vital sign");
    let battery = d.battery.expect("a battery level");
    assert!(
        (battery.percent - 80.0).abs() < 1e-9,
        "the newest, as a percentage"
    );
    assert_eq!(battery.time.timestamp(), t);
    assert!(d.rejections.is_empty());

    let bad = json(&format!(
        r#"[{{"bt":{t},"n":"battery","u":"%EL","v":140}},
            {{"n":"battery","u":"V","v":3.7}},
            {{"n":"battery","vs":"full"}},
            {{"n":"battery_level","u":"%","v":55}}]"#
    ))
    .unwrap();
    assert_eq!(
        reasons(&bad),
        vec![
            (0, Reason::Implausible),
            (1, Reason::UnknownUnit),
            (2, Reason::MissingValue)
        ]
    );
    assert_eq!(
        bad.battery.map(|b| b.percent),
        Some(55.0),
        "the good one survives"
    );
}
