//! The demo clinic: an admin, two clinicians, six patients with devices,
//! care relationships, and today's appointments around the current time so
//! every status shows and one video visit is open to join right away.
//! Seeding twice does nothing the second time.

use anyhow::Context as _;
use bedside_records::appointment::AppointmentStatus;
use bedside_records::appointments::{self, NewAppointment, VisitLength};
use bedside_records::domain::{
    AppointmentKind, BirthDate, BoundedText, DeviceKind, Email, Mrn, Serial, Sex, StaffRole,
};
use bedside_records::patients::{self, PatientDetails};
use bedside_records::users::{self, NewUser};
use bedside_records::{care, devices, join_links, practitioners};
use chrono::{Duration, DurationRound, Utc};
use sqlx::PgPool;

use crate::config::Config;

/// The demo's shared password. Demo data only: never use it for real accounts.
pub const DEMO_PASSWORD: &str = "bedside-demo-2026";

/// What the demo seeded, for printing.
pub struct DemoSummary {
    /// Accounts as (role, e-mail).
    pub accounts: Vec<(String, String)>,
    /// A patient join link that is open now.
    pub open_join_link: Option<String>,
    /// Whether the clinic existed already.
    pub already_seeded: bool,
}

const ADMIN: &str = "admin@demo.bedside.test";
const CLINICIANS: [(&str, &str, &str); 2] = [
    (
        "dr.okafor@demo.bedside.test",
        "Dr. Amara Okafor",
        "MD, General Practice",
    ),
    (
        "dr.lindqvist@demo.bedside.test",
        "Dr. Erik Lindqvist",
        "MD, Cardiology",
    ),
];
const PATIENTS: [(&str, &str, &str, &str, Sex); 6] = [
    ("DEMO-0001", "Maria", "Schneider", "1948-03-12", Sex::Female),
    ("DEMO-0002", "Jonas", "Weber", "1957-07-30", Sex::Male),
    ("DEMO-0003", "Aylin", "Demir", "1969-11-02", Sex::Female),
    ("DEMO-0004", "Peter", "Novak", "1952-01-19", Sex::Male),
    ("DEMO-0005", "Grace", "Mensah", "1975-05-08", Sex::Female),
    ("DEMO-0006", "Luca", "Romano", "1939-09-23", Sex::Male),
];

/// Seeds the demo clinic.
///
/// # Errors
/// Database failures.
pub async fn seed(db: &PgPool, config: &Config) -> anyhow::Result<DemoSummary> {
    let mut accounts = vec![("admin".to_owned(), ADMIN.to_owned())];
    accounts.extend(
        CLINICIANS
            .iter()
            .map(|(email, _, _)| ("clinician".to_owned(), (*email).to_owned())),
    );
    if users::credentials_by_email(db, ADMIN).await?.is_some() {
        return Ok(DemoSummary {
            accounts,
            open_join_link: None,
            already_seeded: true,
        });
    }
    let hash = bedside_signaling::auth::password::hash(DEMO_PASSWORD);
    let text = |field, value: &str| BoundedText::parse(field, value, 200);
    users::create(
        db,
        &NewUser {
            email: Email::parse("email", ADMIN)?,
            name: text("name", "Clinic Admin")?,
            role: StaffRole::Admin,
            password_hash: hash.clone(),
            qualification: None,
        },
    )
    .await?;
    let mut practitioner_ids = Vec::new();
    for (email, name, qualification) in CLINICIANS {
        let user = users::create(
            db,
            &NewUser {
                email: Email::parse("email", email)?,
                name: text("name", name)?,
                role: StaffRole::Clinician,
                password_hash: hash.clone(),
                qualification: Some(text("qualification", qualification)?),
            },
        )
        .await?;
        practitioner_ids.push(
            practitioners::for_user(db, user.id)
                .await?
                .context("clinician has a practitioner record")?,
        );
    }

    let kinds = [
        DeviceKind::PulseOximeter,
        DeviceKind::BloodPressureMonitor,
        DeviceKind::Thermometer,
        DeviceKind::Scale,
    ];
    let mut patient_ids = Vec::new();
    let mut simulated = Vec::new();
    for (i, (mrn, given, family, born, sex)) in PATIENTS.into_iter().enumerate() {
        let patient = patients::create(
            db,
            &PatientDetails {
                mrn: Mrn::parse(mrn)?,
                given_name: text("given_name", given)?,
                family_name: text("family_name", family)?,
                birth_date: BirthDate::parse(born)?,
                sex,
                email: None,
                phone: None,
            },
        )
        .await?;
        care::add(db, patient.id, practitioner_ids[i % 2]).await?;
        for (j, kind) in kinds.iter().enumerate().filter(|(j, _)| (i + j) % 2 == 0) {
            let serial = Serial::parse(&format!(
                "DEMO-{}-{:03}",
                kind.as_str().to_uppercase().replace('_', ""),
                i * 10 + j
            ))?;
            let provisioned = devices::provision(db, &serial, *kind, Some(patient.id)).await?;
            simulated.push(crate::simulate::SimDevice {
                device_id: provisioned.device.id.to_string(),
                kind: kind.as_str().to_owned(),
                password: provisioned.mqtt_password,
                patient_index: i,
            });
        }
        patient_ids.push(patient.id);
    }

    crate::simulate::save(&crate::simulate::credentials_file(config), &simulated)?;

    // Appointments around now, 30 minutes apart per clinician, so the day
    // shows every status and one video visit opens within the join window.
    let now = Utc::now()
        .duration_trunc(Duration::minutes(15))
        .unwrap_or_else(|_| Utc::now());
    let slots: [(i64, AppointmentKind, &str, Option<AppointmentStatus>); 6] = [
        (
            -150,
            AppointmentKind::InPerson,
            "Blood pressure review",
            Some(AppointmentStatus::Finished),
        ),
        (
            -90,
            AppointmentKind::Video,
            "Follow-up after discharge",
            Some(AppointmentStatus::NoShow),
        ),
        (
            -30,
            AppointmentKind::Video,
            "Medication check",
            Some(AppointmentStatus::InProgress),
        ),
        (
            15,
            AppointmentKind::Video,
            "Oxygen saturation follow-up",
            None,
        ),
        (60, AppointmentKind::Video, "Heart failure monitoring", None),
        (120, AppointmentKind::InPerson, "Annual check", None),
    ];
    let grace = Duration::minutes(config.visits.no_show_grace_minutes as i64);
    let mut open_join_link = None;
    for (k, (offset, kind, reason, status)) in slots.into_iter().enumerate() {
        for (c, practitioner) in practitioner_ids.iter().enumerate() {
            let patient = patient_ids[(k + c * 3) % patient_ids.len()];
            let appointment = appointments::book(
                db,
                &NewAppointment {
                    patient_id: patient,
                    practitioner_id: *practitioner,
                    starts_at: now + Duration::minutes(offset),
                    length: VisitLength::parse(30)?,
                    kind,
                    reason: text("reason", reason)?,
                },
            )
            .await?;
            let path: &[AppointmentStatus] = match status {
                Some(AppointmentStatus::Finished) => &[
                    AppointmentStatus::Arrived,
                    AppointmentStatus::InProgress,
                    AppointmentStatus::Finished,
                ],
                Some(AppointmentStatus::InProgress) => {
                    &[AppointmentStatus::Arrived, AppointmentStatus::InProgress]
                }
                Some(AppointmentStatus::NoShow) => &[AppointmentStatus::NoShow],
                _ => &[],
            };
            for step in path {
                appointments::transition(db, appointment.id, *step, Utc::now(), grace).await?;
            }
            if kind == AppointmentKind::Video && status.is_none() && open_join_link.is_none() {
                let secret =
                    join_links::LinkSecret::from_signing_key(&crate::secrets::signing_key(config)?);
                let token = join_links::issue(db, appointment.id, &secret).await?;
                open_join_link = Some(format!(
                    "{}/join#t={token}",
                    config.public_base_url.trim_end_matches('/')
                ));
            }
        }
    }
    Ok(DemoSummary {
        accounts,
        open_join_link,
        already_seeded: false,
    })
}
