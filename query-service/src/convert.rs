//! Wire ↔ domain for sign-ins. Incoming events are validated here, each error naming the event
//! by its index and the field by its JSON path (`signIns[1].userId`); outgoing events are built
//! here from stored ones: as a `pb::SignIn` ([`to_wire`]), or written straight into the wire
//! form of a ListSignIns page ([`PageEncoder`]), the same bytes prost would write for
//! [`to_wire`]'s message (a test holds the two to that) without building it.

use crate::domain::sign_in::{
    CONDITIONAL_ACCESS_STATUSES, FlagCheck, MAX_TEXT_CHARS, MAX_USER_AGENT_CHARS, RISK_LEVELS,
    RISK_STATES, SignIn, USER_TYPES,
};
use crate::domain::sign_in_errors::{self, SignInOutcome};
use crate::error::QueryError;
use chrono::{DateTime, Utc};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use signins_proto::encoded::EncodedListSignInsResponse;
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

/// What the wire's three flag fields say of a flag check: flaggedForReview, the session,
/// flagCheckPending.
fn flag_fields(flag: FlagCheck) -> (bool, Option<Uuid>, bool) {
    match flag {
        FlagCheck::NotFlagged => (false, None, false),
        FlagCheck::Flagged(session) => (true, Some(session), false),
        FlagCheck::Pending => (false, None, true),
    }
}

fn outcome(error_code: i32) -> &'static str {
    match sign_in_errors::outcome(error_code) {
        SignInOutcome::Success => "success",
        SignInOutcome::Failure => "failure",
        SignInOutcome::Interrupted => "interrupted",
    }
}

/// The wire form of a stored sign-in.
pub fn to_wire(sign_in: SignIn) -> pb::SignIn {
    let (flagged, session, pending) = flag_fields(sign_in.flag);
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
            outcome: Some(outcome(sign_in.error_code).to_owned()),
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
        flag_session_id: session.map(|session| session.to_string()),
        flag_check_pending: Some(pending),
    }
}

/// A ListSignIns page (`pb::ListSignInsResponse`) written in its wire form one sign-in at a
/// time, as the rows are read. Fields go in field-number order and unset ones are left out,
/// as prost writes them, so the bytes are those of the message [`to_wire`] would build.
#[derive(Debug, Default)]
pub struct PageEncoder {
    page: Vec<u8>,
    /// The sign-in being written, and the embedded message being written inside it: each
    /// goes after its length, known only once it is written.
    sign_in: Vec<u8>,
    embedded: Vec<u8>,
}

impl PageEncoder {
    /// Appends `sign_in` to the page's `signIns`.
    pub fn push<S: AsRef<str>>(&mut self, sign_in: &SignIn<S>) {
        self.sign_in.clear();
        encode_sign_in(sign_in, &mut self.sign_in, &mut self.embedded);
        put_bytes(1, &self.sign_in, &mut self.page);
    }

    pub fn finish(mut self, next_page_token: Option<&str>) -> EncodedListSignInsResponse {
        put_text(2, next_page_token, &mut self.page);
        EncodedListSignInsResponse::new(self.page)
    }
}

/// `pb::SignIn`'s fields, in order; `embedded` is scratch space for its embedded messages.
fn encode_sign_in<S: AsRef<str>>(sign_in: &SignIn<S>, out: &mut Vec<u8>, embedded: &mut Vec<u8>) {
    put_guid(1, sign_in.id, out);
    embedded.clear();
    put_timestamp(sign_in.created_at, embedded);
    put_bytes(2, embedded, out);
    put_guid(3, sign_in.tenant_id, out);
    put_guid(4, sign_in.user_id, out);
    put_text(5, text(&sign_in.user_principal_name), out);
    put_text(6, text(&sign_in.user_display_name), out);
    put_text(7, text(&sign_in.user_type), out);
    put_text(8, text(&sign_in.app_id), out);
    put_text(9, text(&sign_in.app_display_name), out);
    put_text(10, text(&sign_in.resource_id), out);
    put_text(11, text(&sign_in.resource_display_name), out);
    put_text(12, text(&sign_in.ip_address), out);
    put_text(13, text(&sign_in.user_agent), out);
    put_text(14, text(&sign_in.client_app_used), out);
    put_text(15, text(&sign_in.correlation_id), out);
    put_bool(16, sign_in.is_interactive, out);
    put_text(17, text(&sign_in.conditional_access_status), out);

    embedded.clear();
    put_int32(1, sign_in.error_code, embedded);
    put_text(2, text(&sign_in.failure_reason), embedded);
    put_text(3, text(&sign_in.additional_details), embedded);
    put_text(4, Some(outcome(sign_in.error_code)), embedded);
    put_bytes(18, embedded, out);

    embedded.clear();
    put_text(1, text(&sign_in.device_id), embedded);
    put_text(2, text(&sign_in.browser_id), embedded);
    put_text(3, text(&sign_in.device_display_name), embedded);
    put_text(4, text(&sign_in.operating_system), embedded);
    put_text(5, text(&sign_in.browser), embedded);
    put_bool(6, sign_in.is_compliant, embedded);
    put_bool(7, sign_in.is_managed, embedded);
    put_text(8, text(&sign_in.trust_type), embedded);
    put_bytes(19, embedded, out);

    embedded.clear();
    put_text(1, text(&sign_in.city), embedded);
    put_text(2, text(&sign_in.state), embedded);
    put_text(3, text(&sign_in.country_or_region), embedded);
    put_bytes(20, embedded, out);

    put_text(21, text(&sign_in.risk_level_during_sign_in), out);
    put_text(22, text(&sign_in.risk_state), out);
    let (flagged, session, pending) = flag_fields(sign_in.flag);
    put_bool(23, Some(flagged), out);
    if let Some(session) = session {
        put_guid(24, session, out);
    }
    put_bool(25, Some(pending), out);
}

fn text<S: AsRef<str>>(value: &Option<S>) -> Option<&str> {
    value.as_ref().map(AsRef::as_ref)
}

/// A length-delimited field: a string, or an embedded message already written.
fn put_bytes(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    out.reserve(key_len(tag) + encoded_len_varint(value.len() as u64) + value.len());
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

fn put_text(tag: u32, value: Option<&str>, out: &mut Vec<u8>) {
    if let Some(value) = value {
        put_bytes(tag, value.as_bytes(), out);
    }
}

/// A GUID as the wire spells it: lowercase, hyphenated.
fn put_guid(tag: u32, value: Uuid, out: &mut Vec<u8>) {
    let mut text = Uuid::encode_buffer();
    put_bytes(
        tag,
        value.hyphenated().encode_lower(&mut text).as_bytes(),
        out,
    );
}

fn put_bool(tag: u32, value: Option<bool>, out: &mut Vec<u8>) {
    if let Some(value) = value {
        prost::encoding::bool::encode(tag, &value, out);
    }
}

/// A proto3 `int32`: left out when zero.
fn put_int32(tag: u32, value: i32, out: &mut Vec<u8>) {
    if value != 0 {
        prost::encoding::int32::encode(tag, &value, out);
    }
}

/// A `google.protobuf.Timestamp`'s fields.
fn put_timestamp(time: DateTime<Utc>, out: &mut Vec<u8>) {
    let timestamp = to_timestamp(time);
    if timestamp.seconds != 0 {
        prost::encoding::int64::encode(1, &timestamp.seconds, out);
    }
    put_int32(2, timestamp.nanos, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

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

    fn text() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            any::<String>().prop_map(Some)
        ]
    }

    prop_compose! {
        fn stored_sign_in()(
            ids in any::<[u128; 4]>(),
            texts in proptest::collection::vec(text(), 25),
            flags in proptest::collection::vec(proptest::option::of(any::<bool>()), 3),
            error_code in prop_oneof![Just(0), Just(50126), Just(-1), any::<i32>()],
            micros in -2_000_000_000_000_000i64..4_000_000_000_000_000,
            flag in 0..3u8,
        ) -> SignIn {
            let mut texts = texts.into_iter();
            let mut next = || texts.next().flatten();
            SignIn {
                id: Uuid::from_u128(ids[0]),
                created_at: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
                tenant_id: Uuid::from_u128(ids[1]),
                user_id: Uuid::from_u128(ids[2]),
                user_principal_name: next(),
                user_display_name: next(),
                user_type: next(),
                app_id: next(),
                app_display_name: next(),
                resource_id: next(),
                resource_display_name: next(),
                ip_address: next(),
                user_agent: next(),
                client_app_used: next(),
                correlation_id: next(),
                is_interactive: flags[0],
                conditional_access_status: next(),
                error_code,
                failure_reason: next(),
                additional_details: next(),
                device_id: next(),
                browser_id: next(),
                device_display_name: next(),
                operating_system: next(),
                browser: next(),
                is_compliant: flags[1],
                is_managed: flags[2],
                trust_type: next(),
                city: next(),
                state: next(),
                country_or_region: next(),
                risk_level_during_sign_in: next(),
                risk_state: next(),
                flag: match flag {
                    0 => FlagCheck::NotFlagged,
                    1 => FlagCheck::Flagged(Uuid::from_u128(ids[3])),
                    _ => FlagCheck::Pending,
                },
            }
        }
    }

    /// The same sign-in with its texts borrowed, as a page is written from database rows.
    fn borrowed(sign_in: &SignIn) -> SignIn<&str> {
        SignIn {
            id: sign_in.id,
            created_at: sign_in.created_at,
            tenant_id: sign_in.tenant_id,
            user_id: sign_in.user_id,
            user_principal_name: sign_in.user_principal_name.as_deref(),
            user_display_name: sign_in.user_display_name.as_deref(),
            user_type: sign_in.user_type.as_deref(),
            app_id: sign_in.app_id.as_deref(),
            app_display_name: sign_in.app_display_name.as_deref(),
            resource_id: sign_in.resource_id.as_deref(),
            resource_display_name: sign_in.resource_display_name.as_deref(),
            ip_address: sign_in.ip_address.as_deref(),
            user_agent: sign_in.user_agent.as_deref(),
            client_app_used: sign_in.client_app_used.as_deref(),
            correlation_id: sign_in.correlation_id.as_deref(),
            is_interactive: sign_in.is_interactive,
            conditional_access_status: sign_in.conditional_access_status.as_deref(),
            error_code: sign_in.error_code,
            failure_reason: sign_in.failure_reason.as_deref(),
            additional_details: sign_in.additional_details.as_deref(),
            device_id: sign_in.device_id.as_deref(),
            browser_id: sign_in.browser_id.as_deref(),
            device_display_name: sign_in.device_display_name.as_deref(),
            operating_system: sign_in.operating_system.as_deref(),
            browser: sign_in.browser.as_deref(),
            is_compliant: sign_in.is_compliant,
            is_managed: sign_in.is_managed,
            trust_type: sign_in.trust_type.as_deref(),
            city: sign_in.city.as_deref(),
            state: sign_in.state.as_deref(),
            country_or_region: sign_in.country_or_region.as_deref(),
            risk_level_during_sign_in: sign_in.risk_level_during_sign_in.as_deref(),
            risk_state: sign_in.risk_state.as_deref(),
            flag: sign_in.flag,
        }
    }

    proptest! {
        /// The page written field by field is byte for byte what prost writes for the
        /// messages `to_wire` builds, so any client decodes the same sign-ins.
        #[test]
        fn a_written_page_is_the_bytes_prost_writes_for_to_wire(
            sign_ins in proptest::collection::vec(stored_sign_in(), 0..4),
            token in proptest::option::of("[A-Za-z0-9_-]{0,40}"),
        ) {
            let mut page = PageEncoder::default();
            for sign_in in &sign_ins {
                page.push(&borrowed(sign_in));
            }
            let written = page.finish(token.as_deref());
            let expected = pb::ListSignInsResponse {
                sign_ins: sign_ins.into_iter().map(to_wire).collect(),
                next_page_token: token,
            };
            let encoded = expected.encode_to_vec();
            prop_assert_eq!(written.as_bytes(), encoded.as_slice());
            prop_assert_eq!(pb::ListSignInsResponse::decode(written.as_bytes())?, expected);
        }
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
