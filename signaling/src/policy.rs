//! Authorization, decided in one place, and the audit row every decision writes.
//!
//! Each route names an [`Access`] rule; [`decide`] is the only code that
//! turns a caller and a rule into yes or no:
//!
//! | rule | admin | clinician | patient visit session |
//! | --- | --- | --- | --- |
//! | `AnyStaff` | yes | yes | no |
//! | `Admin`, `AdminFor(p)` | yes | no | no |
//! | `Patient(p)` | yes | with a care relationship or an appointment with `p` | no |
//! | `Clinical(p)` (notes) | no | related to `p` (as above) | no |
//! | `Appointment(a)` | yes | `a`'s clinician or related to its patient | only `a` |
//! | `ManageAppointment(a)` | yes | `a`'s clinician | no |
//! | `ScheduleOf(pr)` | yes | when `pr` is themself | no |
//! | `Book { pr, p }` | yes | when `pr` is themself and related to `p` | no |
//! | `OwnVisit` | no | no | yes |
//!
//! [`Ctx::allow`] decides, writes the audit row (allowed or denied, with the
//! route template, request id and client address), and turns a refusal into
//! 401 (no valid identity) or 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bedside_records::appointments::Appointment;
use bedside_records::audit::{self, AuditEvent, Outcome};
use bedside_records::domain::StaffRole;
use bedside_records::ids::{PatientId, PractitionerId};

use crate::app::AppState;
use crate::auth::{Caller, Identity};
use crate::error::ApiError;
use crate::extract::RequestMeta;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// Any admin or clinician.
    AnyStaff,
    /// Admins only.
    Admin,
    /// Admins only, managing one patient's record (audited with the patient).
    AdminFor(PatientId),
    /// A patient's record: admins and related clinicians.
    Patient(PatientId),
    /// Clinical content (visit notes) about a patient, to read or write:
    /// related clinicians only. Admins manage people, devices and
    /// appointments, not clinical records.
    Clinical(PatientId),
    /// Reading one appointment: admins, its clinician or a clinician related
    /// to its patient, and the patient's own visit session.
    Appointment(&'a Appointment),
    /// Changing one appointment: admins and its clinician.
    ManageAppointment(&'a Appointment),
    /// A practitioner's schedule: admins, or the clinician themself.
    ScheduleOf(PractitionerId),
    /// Booking `patient` with `practitioner`: admins; a clinician only into
    /// their own schedule and only for a patient already related to them (so
    /// booking can never be used to gain access to a stranger's record).
    Book {
        /// Whose schedule.
        practitioner: PractitionerId,
        /// Which patient.
        patient: PatientId,
    },
    /// A patient's own visit session.
    OwnVisit,
}

impl Access<'_> {
    /// The patient an access concerns, for the audit row.
    pub(crate) fn patient(&self) -> Option<PatientId> {
        match self {
            Access::Patient(p) | Access::Clinical(p) | Access::AdminFor(p) => Some(*p),
            Access::Appointment(a) | Access::ManageAppointment(a) => Some(a.patient_id),
            Access::Book { patient, .. } => Some(*patient),
            _ => None,
        }
    }
}

/// Decides whether `caller` satisfies `access`.
///
/// # Errors
/// Only when the database fails while checking a relationship.
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    access: Access<'_>,
) -> Result<bool, ApiError> {
    let db = state.db();
    let related = |practitioner: Option<PractitionerId>, patient: PatientId| async move {
        match practitioner {
            Some(pr) => bedside_records::care::is_related(db, pr, patient).await,
            None => Ok(false),
        }
    };
    let allowed = match (caller, access) {
        (Caller::Staff { .. }, Access::AnyStaff) => true,
        (Caller::Staff { role, .. }, Access::Admin | Access::AdminFor(_)) => {
            *role == StaffRole::Admin
        }
        (
            Caller::Staff {
                role: StaffRole::Admin,
                ..
            },
            Access::Patient(_),
        ) => true,
        (
            Caller::Staff {
                role: StaffRole::Clinician,
                practitioner,
                ..
            },
            Access::Patient(p) | Access::Clinical(p),
        ) => related(*practitioner, p).await?,
        (
            Caller::Staff {
                role: StaffRole::Admin,
                ..
            },
            Access::Appointment(_) | Access::ManageAppointment(_),
        ) => true,
        (
            Caller::Staff {
                role: StaffRole::Clinician,
                practitioner,
                ..
            },
            Access::Appointment(a),
        ) => {
            *practitioner == Some(a.practitioner_id) || related(*practitioner, a.patient_id).await?
        }
        (
            Caller::Staff {
                role: StaffRole::Clinician,
                practitioner,
                ..
            },
            Access::ManageAppointment(a),
        ) => *practitioner == Some(a.practitioner_id),
        (
            Caller::Staff {
                role, practitioner, ..
            },
            Access::ScheduleOf(pr),
        ) => *role == StaffRole::Admin || *practitioner == Some(pr),
        (
            Caller::Staff {
                role: StaffRole::Admin,
                ..
            },
            Access::Book { .. },
        ) => true,
        (
            Caller::Staff {
                role: StaffRole::Clinician,
                practitioner: own,
                ..
            },
            Access::Book {
                practitioner,
                patient,
            },
        ) => *own == Some(practitioner) && related(*own, patient).await?,
        (Caller::Patient { appointment, .. }, Access::Appointment(a)) => *appointment == a.id,
        (Caller::Patient { .. }, Access::OwnVisit) => true,
        _ => false,
    };
    Ok(allowed)
}

/// Per-request context for guarded handlers: the request's meta data and
/// the caller's identity (or why there is none).
pub struct Ctx {
    /// Request id, client address and route template.
    pub meta: RequestMeta,
    identity: Identity,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let meta = RequestMeta::from_parts(parts);
        let identity = Identity::from_request_parts(parts, state).await?;
        Ok(Self { meta, identity })
    }
}

impl Ctx {
    /// Decides `access` for `action` (a verb phrase like `patient.read`),
    /// writes the audit row either way, and returns the caller when allowed.
    ///
    /// # Errors
    /// 401 without a valid identity, 403 when refused, 5xx when the audit
    /// row cannot be written (no unaudited access happens).
    pub async fn allow(
        &self,
        state: &AppState,
        access: Access<'_>,
        action: &str,
    ) -> Result<Caller, ApiError> {
        let caller = self.decide_or_deny(state, access, action).await?;
        self.audit(
            state,
            Some(&caller),
            access.patient(),
            action,
            Outcome::Allowed,
        )
        .await?;
        Ok(caller)
    }

    /// Like [`Ctx::allow`] for reads spanning many patients: audits only a
    /// refusal; the handler then calls [`Ctx::audit_list`] with the patients
    /// it returned.
    ///
    /// # Errors
    /// As [`Ctx::allow`].
    pub async fn allow_list(
        &self,
        state: &AppState,
        access: Access<'_>,
        action: &str,
    ) -> Result<Caller, ApiError> {
        self.decide_or_deny(state, access, action).await
    }

    /// Audits an allowed list read: one row per patient in the result.
    ///
    /// # Errors
    /// 5xx when the rows cannot be written.
    pub async fn audit_list(
        &self,
        state: &AppState,
        caller: &Caller,
        action: &str,
        patients: &[PatientId],
    ) -> Result<(), ApiError> {
        let event = self.event(Some(caller), None, action, Outcome::Allowed);
        audit::record_for_patients(state.db(), &event, patients).await?;
        Ok(())
    }

    /// The caller, for routes that need only some valid identity and touch
    /// no health data (e.g. the caller's own account). Not audited.
    ///
    /// # Errors
    /// 401 without a valid identity.
    pub fn caller(&self) -> Result<Caller, ApiError> {
        let caller = self.identity.0.map_err(|_| ApiError::unauthenticated())?;
        if caller.is_scoped() && !self.meta.is_fhir() {
            return Err(ApiError::forbidden());
        }
        Ok(caller)
    }

    /// The caller, for routes that check more than the policy's rules (a
    /// token's scopes, a clinician's own schedule) before asking it: a
    /// request without a valid identity is audited as denied and refused
    /// (401), as [`Ctx::allow`] would.
    ///
    /// # Errors
    /// 401 without a valid identity, 403 for a scoped token outside `/fhir`.
    pub async fn caller_or_deny(
        &self,
        state: &AppState,
        access: Access<'_>,
        action: &str,
    ) -> Result<Caller, ApiError> {
        match self.caller() {
            Ok(caller) => Ok(caller),
            Err(refusal) => {
                let caller = self.identity.0.ok();
                self.audit(
                    state,
                    caller.as_ref(),
                    access.patient(),
                    action,
                    Outcome::Denied,
                )
                .await?;
                Err(refusal)
            }
        }
    }

    async fn decide_or_deny(
        &self,
        state: &AppState,
        access: Access<'_>,
        action: &str,
    ) -> Result<Caller, ApiError> {
        let caller = match self.identity.0 {
            Ok(caller) => caller,
            Err(_) => {
                self.audit(state, None, access.patient(), action, Outcome::Denied)
                    .await?;
                return Err(ApiError::unauthenticated());
            }
        };
        // A token minted for a FHIR client reaches only the FHIR API, whose
        // handlers check its scopes before asking here.
        let refusal = if caller.is_scoped() && !self.meta.is_fhir() {
            Some(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "a token with SMART scopes reaches only the FHIR API under /fhir",
            ))
        } else if decide(state, &caller, access).await? {
            None
        } else {
            Some(ApiError::forbidden())
        };
        match refusal {
            None => Ok(caller),
            Some(refusal) => {
                self.audit(
                    state,
                    Some(&caller),
                    access.patient(),
                    action,
                    Outcome::Denied,
                )
                .await?;
                Err(refusal)
            }
        }
    }

    /// Writes the audit row of a refusal decided outside [`decide`] (a
    /// token's scopes), with the caller as the actor.
    ///
    /// # Errors
    /// 5xx when the row cannot be written.
    pub async fn audit_denied(
        &self,
        state: &AppState,
        caller: &Caller,
        patient: Option<PatientId>,
        action: &str,
    ) -> Result<(), ApiError> {
        self.audit(state, Some(caller), patient, action, Outcome::Denied)
            .await
    }

    /// Writes an allowed audit row for `user`, authenticated by other means
    /// than a bearer token (an identity provider, a calendar feed's secret).
    ///
    /// # Errors
    /// 5xx when the row cannot be written.
    pub async fn audit_for_user(
        &self,
        state: &AppState,
        user: bedside_records::ids::UserId,
        role: &str,
        action: &str,
    ) -> Result<(), ApiError> {
        let mut event = self.event(None, None, action, Outcome::Allowed);
        event.actor_id = Some(user);
        event.actor_role = role;
        audit::record(state.db(), &event).await?;
        Ok(())
    }

    /// Writes an audit row for an attempt that has no [`Caller`] yet, such
    /// as exchanging a join link.
    ///
    /// # Errors
    /// 5xx when the row cannot be written.
    pub async fn audit_attempt(
        &self,
        state: &AppState,
        actor_role: &str,
        patient: Option<PatientId>,
        action: &str,
        outcome: Outcome,
    ) -> Result<(), ApiError> {
        let mut event = self.event(None, patient, action, outcome);
        event.actor_role = actor_role;
        audit::record(state.db(), &event).await?;
        Ok(())
    }

    fn event<'a>(
        &'a self,
        caller: Option<&Caller>,
        patient: Option<PatientId>,
        action: &'a str,
        outcome: Outcome,
    ) -> AuditEvent<'a> {
        AuditEvent {
            actor_id: caller.and_then(Caller::user),
            actor_role: caller.map_or("anonymous", Caller::role_name),
            patient_id: patient,
            action,
            resource: &self.meta.route,
            resource_path: &self.meta.path,
            outcome,
            request_id: &self.meta.request_id,
            client_addr: &self.meta.client_addr,
        }
    }

    async fn audit(
        &self,
        state: &AppState,
        caller: Option<&Caller>,
        patient: Option<PatientId>,
        action: &str,
        outcome: Outcome,
    ) -> Result<(), ApiError> {
        audit::record(state.db(), &self.event(caller, patient, action, outcome)).await?;
        Ok(())
    }
}
