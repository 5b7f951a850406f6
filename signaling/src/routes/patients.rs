//! Patients and what hangs off them: devices, appointments, notes, consent,
//! care team. Every route reads or writes health data and is audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::consents::{self, Consent};
use bedside_records::devices::{self, Assignment};
use bedside_records::domain::{BirthDate, BoundedText, ConsentRecorder, Email, Mrn, Sex};
use bedside_records::ids::{PatientId, PractitionerId};
use bedside_records::notes::{self, Note};
use bedside_records::patients::{self, Patient, PatientDetails};
use bedside_records::practitioners::Practitioner;
use bedside_records::{appointments, care};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::policy::{Access, Ctx};
use crate::routes::appointments::AppointmentView;

/// Search.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct PatientQuery {
    /// Part of a name or MRN.
    q: Option<String>,
}

/// Patients the caller may see: all for admins, their own for clinicians.
#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", security(("bearer" = [])), params(PatientQuery), responses(
    (status = 200, body = [Patient]), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiQuery(query): ApiQuery<PatientQuery>,
) -> Result<Json<Vec<Patient>>, ApiError> {
    let caller = ctx
        .allow_list(&state, Access::AnyStaff, "patient.list")
        .await?;
    let scope = match caller {
        Caller::Staff {
            role: bedside_records::domain::StaffRole::Admin,
            ..
        } => None,
        Caller::Staff { practitioner, .. } => {
            Some(practitioner.unwrap_or(PractitionerId(uuid::Uuid::nil())))
        }
        Caller::Patient { .. } | Caller::Guest { .. } => return Err(ApiError::forbidden()),
    };
    if query.q.as_deref().is_some_and(|q| q.len() > 200) {
        return Err(ApiError::invalid("q", "q: is too long"));
    }
    if query
        .q
        .as_deref()
        .is_some_and(|q| q.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "q",
            "q: must not contain control characters",
        ));
    }
    let found = patients::search(state.db(), query.q.as_deref(), scope, 200).await?;
    let ids: Vec<PatientId> = found.iter().map(|p| p.id).collect();
    ctx.audit_list(&state, &caller, "patient.list", &ids)
        .await?;
    Ok(Json(found))
}

/// Patient details as sent by clients.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct PatientRequest {
    /// Medical record number.
    mrn: String,
    /// Given name(s).
    given_name: String,
    /// Family name.
    family_name: String,
    /// `YYYY-MM-DD`.
    birth_date: String,
    /// `female`, `male`, `other` or `unknown`.
    sex: String,
    /// E-mail.
    email: Option<String>,
    /// Phone.
    phone: Option<String>,
}

impl PatientRequest {
    fn parse(&self) -> Result<PatientDetails, ApiError> {
        let optional = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(PatientDetails {
            mrn: Mrn::parse(&self.mrn)?,
            given_name: BoundedText::parse("given_name", &self.given_name, 100)?,
            family_name: BoundedText::parse("family_name", &self.family_name, 100)?,
            birth_date: BirthDate::parse(&self.birth_date)?,
            sex: Sex::parse(&self.sex)?,
            email: optional(&self.email)
                .map(|e| Email::parse("email", &e))
                .transpose()?,
            phone: optional(&self.phone)
                .map(|p| BoundedText::parse("phone", &p, 40))
                .transpose()?,
        })
    }
}

/// Registers a patient.
#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", security(("bearer" = [])), request_body = PatientRequest, responses(
    (status = 201, body = Patient), (status = 409, body = crate::error::ErrorBody, description = "`duplicate` MRN"),
    (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<PatientRequest>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    let caller = ctx
        .allow_list(&state, Access::Admin, "patient.create")
        .await?;
    let details = body.parse()?;
    let patient = patients::create(state.db(), &details).await?;
    ctx.audit_list(&state, &caller, "patient.create", &[patient.id])
        .await?;
    tracing::info!(patient = %patient.id, "patient registered");
    Ok((StatusCode::CREATED, Json(patient)))
}

/// One patient.
#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = Patient), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Patient>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "patient.read")
        .await?;
    Ok(Json(patients::get(state.db(), id).await?))
}

/// Replaces a patient's details.
#[utoipa::path(put, path = "/api/v1/patients/{id}", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = PatientRequest, responses(
    (status = 200, body = Patient), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
    ApiJson(body): ApiJson<PatientRequest>,
) -> Result<Json<Patient>, ApiError> {
    ctx.allow(&state, Access::AdminFor(id), "patient.update")
        .await?;
    let details = body.parse()?;
    let patient = patients::update(state.db(), id, &details, None).await?;
    Ok(Json(patient))
}

async fn existing(state: &AppState, id: PatientId) -> Result<(), ApiError> {
    if patients::exists(state.db(), id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("patient"))
    }
}

/// A patient's devices, current and past.
#[utoipa::path(get, path = "/api/v1/patients/{id}/devices", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = [Assignment]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn devices(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "patient.devices.read")
        .await?;
    existing(&state, id).await?;
    Ok(Json(devices::for_patient(state.db(), id).await?))
}

/// A patient's appointments.
#[utoipa::path(get, path = "/api/v1/patients/{id}/appointments", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = [AppointmentView]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn appointments(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<AppointmentView>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "patient.appointments.read")
        .await?;
    existing(&state, id).await?;
    let filter = appointments::AppointmentFilter {
        patient_id: Some(id),
        ..Default::default()
    };
    let list = appointments::list(state.db(), &filter).await?;
    Ok(Json(
        list.into_iter()
            .map(|a| AppointmentView::new(a, state.settings(), None))
            .collect(),
    ))
}

/// A patient's visit notes.
#[utoipa::path(get, path = "/api/v1/patients/{id}/notes", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = [Note]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn notes(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<Note>>, ApiError> {
    ctx.allow(&state, Access::Clinical(id), "patient.notes.read")
        .await?;
    existing(&state, id).await?;
    Ok(Json(notes::for_patient(state.db(), id).await?))
}

/// A patient's consents.
#[utoipa::path(get, path = "/api/v1/patients/{id}/consents", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = [Consent]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn consents(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<Consent>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "patient.consents.read")
        .await?;
    existing(&state, id).await?;
    Ok(Json(consents::for_patient(state.db(), id).await?))
}

/// Consent recorded by staff on the patient's behalf.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ConsentRequest {
    /// The version of the consent text the patient accepted.
    text_version: String,
}

/// Records a patient's telemedicine consent (given to staff in person or on paper).
#[utoipa::path(post, path = "/api/v1/patients/{id}/consents", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = ConsentRequest, responses(
    (status = 201, body = Consent), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn record_consent(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
    ApiJson(body): ApiJson<ConsentRequest>,
) -> Result<(StatusCode, Json<Consent>), ApiError> {
    let caller = ctx
        .allow(&state, Access::Patient(id), "patient.consent.record")
        .await?;
    let version = BoundedText::parse("text_version", &body.text_version, 40)?;
    let recorder = match caller {
        Caller::Staff {
            role: bedside_records::domain::StaffRole::Admin,
            ..
        } => ConsentRecorder::Admin,
        _ => ConsentRecorder::Clinician,
    };
    let consent = consents::record(
        state.db(),
        id,
        version.as_str(),
        recorder,
        caller.user(),
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(consent)))
}

/// The practitioners caring for a patient.
#[utoipa::path(get, path = "/api/v1/patients/{id}/care-team", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = [Practitioner]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn care_team(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<Practitioner>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "patient.care_team.read")
        .await?;
    existing(&state, id).await?;
    Ok(Json(care::care_team(state.db(), id).await?))
}

/// A practitioner to add to a care team.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct CareTeamRequest {
    /// Practitioner id.
    #[schema(value_type = String, format = Uuid)]
    practitioner_id: PractitionerId,
}

/// Puts a patient in a practitioner's care.
#[utoipa::path(post, path = "/api/v1/patients/{id}/care-team", tag = "patients", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = CareTeamRequest, responses(
    (status = 201), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn add_to_care_team(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
    ApiJson(body): ApiJson<CareTeamRequest>,
) -> Result<StatusCode, ApiError> {
    ctx.allow(&state, Access::AdminFor(id), "patient.care_team.add")
        .await?;
    care::add(state.db(), id, body.practitioner_id).await?;
    Ok(StatusCode::CREATED)
}

/// Ends a care relationship.
#[utoipa::path(delete, path = "/api/v1/patients/{id}/care-team/{practitioner_id}", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("practitioner_id" = String, Path, format = Uuid)), responses(
    (status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn remove_from_care_team(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath((id, practitioner)): ApiPath<(PatientId, PractitionerId)>,
) -> Result<StatusCode, ApiError> {
    ctx.allow(&state, Access::AdminFor(id), "patient.care_team.remove")
        .await?;
    care::remove(state.db(), id, practitioner).await?;
    Ok(StatusCode::NO_CONTENT)
}
