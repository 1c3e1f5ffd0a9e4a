//! Wire ↔ domain for sign-ins. Incoming events are validated here, each error naming the event
//! by its index and the field by its JSON path (`signIns[1].userId`); outgoing events are built
//! here from stored ones.

use crate::domain::sign_in::{
    CONDITIONAL_ACCESS_STATUSES, FlagCheck, MAX_TEXT_CHARS, MAX_USER_AGENT_CHARS, RISK_LEVELS,
    RISK_STATES, SignIn, USER_TYPES,
};
use crate::domain::sign_in_errors::{self, SignInOutcome};
use crate::error::QueryError;
use chrono::{DateTime, Utc};
use signins_proto::query::v1 as pb;
use uuid::Uuid;

/// Most characters of a failure reason or additional details.
const MAX_DETAILS_CHARS: usize = 1_024;

/// The times an incoming event's createdDateTime may have.
#[derive(Debug, Clone, Copy)]
pub struct TimeBounds {
    /// Older events would fall outside retention and be dropped at once.
    pub earliest: DateTime<Utc>,
    /// Now plus the tolerated clock skew.
    pub latest: DateTime<Utc>,
}

/// Validates one incoming event; `index` is its position in the batch or stream.
pub fn sign_in(index: usize, event: pb::SignIn, bounds: &TimeBounds) -> Result<SignIn, QueryError> {
    let field = |name: &str| format!("signIns[{index}].{name}");
    let text = |name: &str, value: Option<String>| bounded(&field(name), value, MAX_TEXT_CHARS);
    let one_of = |name: &str,
                  value: Option<String>,
                  allowed: &[&str]|
     -> Result<Option<String>, QueryError> {
        match value.filter(|value| !value.is_empty()) {
            Some(value) if !allowed.contains(&value.as_str()) => Err(QueryError::invalid(
                field(name),
                format!("must be one of {}", allowed.join(", ")),
            )),
            value => Ok(value),
        }
    };

    let created_at = {
        let value = event
            .created_date_time
            .ok_or_else(|| QueryError::invalid(field("createdDateTime"), "required"))?;
        let nanos = u32::try_from(value.nanos)
            .map_err(|_| QueryError::invalid(field("createdDateTime"), "out of range"))?;
        let time = DateTime::from_timestamp(value.seconds, nanos)
            .map(signins_common::clock::truncate_to_micros)
            .ok_or_else(|| QueryError::invalid(field("createdDateTime"), "out of range"))?;
        if time > bounds.latest {
            return Err(QueryError::invalid(
                field("createdDateTime"),
                format!(
                    "in the future beyond the tolerated clock skew (latest accepted: {})",
                    bounds.latest.to_rfc3339()
                ),
            ));
        }
        if time < bounds.earliest {
            return Err(QueryError::invalid(
                field("createdDateTime"),
                format!(
                    "older than the retention period (earliest accepted: {})",
                    bounds.earliest.to_rfc3339()
                ),
            ));
        }
        time
    };
    let user_principal_name = text("userPrincipalName", event.user_principal_name)?
        .map(|upn| {
            if is_well_formed_upn(&upn) {
                Ok(upn.to_lowercase())
            } else {
                Err(QueryError::invalid(
                    field("userPrincipalName"),
                    "must look like name@domain",
                ))
            }
        })
        .transpose()?;
    let status = event.status.unwrap_or_default();
    let device = event.device_detail.unwrap_or_default();
    let location = event.location.unwrap_or_default();
    Ok(SignIn {
        id: guid(&field("id"), &event.id)?,
        created_at,
        tenant_id: guid(&field("tenantId"), &event.tenant_id)?,
        user_id: guid(&field("userId"), &event.user_id)?,
        user_principal_name,
        user_display_name: text("userDisplayName", event.user_display_name)?,
        user_type: one_of("userType", event.user_type, USER_TYPES)?,
        app_id: text("appId", event.app_id)?,
        app_display_name: text("appDisplayName", event.app_display_name)?,
        resource_id: text("resourceId", event.resource_id)?,
        resource_display_name: text("resourceDisplayName", event.resource_display_name)?,
        ip_address: text("ipAddress", event.ip_address)?,
        user_agent: bounded(&field("userAgent"), event.user_agent, MAX_USER_AGENT_CHARS)?,
        client_app_used: text("clientAppUsed", event.client_app_used)?,
        correlation_id: text("correlationId", event.correlation_id)?,
        is_interactive: event.is_interactive,
        conditional_access_status: one_of(
            "conditionalAccessStatus",
            event.conditional_access_status,
            CONDITIONAL_ACCESS_STATUSES,
        )?,
        error_code: status.error_code,
        failure_reason: bounded(
            &field("status.failureReason"),
            status.failure_reason,
            MAX_DETAILS_CHARS,
        )?,
        additional_details: bounded(
            &field("status.additionalDetails"),
            status.additional_details,
            MAX_DETAILS_CHARS,
        )?,
        device_id: text("deviceDetail.deviceId", device.device_id)?,
        browser_id: text("deviceDetail.browserId", device.browser_id)?,
        device_display_name: text("deviceDetail.displayName", device.display_name)?,
        operating_system: text("deviceDetail.operatingSystem", device.operating_system)?,
        browser: text("deviceDetail.browser", device.browser)?,
        is_compliant: device.is_compliant,
        is_managed: device.is_managed,
        trust_type: text("deviceDetail.trustType", device.trust_type)?,
        city: text("location.city", location.city)?,
        state: text("location.state", location.state)?,
        country_or_region: text("location.countryOrRegion", location.country_or_region)?,
        risk_level_during_sign_in: one_of(
            "riskLevelDuringSignIn",
            event.risk_level_during_sign_in,
            RISK_LEVELS,
        )?,
        risk_state: one_of("riskState", event.risk_state, RISK_STATES)?,
        // Whatever the gateway said about flags is ignored: only flag-service decides.
        flag: FlagCheck::NotFlagged,
    })
}

pub fn guid(field: &str, value: &str) -> Result<Uuid, QueryError> {
    if value.is_empty() {
        return Err(QueryError::invalid(field, "required"));
    }
    Uuid::parse_str(value).map_err(|_| QueryError::invalid(field, "must be a GUID"))
}

/// Empty strings count as absent, so OData's `eq null` finds them.
fn bounded(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, QueryError> {
    match value {
        Some(value) if value.chars().count() > max => Err(QueryError::invalid(
            field,
            format!("at most {max} characters"),
        )),
        Some(value) if value.is_empty() => Ok(None),
        value => Ok(value),
    }
}

fn is_well_formed_upn(upn: &str) -> bool {
    let Some((name, domain)) = upn.split_once('@') else {
        return false;
    };
    !name.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !upn.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The wire form of a stored sign-in.
pub fn to_wire(sign_in: SignIn) -> pb::SignIn {
    let (flagged, session, pending) = match sign_in.flag {
        FlagCheck::NotFlagged => (false, None, false),
        FlagCheck::Flagged(session) => (true, Some(session.to_string()), false),
        FlagCheck::Pending => (false, None, true),
    };
    pb::SignIn {
        id: sign_in.id.to_string(),
        created_date_time: Some(to_timestamp(sign_in.created_at)),
        tenant_id: sign_in.tenant_id.to_string(),
        user_id: sign_in.user_id.to_string(),
        user_principal_name: sign_in.user_principal_name,
        user_display_name: sign_in.user_display_name,
        user_type: sign_in.user_type,
        app_id: sign_in.app_id,
        app_display_name: sign_in.app_display_name,
        resource_id: sign_in.resource_id,
        resource_display_name: sign_in.resource_display_name,
        ip_address: sign_in.ip_address,
        user_agent: sign_in.user_agent,
        client_app_used: sign_in.client_app_used,
        correlation_id: sign_in.correlation_id,
        is_interactive: sign_in.is_interactive,
        conditional_access_status: sign_in.conditional_access_status,
        status: Some(pb::SignInStatus {
            error_code: sign_in.error_code,
            failure_reason: sign_in.failure_reason,
            additional_details: sign_in.additional_details,
            outcome: Some(
                match sign_in_errors::outcome(sign_in.error_code) {
                    SignInOutcome::Success => "success",
                    SignInOutcome::Failure => "failure",
                    SignInOutcome::Interrupted => "interrupted",
                }
                .to_owned(),
            ),
        }),
        device_detail: Some(pb::DeviceDetail {
            device_id: sign_in.device_id,
            browser_id: sign_in.browser_id,
            display_name: sign_in.device_display_name,
            operating_system: sign_in.operating_system,
            browser: sign_in.browser,
            is_compliant: sign_in.is_compliant,
            is_managed: sign_in.is_managed,
            trust_type: sign_in.trust_type,
        }),
        location: Some(pb::SignInLocation {
            city: sign_in.city,
            state: sign_in.state,
            country_or_region: sign_in.country_or_region,
        }),
        risk_level_during_sign_in: sign_in.risk_level_during_sign_in,
        risk_state: sign_in.risk_state,
        flagged_for_review: Some(flagged),
        flag_session_id: session,
        flag_check_pending: Some(pending),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::SignIn {
        pb::SignIn {
            id: Uuid::new_v4().to_string(),
            tenant_id: Uuid::new_v4().to_string(),
            user_id: Uuid::new_v4().to_string(),
            created_date_time: Some(to_timestamp(Utc::now())),
            user_principal_name: Some("Adele.Vance@Contoso.com".into()),
            ..pb::SignIn::default()
        }
    }

    fn check(event: pb::SignIn) -> Result<SignIn, QueryError> {
        let now = Utc::now();
        let bounds = TimeBounds {
            earliest: now - chrono::Duration::days(30),
            latest: now + chrono::Duration::minutes(5),
        };
        sign_in(3, event, &bounds)
    }

    #[test]
    fn the_upn_is_stored_lowercase_and_gateway_flags_are_ignored() {
        let mut event = valid();
        event.flagged_for_review = Some(true);
        event.flag_session_id = Some(Uuid::new_v4().to_string());
        let sign_in = check(event).unwrap();
        assert_eq!(
            sign_in.user_principal_name.as_deref(),
            Some("adele.vance@contoso.com")
        );
        assert_eq!(sign_in.flag, FlagCheck::NotFlagged);
    }

    #[test]
    fn errors_name_the_index_and_field() {
        let mut event = valid();
        event.user_id = "nope".into();
        assert_eq!(
            check(event).unwrap_err().to_string(),
            "signIns[3].userId: must be a GUID"
        );
        let mut event = valid();
        event.created_date_time = Some(to_timestamp(Utc::now() + chrono::Duration::minutes(10)));
        assert!(
            check(event)
                .unwrap_err()
                .to_string()
                .starts_with("signIns[3].createdDateTime")
        );
        let mut event = valid();
        event.user_type = Some("admin".into());
        assert!(
            check(event)
                .unwrap_err()
                .to_string()
                .starts_with("signIns[3].userType: must be one of")
        );
        let mut event = valid();
        event.user_principal_name = Some("no-at-sign".into());
        assert!(
            check(event)
                .unwrap_err()
                .to_string()
                .starts_with("signIns[3].userPrincipalName")
        );
    }
}
