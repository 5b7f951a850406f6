//! SMART on FHIR scopes: what a token minted for a FHIR client may do.
//!
//! A scope names a context, a resource type (or `*`) and what may be done:
//! `patient/Observation.read`, `user/*.read`, `system/*.write` (SMART v1:
//! read is read and search, write is create and update), or SMART v2
//! letters, each its own permission (`.r` read, `.s` search, `.c` create,
//! `.u` update; `.d` delete is accepted but grants nothing, as nothing can
//! be deleted). One token holds scopes of one context:
//! - `patient/`: only the one patient the token is bound to;
//! - `user/`: what the signed-in staff member may see anyway;
//! - `system/`: the whole clinic, for a backend integration; only admins
//!   may mint it.
//!
//! Scopes only ever narrow: the policy's own rules still decide every
//! request. A token with scopes reaches `/fhir` and nothing else.
//!
//! The grant is kept as bit sets over [`SUPPORTED`]'s resource types so a
//! caller stays a small `Copy` value.

use bedside_records::fhir::capability::SUPPORTED;
use bedside_records::ids::PatientId;

/// Whose data a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// One patient (the token's `patient`).
    Patient,
    /// The signed-in user's own reach.
    User,
    /// The whole clinic (admins' backend integrations).
    System,
}

impl ScopeContext {
    /// As written in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }
}

/// What a request does with a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read one resource (`r`; also what an operation such as
    /// `$everything` returns).
    Read,
    /// Search (`s`).
    Search,
    /// Create (`c`).
    Create,
    /// Update (`u`).
    Update,
}

impl Need {
    const ALL: [Need; 4] = [Need::Create, Need::Read, Need::Update, Need::Search];

    fn index(self) -> usize {
        match self {
            Need::Create => 0,
            Need::Read => 1,
            Need::Update => 2,
            Need::Search => 3,
        }
    }

    fn letter(self) -> char {
        ['c', 'r', 'u', 's'][self.index()]
    }
}

/// What a scoped token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The one context of its scopes.
    pub context: ScopeContext,
    /// Per [`Need`] (by its index), a bit per resource type of [`SUPPORTED`].
    allowed: [u16; 4],
    /// The patient of a `patient/` grant.
    pub patient: Option<PatientId>,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope {scope:?}: {reason}")]
pub struct ScopeError {
    /// The scope at fault.
    pub scope: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Scopes a client may ask for that grant no data access by themselves.
const IGNORED: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
];

fn type_bits(resource: &str) -> Option<u16> {
    if resource == "*" {
        return Some((1u16 << SUPPORTED.len()) - 1);
    }
    SUPPORTED
        .iter()
        .position(|r| r.resource_type == resource)
        .map(|i| 1u16 << i)
}

impl Grant {
    /// Parses a space-separated scope string.
    ///
    /// # Errors
    /// An unknown context, resource type or permission, scopes of more
    /// than one context, or none that grants anything.
    pub fn parse(raw: &str) -> Result<Grant, ScopeError> {
        let mut context = None;
        let mut allowed = [0u16; 4];
        for scope in raw.split_ascii_whitespace() {
            if IGNORED.contains(&scope) {
                continue;
            }
            let error = |reason| ScopeError {
                scope: scope.to_owned(),
                reason,
            };
            let (ctx, rest) = scope
                .split_once('/')
                .ok_or_else(|| error("is not context/Resource.permission"))?;
            let ctx = match ctx {
                "patient" => ScopeContext::Patient,
                "user" => ScopeContext::User,
                "system" => ScopeContext::System,
                _ => return Err(error("the context must be patient, user or system")),
            };
            if context.is_some_and(|c| c != ctx) {
                return Err(error("a token's scopes must all share one context"));
            }
            context = Some(ctx);
            let (resource, permission) = rest
                .split_once('.')
                .ok_or_else(|| error("is not context/Resource.permission"))?;
            let bits = type_bits(resource)
                .ok_or_else(|| error("names a resource type this server does not serve"))?;
            let needs: &[Need] = match permission {
                "read" => &[Need::Read, Need::Search],
                "write" => &[Need::Create, Need::Update],
                "*" => &Need::ALL,
                letters if is_v2(letters) => &Need::ALL,
                _ => {
                    return Err(error(
                        "the permission must be read, write, * or SMART v2 letters (cruds)",
                    ));
                }
            };
            // v2 letters name each permission; v1 words name groups of them.
            let v2 = is_v2(permission);
            for need in needs {
                if !v2 || permission.contains(need.letter()) {
                    allowed[need.index()] |= bits;
                }
            }
        }
        let nothing = ScopeError {
            scope: raw.to_owned(),
            reason: "grants no access to any resource",
        };
        let context = context.ok_or_else(|| nothing.clone())?;
        if allowed.iter().all(|bits| *bits == 0) {
            return Err(nothing);
        }
        Ok(Grant {
            context,
            allowed,
            patient: None,
        })
    }

    /// Binds a `patient/` grant to its patient.
    pub fn for_patient(mut self, patient: Option<PatientId>) -> Grant {
        self.patient = patient;
        self
    }

    /// Whether the grant allows `need` on `resource_type`.
    pub fn allows(&self, resource_type: &str, need: Need) -> bool {
        let Some(bit) = type_bits(resource_type) else {
            return false;
        };
        self.allowed[need.index()] & bit != 0
    }

    /// The scopes written out again, normalised to SMART v2 letters
    /// (`context/Type.rs`), for the token response.
    pub fn to_scope_string(&self) -> String {
        let mut scopes = Vec::new();
        for (i, r) in SUPPORTED.iter().enumerate() {
            let letters: String = Need::ALL
                .into_iter()
                .filter(|need| self.allowed[need.index()] & (1 << i) != 0)
                .map(Need::letter)
                .collect();
            if !letters.is_empty() {
                scopes.push(format!(
                    "{}/{}.{letters}",
                    self.context.as_str(),
                    r.resource_type
                ));
            }
        }
        scopes.join(" ")
    }
}

/// SMART v2 permissions: a non-empty subsequence of `cruds`.
fn is_v2(letters: &str) -> bool {
    let mut rest = "cruds";
    !letters.is_empty()
        && letters.chars().all(|c| match rest.find(c) {
            Some(i) => {
                rest = &rest[i + 1..];
                true
            }
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_grant_what_they_name() {
        let g = Grant::parse("openid fhirUser user/Observation.read user/Patient.*").unwrap();
        assert_eq!(g.context, ScopeContext::User);
        assert!(g.allows("Observation", Need::Read) && g.allows("Observation", Need::Search));
        assert!(!g.allows("Observation", Need::Create) && !g.allows("Observation", Need::Update));
        assert!(g.allows("Patient", Need::Create) && g.allows("Patient", Need::Update));
        assert!(!g.allows("Appointment", Need::Read));

        let g = Grant::parse("patient/*.rs").unwrap();
        assert!(g.allows("Flag", Need::Read) && g.allows("Flag", Need::Search));
        assert!(!g.allows("Patient", Need::Update));
        assert!(!g.allows("Medication", Need::Read));
    }

    #[test]
    fn each_v2_letter_grants_its_own_permission_only() {
        let g = Grant::parse("system/Appointment.c").unwrap();
        assert!(g.allows("Appointment", Need::Create));
        for need in [Need::Read, Need::Search, Need::Update] {
            assert!(!g.allows("Appointment", need), "{need:?}");
        }
        let g = Grant::parse("user/Observation.s").unwrap();
        assert!(g.allows("Observation", Need::Search) && !g.allows("Observation", Need::Read));
        let g = Grant::parse("user/Patient.r").unwrap();
        assert!(g.allows("Patient", Need::Read) && !g.allows("Patient", Need::Search));
    }

    #[test]
    fn bad_scopes_are_refused_with_the_scope_named() {
        for (raw, scope) in [
            (
                "user/Observation.read patient/Patient.read",
                "patient/Patient.read",
            ),
            ("admin/*.read", "admin/*.read"),
            ("user/Medication.read", "user/Medication.read"),
            ("user/Patient.delete", "user/Patient.delete"),
            ("user/Patient.sr", "user/Patient.sr"),
            ("user/Patient", "user/Patient"),
            ("openid", "openid"),
            ("user/Patient.d", "user/Patient.d"),
            ("", ""),
        ] {
            assert_eq!(Grant::parse(raw).unwrap_err().scope, scope, "{raw}");
        }
    }

    #[test]
    fn the_normalised_string_parses_to_the_same_grant() {
        for raw in [
            "user/*.read user/Patient.write",
            "patient/Observation.rs",
            "system/Appointment.cu",
        ] {
            let g = Grant::parse(raw).unwrap();
            assert_eq!(Grant::parse(&g.to_scope_string()).unwrap(), g, "{raw}");
        }
    }
}
