//! A sign-in event as the program sees it: validated, with Graph's meaning, independent of the
//! wire. The flag key of a sign-in is (tenant, user, device, browser).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Most events in one RecordSignIns call.
pub const MAX_BATCH: usize = 1_000;
/// Most characters of a user agent.
pub const MAX_USER_AGENT_CHARS: usize = 1_024;
/// Most characters of any other text field.
pub const MAX_TEXT_CHARS: usize = 256;

pub const USER_TYPES: &[&str] = &["member", "guest"];
pub const CONDITIONAL_ACCESS_STATUSES: &[&str] = &["success", "failure", "notApplied"];
pub const RISK_LEVELS: &[&str] = &["none", "low", "medium", "high", "hidden"];
pub const RISK_STATES: &[&str] = &[
    "none",
    "confirmedSafe",
    "remediated",
    "dismissed",
    "atRisk",
    "confirmedCompromised",
];

/// A sign-in. `S` is how its texts are held: owned (`String`, the default) for a sign-in
/// being recorded, or borrowed from the database row it was just read from ([`SignInRef`]),
/// so a page of them is written to the wire without copying a string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignIn<S = String> {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    /// Lowercase.
    pub user_principal_name: Option<S>,
    pub user_display_name: Option<S>,
    pub user_type: Option<S>,
    pub app_id: Option<S>,
    pub app_display_name: Option<S>,
    pub resource_id: Option<S>,
    pub resource_display_name: Option<S>,
    pub ip_address: Option<S>,
    pub user_agent: Option<S>,
    pub client_app_used: Option<S>,
    pub correlation_id: Option<S>,
    pub is_interactive: Option<bool>,
    pub conditional_access_status: Option<S>,
    /// 0 means success.
    pub error_code: i32,
    pub failure_reason: Option<S>,
    pub additional_details: Option<S>,
    pub device_id: Option<S>,
    pub browser_id: Option<S>,
    pub device_display_name: Option<S>,
    pub operating_system: Option<S>,
    pub browser: Option<S>,
    pub is_compliant: Option<bool>,
    pub is_managed: Option<bool>,
    pub trust_type: Option<S>,
    pub city: Option<S>,
    pub state: Option<S>,
    pub country_or_region: Option<S>,
    pub risk_level_during_sign_in: Option<S>,
    pub risk_state: Option<S>,
    /// Set by enrichment only.
    pub flag: FlagCheck,
}

/// A stored sign-in whose texts are borrowed from the row it was read from.
pub type SignInRef<'a> = SignIn<&'a str>;

/// What is known about the flag of a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagCheck {
    /// Not flagged (or not flaggable: no browser id).
    #[default]
    NotFlagged,
    Flagged(Uuid),
    /// flag-service could not be asked yet; a background task will.
    Pending,
}

impl SignIn {
    /// The flag key's client part as flag-service stores it; `None` when no browser id was sent,
    /// since such a sign-in cannot match any flag session.
    pub fn flag_client(&self) -> Option<(&str, &str)> {
        let browser = self
            .browser_id
            .as_deref()
            .filter(|browser| !browser.is_empty())?;
        Some((self.device_id.as_deref().unwrap_or(""), browser))
    }
}

/// How sign-ins are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

impl Order {
    /// Parses Graph's `$orderby` for the one property we sort by, any case.
    pub fn parse(text: &str) -> Option<Order> {
        let words: Vec<String> = text
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] | ["createddatetime", "desc"] => Some(Order::NewestFirst),
            ["createddatetime"] | ["createddatetime", "asc"] => Some(Order::OldestFirst),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::NewestFirst => "createdDateTime desc",
            Order::OldestFirst => "createdDateTime asc",
        }
    }
}

/// Whose sign-ins a caller may read inside their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// Reader roles: the whole tenant.
    Tenant(Uuid),
    /// Help desk: only flagged sign-ins of the tenant.
    FlaggedOnly(Uuid),
    /// A plain user: only their own sign-ins.
    OwnUser { tenant_id: Uuid, user_id: Uuid },
}

impl ReadScope {
    pub fn tenant_id(self) -> Uuid {
        match self {
            ReadScope::Tenant(tenant) | ReadScope::FlaggedOnly(tenant) => tenant,
            ReadScope::OwnUser { tenant_id, .. } => tenant_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_accepts_any_case_and_refuses_other_properties() {
        assert_eq!(Order::parse(""), Some(Order::NewestFirst));
        assert_eq!(
            Order::parse("CreatedDateTime DESC"),
            Some(Order::NewestFirst)
        );
        assert_eq!(
            Order::parse("createddatetime asc"),
            Some(Order::OldestFirst)
        );
        assert_eq!(Order::parse("userId desc"), None);
    }
}
