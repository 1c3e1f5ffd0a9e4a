//! Enrichment of a sign-in on its way in, for what can be derived without asking anyone: the
//! failure reason of its error code, and browser and operating system from its user agent.
//! The flag comes from flag-service, through [`crate::flag_client`].

use crate::domain::sign_in::SignIn;
use crate::domain::{sign_in_errors, user_agent};

/// Fills what the gateway left out; values the gateway sent are kept as they are.
pub fn describe(sign_in: &mut SignIn) {
    if sign_in.error_code != 0 && sign_in.failure_reason.is_none() {
        if let Some(error) = sign_in_errors::lookup(sign_in.error_code) {
            sign_in.failure_reason = non_empty(error.failure_reason);
            if sign_in.additional_details.is_none() {
                sign_in.additional_details = non_empty(error.additional_details);
            }
        }
    }
    if sign_in.browser.is_none() || sign_in.operating_system.is_none() {
        if let Some(agent) = sign_in.user_agent.as_deref() {
            let parsed = user_agent::parse(agent);
            if sign_in.browser.is_none() {
                sign_in.browser = parsed.browser;
            }
            if sign_in.operating_system.is_none() {
                sign_in.operating_system = parsed.operating_system;
            }
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogued_failure_gets_its_reason_and_the_agent_its_browser() {
        let mut sign_in = SignIn {
            error_code: 50126,
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0".into()),
            ..SignIn::default()
        };
        describe(&mut sign_in);
        assert!(
            sign_in
                .failure_reason
                .as_deref()
                .unwrap_or_default()
                .contains("invalid username or password")
        );
        assert_eq!(sign_in.browser.as_deref(), Some("Edge 131"));
        assert_eq!(sign_in.operating_system.as_deref(), Some("Windows 10"));
    }

    #[test]
    fn what_the_gateway_sent_is_kept() {
        let mut sign_in = SignIn {
            error_code: 50126,
            failure_reason: Some("custom".into()),
            browser: Some("Other".into()),
            ..SignIn::default()
        };
        describe(&mut sign_in);
        assert_eq!(sign_in.failure_reason.as_deref(), Some("custom"));
        assert_eq!(sign_in.browser.as_deref(), Some("Other"));
    }
}
