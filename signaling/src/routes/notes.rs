//! Visit notes: drafts, signing, amendments.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::ids::{AppointmentId, NoteId};
use bedside_records::notes::{self, Note};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::{Access, Ctx};

/// Note text.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct NoteRequest {
    /// The text (up to 100,000 characters).
    text: String,
}

/// A visit's notes.
#[utoipa::path(get, path = "/api/v1/appointments/{id}/notes", tag = "notes", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = [Note]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_for_appointment(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
) -> Result<Json<Vec<Note>>, ApiError> {
    // Notes are part of the patient's record: the patient-record rule, not
    // the appointment rule (a visit session sees its visit, not the notes).
    let appointment = load_appointment(&state, &ctx, id, "note.list").await?;
    ctx.allow(
        &state,
        Access::Clinical(appointment.patient_id),
        "note.list",
    )
    .await?;
    Ok(Json(
        notes::for_appointment(state.db(), appointment.id).await?,
    ))
}

/// Loads an appointment without deciding yet; an unknown id is a 404 only
/// for staff.
async fn load_appointment(
    state: &AppState,
    ctx: &Ctx,
    id: AppointmentId,
    action: &str,
) -> Result<bedside_records::appointments::Appointment, ApiError> {
    match bedside_records::appointments::get(state.db(), id).await {
        Ok(a) => Ok(a),
        Err(bedside_records::RecordsError::NotFound(_)) => {
            ctx.allow_list(state, Access::AnyStaff, action).await?;
            Err(ApiError::not_found("appointment"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts a draft note on a visit.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/notes", tag = "notes", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = NoteRequest, responses(
    (status = 201, body = Note), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
    ApiJson(body): ApiJson<NoteRequest>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    let appointment = load_appointment(&state, &ctx, id, "note.create").await?;
    let caller = ctx
        .allow(
            &state,
            Access::Clinical(appointment.patient_id),
            "note.create",
        )
        .await?;
    let text = notes::parse_text(&body.text)?;
    let author = caller.user().ok_or_else(ApiError::forbidden)?;
    let note = notes::create(state.db(), id, author, &text).await?;
    Ok((StatusCode::CREATED, Json(note)))
}

/// Loads a note behind the rule "clinical write on its patient". An unknown
/// id is a 404 only for staff, so ids cannot be probed anonymously.
async fn writable_note(
    state: &AppState,
    ctx: &Ctx,
    id: NoteId,
    action: &str,
) -> Result<(crate::auth::Caller, Note), ApiError> {
    let note = match notes::get(state.db(), id).await {
        Ok(n) => n,
        Err(bedside_records::RecordsError::NotFound(_)) => {
            ctx.allow_list(state, Access::AnyStaff, action).await?;
            return Err(ApiError::not_found("note"));
        }
        Err(e) => return Err(e.into()),
    };
    let caller = ctx
        .allow(state, Access::Clinical(note.patient_id), action)
        .await?;
    Ok((caller, note))
}

/// Loads a note for a change by its author: the rule is "clinical write on
/// the patient", and only the author may touch their own draft.
async fn own_note(state: &AppState, ctx: &Ctx, id: NoteId, action: &str) -> Result<Note, ApiError> {
    let (caller, note) = writable_note(state, ctx, id, action).await?;
    if caller.user() != Some(note.author_id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_author",
            "only the author may change or sign a draft",
        ));
    }
    Ok(note)
}

/// Replaces a draft's text (author only; signed notes are immutable).
#[utoipa::path(put, path = "/api/v1/notes/{id}", tag = "notes", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = NoteRequest, responses(
    (status = 200, body = Note), (status = 409, body = crate::error::ErrorBody, description = "`note_signed`")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<NoteId>,
    ApiJson(body): ApiJson<NoteRequest>,
) -> Result<Json<Note>, ApiError> {
    let note = own_note(&state, &ctx, id, "note.update").await?;
    let text = notes::parse_text(&body.text)?;
    Ok(Json(notes::update_draft(state.db(), note.id, &text).await?))
}

/// Signs a draft; it can never change afterwards.
#[utoipa::path(post, path = "/api/v1/notes/{id}/sign", tag = "notes", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = Note), (status = 409, body = crate::error::ErrorBody, description = "`note_signed`")))]
pub(crate) async fn sign(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<NoteId>,
) -> Result<Json<Note>, ApiError> {
    let note = own_note(&state, &ctx, id, "note.sign").await?;
    Ok(Json(notes::sign(state.db(), note.id).await?))
}

/// Adds an amendment to a signed note; the original is kept unchanged.
#[utoipa::path(post, path = "/api/v1/notes/{id}/amendments", tag = "notes", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = NoteRequest, responses(
    (status = 201, body = Note), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn amend(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<NoteId>,
    ApiJson(body): ApiJson<NoteRequest>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    let (caller, _original) = writable_note(&state, &ctx, id, "note.amend").await?;
    let text = notes::parse_text(&body.text)?;
    let author = caller.user().ok_or_else(ApiError::forbidden)?;
    Ok((
        StatusCode::CREATED,
        Json(notes::amend(state.db(), id, author, &text).await?),
    ))
}
