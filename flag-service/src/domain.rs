//! The flagging domain: flag keys, flag sessions and their state at a given time, already
//! validated. Wire types never reach here; `convert` turns them into these.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The most characters a client identifier may have.
pub const MAX_CLIENT_ID_CHARS: usize = 256;
/// The most characters of any trigger text field or display name.
pub const MAX_TEXT_CHARS: usize = 256;
/// The most checks one CheckFlags call may carry.
pub const MAX_CHECKS_PER_CALL: usize = 10_000;

/// Whose sign-ins a flag session marks: one user on one browser of one device, in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlagKey {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    /// Empty when the device is not registered.
    pub device_id: String,
    pub browser_id: String,
}

/// The error the user saw when they chose "Enable Flagging".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trigger {
    pub error_code: Option<i32>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub app_id: Option<String>,
    pub app_display_name: Option<String>,
    pub ip_address: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSessionState {
    Active,
    Expired,
    Disabled,
}

/// One period during which a flag key's sign-ins are flagged for review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSession {
    pub id: Uuid,
    pub key: FlagKey,
    pub user_principal_name: Option<String>,
    pub trigger: Trigger,
    pub enabled_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Audit: who enabled it (the gateway's principal, acting for the user).
    pub enabled_by: String,
    pub disabled_by: Option<String>,
}

impl FlagSession {
    /// When the session stops flagging: expiry, or the disable if that came first.
    pub fn ends_at(&self) -> DateTime<Utc> {
        match self.disabled_at {
            Some(disabled) if disabled < self.expires_at => disabled,
            _ => self.expires_at,
        }
    }

    /// Whether a sign-in at `at` is flagged by this session: `[enabled, min(expires, disabled))`.
    pub fn in_force_at(&self, at: DateTime<Utc>) -> bool {
        self.enabled_at <= at && at < self.ends_at()
    }

    /// The state as seen at `now`, so no background job is needed to expire a session.
    pub fn state_at(&self, now: DateTime<Utc>) -> FlagSessionState {
        match self.disabled_at {
            Some(disabled) if disabled < self.expires_at && disabled <= now => {
                FlagSessionState::Disabled
            }
            _ if now >= self.expires_at => FlagSessionState::Expired,
            _ => FlagSessionState::Active,
        }
    }
}

/// One question of CheckFlags: was this key flagged at this time?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagCheck {
    pub key: FlagKey,
    pub at: DateTime<Utc>,
}

/// When one session flags its key: `[enabled_at, ends_at)`, all the mirror keeps of it. The
/// key's ids are borrowed from the row they were read from: the mirror keeps only their hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindow<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub device_id: &'a str,
    pub browser_id: &'a str,
    pub enabled_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// What ListFlagSessions asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub active_only: bool,
    pub page_size: u32,
    /// Continue after this (enabled_at, id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn session(disabled_after_minutes: Option<i64>) -> FlagSession {
        let enabled = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        FlagSession {
            id: Uuid::nil(),
            key: FlagKey {
                tenant_id: Uuid::nil(),
                user_id: Uuid::nil(),
                device_id: String::new(),
                browser_id: "b".into(),
            },
            user_principal_name: None,
            trigger: Trigger::default(),
            enabled_at: enabled,
            expires_at: enabled + chrono::Duration::minutes(20),
            disabled_at: disabled_after_minutes.map(|m| enabled + chrono::Duration::minutes(m)),
            enabled_by: "gateway".into(),
            disabled_by: None,
        }
    }

    #[test]
    fn the_window_is_half_open_at_both_ends() {
        let s = session(None);
        assert!(!s.in_force_at(s.enabled_at - chrono::Duration::milliseconds(1)));
        assert!(s.in_force_at(s.enabled_at));
        assert!(s.in_force_at(s.expires_at - chrono::Duration::microseconds(1)));
        assert!(!s.in_force_at(s.expires_at));
    }

    #[test]
    fn disabling_ends_the_window_early_and_the_state_follows_the_clock() {
        let s = session(Some(5));
        assert!(!s.in_force_at(s.enabled_at + chrono::Duration::minutes(6)));
        assert_eq!(
            s.state_at(s.enabled_at + chrono::Duration::minutes(1)),
            FlagSessionState::Active
        );
        assert_eq!(
            s.state_at(s.enabled_at + chrono::Duration::minutes(5)),
            FlagSessionState::Disabled
        );
        assert_eq!(
            session(None).state_at(s.expires_at),
            FlagSessionState::Expired
        );
    }
}
