//! A small clinic seeded straight into the database, with tokens for each
//! kind of caller, for authorization and behaviour tests.
//!
//! Two clinicians, each with one patient in their care and a video
//! appointment with that patient opening now; a device of patient A; a
//! draft and a signed note of clinician A on appointment A.

use std::sync::OnceLock;
use std::time::Duration;

use bedside_records::appointments::{self, Appointment, NewAppointment, VisitLength};
use bedside_records::domain::{
    AppointmentKind, BirthDate, BoundedText, DeviceKind, Email, Mrn, Serial, Sex, StaffRole,
};
use bedside_records::ids::{AppointmentId, DeviceId, NoteId, PatientId, PractitionerId, UserId};
use bedside_records::patients::{self, PatientDetails};
use bedside_records::users::{self, NewUser};
use bedside_records::{auth_state, care, devices, join_links, notes, practitioners};
use bedside_signaling::auth::tokens::{self, TokenKind};
use chrono::Utc;

use crate::TestApp;

/// The password of every account in a [`World`].
pub const PASSWORD: &str = "correct horse battery staple";

fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bedside_signaling::auth::password::hash(PASSWORD))
        .clone()
}

/// A staff member with a live session.
#[derive(Debug, Clone)]
pub struct Staff {
    /// Account.
    pub user: UserId,
    /// Login e-mail.
    pub email: String,
    /// Practitioner record (clinicians).
    pub practitioner: Option<PractitionerId>,
    /// A valid access token.
    pub token: String,
    /// The session's refresh token.
    pub refresh_token: String,
}

/// The seeded clinic.
#[derive(Debug, Clone)]
pub struct World {
    /// An admin.
    pub admin: Staff,
    /// Cares for patient A; clinician of appointment A.
    pub clinician_a: Staff,
    /// Cares for patient B only.
    pub clinician_b: Staff,
    /// Patient A.
    pub patient_a: PatientId,
    /// Patient B.
    pub patient_b: PatientId,
    /// Video visit of A with clinician A, open to join now.
    pub appointment_a: AppointmentId,
    /// Video visit of B with clinician B, open to join now.
    pub appointment_b: AppointmentId,
    /// Join token of appointment A.
    pub join_a: String,
    /// Join token of appointment B.
    pub join_b: String,
    /// Visit-session token of patient A.
    pub visit_a: String,
    /// Visit-session token of patient B.
    pub visit_b: String,
    /// A device assigned to patient A.
    pub device_a: DeviceId,
    /// A draft note by clinician A on appointment A.
    pub draft_note_a: NoteId,
    /// A signed note by clinician A on appointment A.
    pub signed_note_a: NoteId,
    /// An open alert of patient A.
    pub alert_a: uuid::Uuid,
    /// An unused guest link of appointment A.
    pub guest_link_a: uuid::Uuid,
    /// A guest session of appointment A (from another, redeemed link).
    pub guest_a: String,
}

impl World {
    /// Seeds a new world into the app's database (unique e-mails and MRNs,
    /// so several worlds can share one database).
    pub async fn seed(app: &TestApp) -> World {
        let db = &app.db;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let admin = staff(
            app,
            StaffRole::Admin,
            &format!("admin-{tag}@test.example"),
            "Ada Admin",
        )
        .await;
        let clinician_a = staff(
            app,
            StaffRole::Clinician,
            &format!("a-{tag}@test.example"),
            "Dr. A",
        )
        .await;
        let clinician_b = staff(
            app,
            StaffRole::Clinician,
            &format!("b-{tag}@test.example"),
            "Dr. B",
        )
        .await;
        let patient_a = patient(app, &format!("A-{tag}"), "Alice", "Anders").await;
        let patient_b = patient(app, &format!("B-{tag}"), "Bert", "Berg").await;
        care::add(db, patient_a, clinician_a.practitioner.expect("clinician"))
            .await
            .expect("care");
        care::add(db, patient_b, clinician_b.practitioner.expect("clinician"))
            .await
            .expect("care");
        let start = Utc::now() + chrono::Duration::minutes(5);
        let appointment_a = book(
            app,
            patient_a,
            clinician_a.practitioner.expect("clinician"),
            start,
        )
        .await;
        let appointment_b = book(
            app,
            patient_b,
            clinician_b.practitioner.expect("clinician"),
            start,
        )
        .await;
        let join_a = join_links::issue(db, appointment_a.id, app.state.link_secret())
            .await
            .expect("join link");
        let join_b = join_links::issue(db, appointment_b.id, app.state.link_secret())
            .await
            .expect("join link");
        let (guest_link_a, _) = bedside_records::guest_links::issue(
            db,
            appointment_a.id,
            "Interpreter",
            clinician_a.user,
        )
        .await
        .expect("guest link");
        let guest_a = guest_token(app, &appointment_a, clinician_a.user).await;
        let visit_a = visit_token(app, &join_a, &appointment_a).await;
        let visit_b = visit_token(app, &join_b, &appointment_b).await;
        let device_a = devices::provision(
            db,
            &Serial::parse(&format!("OX-{tag}")).expect("serial"),
            DeviceKind::PulseOximeter,
            Some(patient_a),
        )
        .await
        .expect("device")
        .device
        .id;
        let text =
            BoundedText::parse("text", "Stable. Continue current medication.", 1000).expect("text");
        let draft_note_a = notes::create(db, appointment_a.id, clinician_a.user, &text)
            .await
            .expect("note")
            .id;
        let signed = notes::create(db, appointment_a.id, clinician_a.user, &text)
            .await
            .expect("note")
            .id;
        let signed_note_a = notes::sign(db, signed).await.expect("sign").id;
        let mut tx = db.begin().await.expect("tx");
        let alert_a = bedside_vitals_store::alerts::open(
            &mut tx,
            patient_a.0,
            "threshold:glucose",
            "high",
            &serde_json::json!({"value": 300}),
            Utc::now(),
        )
        .await
        .expect("alert")
        .event
        .alert_id;
        tx.commit().await.expect("commit");
        World {
            admin,
            clinician_a,
            clinician_b,
            patient_a,
            patient_b,
            appointment_a: appointment_a.id,
            appointment_b: appointment_b.id,
            join_a,
            join_b,
            visit_a,
            visit_b,
            device_a,
            draft_note_a,
            signed_note_a,
            alert_a,
            guest_link_a: guest_link_a.id,
            guest_a,
        }
    }
}

/// Creates a staff account with a live session and an access token.
pub async fn staff(app: &TestApp, role: StaffRole, email: &str, name: &str) -> Staff {
    let db = &app.db;
    let user = users::create(
        db,
        &NewUser {
            email: Email::parse("email", email).expect("email"),
            name: BoundedText::parse("name", name, 200).expect("name"),
            role,
            password_hash: password_hash(),
            qualification: None,
        },
    )
    .await
    .expect("create user");
    let practitioner = practitioners::for_user(db, user.id)
        .await
        .expect("practitioner lookup");
    let (refresh_token, hash) = tokens::new_refresh_token();
    let family =
        auth_state::start_family(db, user.id, &hash, Utc::now() + chrono::Duration::hours(1))
            .await
            .expect("session");
    let keys = app.state.keys();
    let mut claims = keys.claims(TokenKind::Access, user.id.0, Duration::from_secs(600));
    claims.sid = Some(family);
    claims.role = Some(role);
    claims.prc = practitioner;
    Staff {
        user: user.id,
        email: email.to_owned(),
        practitioner,
        token: keys.sign(&claims),
        refresh_token,
    }
}

async fn patient(app: &TestApp, mrn: &str, given: &str, family: &str) -> PatientId {
    patients::create(
        &app.db,
        &PatientDetails {
            mrn: Mrn::parse(mrn).expect("mrn"),
            given_name: BoundedText::parse("given_name", given, 100).expect("name"),
            family_name: BoundedText::parse("family_name", family, 100).expect("name"),
            birth_date: BirthDate::parse("1950-06-15").expect("date"),
            sex: Sex::Female,
            email: None,
            phone: None,
        },
    )
    .await
    .expect("patient")
    .id
}

async fn book(
    app: &TestApp,
    patient: PatientId,
    practitioner: PractitionerId,
    start: chrono::DateTime<Utc>,
) -> Appointment {
    appointments::book(
        &app.db,
        &NewAppointment {
            patient_id: patient,
            practitioner_id: practitioner,
            starts_at: start,
            length: VisitLength::parse(30).expect("length"),
            kind: AppointmentKind::Video,
            reason: BoundedText::parse("reason", "Follow-up", 500).expect("reason"),
        },
    )
    .await
    .expect("appointment")
}

/// A guest session of `appointment`, from a guest link issued and redeemed here.
async fn guest_token(app: &TestApp, appointment: &Appointment, by: UserId) -> String {
    let (_, token) = bedside_records::guest_links::issue(&app.db, appointment.id, "Family", by)
        .await
        .expect("guest link");
    let bedside_records::guest_links::Redemption::Redeemed(link) =
        bedside_records::guest_links::redeem(&app.db, &token, "Guest A")
            .await
            .expect("redeem")
    else {
        panic!("a fresh guest link redeems");
    };
    let keys = app.state.keys();
    let mut claims = keys.claims(TokenKind::Guest, link.id, Duration::from_secs(600));
    claims.apt = Some(appointment.id);
    claims.sid = Some(link.id);
    keys.sign(&claims)
}

async fn visit_token(app: &TestApp, join: &str, appointment: &Appointment) -> String {
    let (link, _) = join_links::resolve(&app.db, join)
        .await
        .expect("resolve")
        .expect("live link");
    let keys = app.state.keys();
    let mut claims = keys.claims(
        TokenKind::Visit,
        appointment.patient_id.0,
        Duration::from_secs(600),
    );
    claims.apt = Some(appointment.id);
    claims.sid = Some(link);
    keys.sign(&claims)
}
