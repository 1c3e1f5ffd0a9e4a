//! Wire ↔ domain. Requests are validated here into domain types, with errors that name the
//! field by its JSON path; responses are built here from domain types.

use crate::domain::{
    FlagCheck, FlagKey, FlagSession, FlagSessionState, MAX_CHECKS_PER_CALL, MAX_CLIENT_ID_CHARS,
    MAX_TEXT_CHARS, SessionQuery, Trigger,
};
use crate::error::FlagError;
use base64::Engine;
use chrono::{DateTime, Utc};
use signins_proto::flag::v1 as pb;
use uuid::Uuid;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Where a keyed request's fields sit. The JSON path of a field is only spelled out when the
/// field is refused, so a valid 10,000-check batch builds no path strings at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldPath {
    /// At the top level of the request.
    Top,
    /// Inside `checks[i]` of a CheckFlags request.
    Check(usize),
}

impl FieldPath {
    fn field(self, name: &str) -> String {
        match self {
            FieldPath::Top => name.to_owned(),
            FieldPath::Check(index) => format!("checks[{index}].{name}"),
        }
    }

    fn invalid(self, name: &str, reason: impl Into<String>) -> FlagError {
        FlagError::invalid(self.field(name), reason)
    }
}

fn parse_guid(value: &str) -> Result<Uuid, &'static str> {
    if value.is_empty() {
        return Err("required");
    }
    Uuid::parse_str(value).map_err(|_| "must be a GUID")
}

pub fn guid(field: &str, value: &str) -> Result<Uuid, FlagError> {
    parse_guid(value).map_err(|reason| FlagError::invalid(field, reason))
}

fn within(value: &str, max: usize) -> Result<(), String> {
    // Bytes bound characters from above: count characters only when the bytes might exceed.
    if value.len() > max && value.chars().count() > max {
        return Err(format!("at most {max} characters"));
    }
    Ok(())
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), FlagError> {
    within(value, max).map_err(|reason| FlagError::invalid(field, reason))
}

fn optional_text(field: &str, value: String) -> Result<Option<String>, FlagError> {
    bounded(field, &value, MAX_TEXT_CHARS)?;
    Ok((!value.is_empty()).then_some(value))
}

fn parse_timestamp(value: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, &'static str> {
    let value = value.ok_or("required")?;
    let nanos = u32::try_from(value.nanos).map_err(|_| "nanos out of range")?;
    DateTime::from_timestamp(value.seconds, nanos)
        .map(signins_common::clock::truncate_to_micros)
        .ok_or("out of range")
}

pub fn timestamp(
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, FlagError> {
    parse_timestamp(value).map_err(|reason| FlagError::invalid(field, reason))
}

pub fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Builds a flag key from the fields every keyed request carries, found at `path`.
pub fn flag_key(
    path: FieldPath,
    tenant_id: &str,
    user_id: &str,
    client: Option<pb::Client>,
) -> Result<FlagKey, FlagError> {
    let tenant_id = parse_guid(tenant_id).map_err(|reason| path.invalid("tenantId", reason))?;
    let user_id = parse_guid(user_id).map_err(|reason| path.invalid("userId", reason))?;
    let client = client.ok_or_else(|| path.invalid("client.browserId", "required"))?;
    if client.browser_id.trim().is_empty() {
        return Err(path.invalid("client.browserId", "required"));
    }
    within(&client.browser_id, MAX_CLIENT_ID_CHARS)
        .map_err(|reason| path.invalid("client.browserId", reason))?;
    within(&client.device_id, MAX_CLIENT_ID_CHARS)
        .map_err(|reason| path.invalid("client.deviceId", reason))?;
    Ok(FlagKey {
        tenant_id,
        user_id,
        device_id: client.device_id,
        browser_id: client.browser_id,
    })
}

pub fn trigger(value: Option<pb::Trigger>) -> Result<Trigger, FlagError> {
    let Some(value) = value else {
        return Ok(Trigger::default());
    };
    Ok(Trigger {
        error_code: Some(value.error_code),
        request_id: optional_text("trigger.requestId", value.request_id)?,
        correlation_id: optional_text("trigger.correlationId", value.correlation_id)?,
        app_id: optional_text("trigger.appId", value.app_id)?,
        app_display_name: optional_text("trigger.appDisplayName", value.app_display_name)?,
        ip_address: optional_text("trigger.ipAddress", value.ip_address)?,
        occurred_at: value
            .occurred_date_time
            .map(|time| timestamp("trigger.occurredDateTime", Some(time)))
            .transpose()?,
    })
}

pub fn user_principal_name(value: String) -> Result<Option<String>, FlagError> {
    optional_text("userPrincipalName", value)
}

pub fn checks(request: pb::CheckFlagsRequest) -> Result<Vec<FlagCheck>, FlagError> {
    if request.checks.len() > MAX_CHECKS_PER_CALL {
        return Err(FlagError::invalid(
            "checks",
            format!(
                "at most {MAX_CHECKS_PER_CALL} checks per call, got {}",
                request.checks.len()
            ),
        ));
    }
    request
        .checks
        .into_iter()
        .enumerate()
        .map(|(index, check)| {
            let path = FieldPath::Check(index);
            let key = flag_key(path, &check.tenant_id, &check.user_id, check.client)?;
            let at = parse_timestamp(check.at).map_err(|reason| path.invalid("at", reason))?;
            Ok(FlagCheck { key, at })
        })
        .collect()
}

pub fn session_query(request: pb::ListFlagSessionsRequest) -> Result<SessionQuery, FlagError> {
    // Required by the contract: the request names the tenant it lists (the caller's tenant is
    // then checked against it), rather than falling back on the token.
    let tenant_id = guid("tenantId", &request.tenant_id)?;
    let user_id = if request.user_id.is_empty() {
        None
    } else {
        Some(guid("userId", &request.user_id)?)
    };
    let page_size = match request.page_size {
        0 => DEFAULT_PAGE_SIZE,
        size if size < 0 => return Err(FlagError::invalid("pageSize", "must not be negative")),
        size => u32::try_from(size).unwrap_or(u32::MAX),
    };
    if page_size > MAX_PAGE_SIZE {
        return Err(FlagError::invalid(
            "pageSize",
            format!("at most {MAX_PAGE_SIZE}"),
        ));
    }
    let after = if request.page_token.is_empty() {
        None
    } else {
        Some(decode_page_token(&request.page_token)?)
    };
    Ok(SessionQuery {
        tenant_id,
        user_id,
        active_only: request.active_only,
        page_size,
        after,
    })
}

/// The page token is the position of the last session returned: its enable time and id.
pub fn encode_page_token((time, id): (DateTime<Utc>, Uuid)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        time.timestamp_micros(),
        id
    ))
}

fn decode_page_token(token: &str) -> Result<(DateTime<Utc>, Uuid), FlagError> {
    let invalid = || FlagError::invalid("pageToken", "not a token this service issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    Ok((time, Uuid::parse_str(id).map_err(|_| invalid())?))
}

pub fn session(session: FlagSession, now: DateTime<Utc>) -> pb::FlagSession {
    let state = match session.state_at(now) {
        FlagSessionState::Active => pb::FlagSessionState::Active,
        FlagSessionState::Expired => pb::FlagSessionState::Expired,
        FlagSessionState::Disabled => pb::FlagSessionState::Disabled,
    };
    let trigger = &session.trigger;
    let has_trigger = trigger != &Trigger::default();
    pb::FlagSession {
        id: session.id.to_string(),
        tenant_id: session.key.tenant_id.to_string(),
        user_id: session.key.user_id.to_string(),
        client: Some(pb::Client {
            device_id: session.key.device_id,
            browser_id: session.key.browser_id,
        }),
        user_principal_name: session.user_principal_name.unwrap_or_default(),
        trigger: has_trigger.then(|| pb::Trigger {
            error_code: trigger.error_code.unwrap_or_default(),
            request_id: trigger.request_id.clone().unwrap_or_default(),
            correlation_id: trigger.correlation_id.clone().unwrap_or_default(),
            app_id: trigger.app_id.clone().unwrap_or_default(),
            app_display_name: trigger.app_display_name.clone().unwrap_or_default(),
            ip_address: trigger.ip_address.clone().unwrap_or_default(),
            occurred_date_time: trigger.occurred_at.map(to_timestamp),
        }),
        enabled_date_time: Some(to_timestamp(session.enabled_at)),
        expires_date_time: Some(to_timestamp(session.expires_at)),
        disabled_date_time: session.disabled_at.map(to_timestamp),
        state: state.into(),
        enabled_by: session.enabled_by,
        disabled_by: session.disabled_by.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_keys_name_the_field() {
        let error = flag_key(FieldPath::Check(2), "not-a-guid", "", None).unwrap_err();
        assert_eq!(error.to_string(), "checks[2].tenantId: must be a GUID");
        let tenant = Uuid::new_v4().to_string();
        let user = Uuid::new_v4().to_string();
        let error = flag_key(
            FieldPath::Top,
            &tenant,
            &user,
            Some(pb::Client {
                device_id: String::new(),
                browser_id: String::new(),
            }),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "client.browserId: required");
        let long = "x".repeat(257);
        let error = flag_key(
            FieldPath::Top,
            &tenant,
            &user,
            Some(pb::Client {
                device_id: long,
                browser_id: "b".into(),
            }),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "client.deviceId: at most 256 characters");
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let position = (
            signins_common::clock::truncate_to_micros(Utc::now()),
            Uuid::new_v4(),
        );
        assert_eq!(
            decode_page_token(&encode_page_token(position)).unwrap(),
            position
        );
        assert!(decode_page_token("garbage!").is_err());
    }

    #[test]
    fn more_than_ten_thousand_checks_are_refused() {
        let request = pb::CheckFlagsRequest {
            checks: vec![pb::FlagCheck::default(); 10_001],
        };
        assert!(
            checks(request)
                .unwrap_err()
                .to_string()
                .starts_with("checks: at most 10000")
        );
    }
}
