//! Catalogue of Microsoft Entra ID sign-in error codes (the AADSTS numbers that
//! appear as `status.errorCode` in a sign-in event).
//!
//! This module owns three things: the static table that maps a code to its
//! published failure reason and a help-desk hint, the lookup over it, and the
//! rule that turns a code into the sign-in's outcome.
//!
//! * `failure_reason` is Microsoft's published description of the code (from
//!   "Microsoft Entra authentication and authorization error codes"), with the
//!   internal PascalCase name and the `{placeholder}` parts left out, because
//!   that is what an analyst expects to see in `status.failureReason`.
//! * `additional_details` is our own short hint for the help desk: what the code
//!   usually means in practice and what to do about it.
//! * Code 0 is catalogued so that every recorded code can be looked up, but its
//!   `failure_reason` and `additional_details` are empty: the service leaves
//!   `failureReason` absent for a successful sign-in rather than inventing text.
//!
//! # Outcome rule
//!
//! * `0` is [`SignInOutcome::Success`].
//! * A catalogued code marked interrupted is [`SignInOutcome::Interrupted`]:
//!   interrupted means the sign-in stopped to ask the user for something (MFA,
//!   security-info registration, "keep me signed in", picking an account,
//!   confirming the app), not an error. Entra's sign-in logs count these apart
//!   from failures, and so do we.
//! * Every other non-zero code, catalogued or not, is [`SignInOutcome::Failure`].
//!   An unknown code must never be reported as harmless.

/// How a sign-in ended, as derived from its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    Success,
    Failure,
    Interrupted,
}

/// One catalogued sign-in error code.
#[derive(Debug, Clone, Copy)]
pub struct SignInError {
    pub code: i32,
    /// Microsoft's published description; empty only for code 0.
    pub failure_reason: &'static str,
    /// Short help-desk hint in our own words; empty only for code 0.
    pub additional_details: &'static str,
    pub outcome: SignInOutcome,
}

/// Finds the catalogue entry for `code`, if we know it.
pub fn lookup(code: i32) -> Option<&'static SignInError> {
    let table: &'static [SignInError] = CATALOGUE;
    table
        .binary_search_by_key(&code, |entry| entry.code)
        .ok()
        .and_then(|index| table.get(index))
}

/// Classifies a sign-in by its error code; see the module docs for the rule.
pub fn outcome(code: i32) -> SignInOutcome {
    if code == 0 {
        return SignInOutcome::Success;
    }
    match lookup(code) {
        Some(entry) if entry.outcome == SignInOutcome::Interrupted => SignInOutcome::Interrupted,
        _ => SignInOutcome::Failure,
    }
}

// Shorthand so each table row stays on a few lines; a const fn keeps the whole
// table evaluated at compile time.
const fn entry(
    code: i32,
    outcome: SignInOutcome,
    failure_reason: &'static str,
    additional_details: &'static str,
) -> SignInError {
    SignInError {
        code,
        failure_reason,
        additional_details,
        outcome,
    }
}

// Bare variant names keep each table row readable.
use SignInOutcome::{Failure, Interrupted, Success};

/// Every catalogued code, sorted ascending by `code` (checked at compile time)
/// so that [`lookup`] can binary-search it.
pub const CATALOGUE: &[SignInError] = &[
    entry(0, Success, "", ""),
    entry(
        16000,
        Interrupted,
        "Either multiple user identities are available for the current request or selected account is not supported for the scenario.",
        "The user was asked to pick an account, because several are signed in or the chosen one can't be used here. A normal interactive step; only worth a look if it repeats without a later success.",
    ),
    entry(
        50011,
        Failure,
        "The reply address is missing, misconfigured, or doesn't match reply addresses configured for the app.",
        "The app sent a redirect URI that isn't registered on its app registration. Not a user problem: the app owner must add the exact URI to the registration.",
    ),
    entry(
        50012,
        Failure,
        "Authentication failed.",
        "A certificate or signed client assertion presented during sign-in was rejected (untrusted, invalid, or badly signed). Check the certificate configuration of the app or the user's certificate.",
    ),
    entry(
        50020,
        Failure,
        "User account from identity provider does not exist in tenant and cannot access the application in that tenant.",
        "The user signed in with an account that is neither a member nor a guest of this tenant. Invite them as a guest, or have them sign in with their account in this tenant.",
    ),
    entry(
        50034,
        Failure,
        "The user account does not exist in the directory. To sign into this application, the account must be added to the directory.",
        "Usually a mistyped username. Many of these for different usernames from one source suggest username enumeration or password spraying.",
    ),
    entry(
        50053,
        Failure,
        "The account is locked because the user tried to sign in too many times with an incorrect user ID or password.",
        "Smart Lockout engaged, or the sign-in came from an IP address with known malicious activity. Look for a brute-force or password-spray pattern before helping the user; the lock lifts by itself after the lockout period.",
    ),
    entry(
        50055,
        Failure,
        "The password is expired.",
        "The user must change their password, through self-service password reset or an admin reset, before they can sign in.",
    ),
    entry(
        50056,
        Failure,
        "Invalid or null password: password doesn't exist in the directory for this user.",
        "No password is stored for this user, for example a new synced account whose password hash hasn't arrived yet. Have the user enter their password again; if it persists, check password hash synchronization.",
    ),
    entry(
        50057,
        Failure,
        "The user account is disabled.",
        "An admin disabled the account in Entra ID or in on-premises AD. Expected for people who left; repeated attempts on a disabled account can mean old credentials are being tried.",
    ),
    entry(
        50058,
        Interrupted,
        "Session information isn't sufficient for single-sign-on.",
        "A silent sign-in found no usable session, so the app has to ask the user to sign in interactively. Expected and harmless on its own.",
    ),
    entry(
        50059,
        Failure,
        "Tenant-identifying information wasn't found in either the request or implied by any provided credentials.",
        "The request didn't say which tenant to sign in to and Entra couldn't tell from the account. Usually an app or endpoint configuration problem rather than a user one.",
    ),
    entry(
        50072,
        Interrupted,
        "User needs to enroll for second factor authentication (interactive).",
        "The user was sent to register a second factor. Expected during onboarding; completing it shows up as a later successful sign-in.",
    ),
    entry(
        50074,
        Interrupted,
        "Strong authentication is required and the user did not pass the MFA challenge.",
        "The sign-in paused for an MFA challenge. A normal step; an MFA prompt the user says they didn't start means someone else may know their password.",
    ),
    entry(
        50076,
        Interrupted,
        "Due to a configuration change made by the admin such as a Conditional Access policy, per-user enforcement, or because you moved to a new location, the user must use multifactor authentication to access the resource.",
        "The password was accepted and a policy then asked for MFA. Normal when the user completes MFA next; repeated prompts from an unfamiliar location without completion deserve a look.",
    ),
    entry(
        50079,
        Interrupted,
        "Due to a configuration change made by the admin such as a Conditional Access policy, per-user enforcement, or because the user moved to a new location, the user is required to use multifactor authentication.",
        "The user has to register security info for MFA before continuing. Expected on the first sign-in after MFA is required for them.",
    ),
    entry(
        50089,
        Failure,
        "Authentication failed due to flow token expired.",
        "The user took too long on the sign-in pages and the sign-in flow expired. They only need to start the sign-in again.",
    ),
    entry(
        50097,
        Interrupted,
        "Device authentication is required.",
        "Entra asked the device to prove its identity for a device-based policy. Usually followed straight away by a successful sign-in from the same device.",
    ),
    entry(
        50105,
        Failure,
        "The signed in user isn't assigned to a role for the signed in app.",
        "The app requires assignment and this user isn't assigned. If they should have access, assign them (or a group they belong to) to the enterprise application.",
    ),
    entry(
        50125,
        Interrupted,
        "Sign-in was interrupted because of a password reset or password registration entry.",
        "The user was sent to a password reset or to self-service password reset registration. Expected; no action unless it keeps happening.",
    ),
    entry(
        50126,
        Failure,
        "Error validating credentials due to invalid username or password.",
        "Wrong password or username. A few are ordinary typos; many across different accounts from one source point to password spraying.",
    ),
    entry(
        50128,
        Failure,
        "No tenant-identifying information found in either the request or implied by any provided credentials.",
        "The domain in the sign-in name doesn't belong to any tenant, often a typo after the @. Check the username the user typed.",
    ),
    entry(
        50131,
        Failure,
        "Indicates various Conditional Access errors such as bad Windows device state, request blocked due to suspicious activity, access policy, or security policy decisions.",
        "A Conditional Access or security decision blocked the sign-in. The event's Conditional Access details show which policy; check the device state and any risk detections.",
    ),
    entry(
        50132,
        Failure,
        "The session isn't valid due to password expiration or recent password change.",
        "The user's password expired or changed, so their existing session no longer counts. They sign in again with the current password.",
    ),
    entry(
        50133,
        Failure,
        "The session isn't valid due to password expiration or recent password change.",
        "The session was revoked after the password changed or expired, for example after an admin reset. The user signs in again with the new password.",
    ),
    entry(
        50135,
        Failure,
        "Password change is required due to account risk.",
        "Identity Protection considers the user's credentials at risk and requires a secure password change. Treat the account as possibly compromised until that is done.",
    ),
    entry(
        50140,
        Interrupted,
        "This error occurred due to \"Keep me signed in\" interrupt when the user was signing-in.",
        "The user was asked whether to stay signed in on this browser. A routine prompt, not an error.",
    ),
    entry(
        50144,
        Failure,
        "User's Active Directory password has expired.",
        "The on-premises AD password expired. The user resets it through self-service password reset with writeback, or an admin resets it on-premises.",
    ),
    entry(
        50155,
        Failure,
        "Device authentication failed for this user.",
        "The device couldn't prove its identity, often because its registration was deleted or is broken. Check the device's join or registration state.",
    ),
    entry(
        50158,
        Interrupted,
        "External security challenge was not satisfied.",
        "The sign-in was handed to an external provider (external MFA or a custom control) and was waiting for it. Expected while the user completes that challenge.",
    ),
    entry(
        50173,
        Failure,
        "The provided grant has expired due to it being revoked, and a fresh auth token is needed.",
        "The user's tokens were revoked, by an admin or by the user (for example after a password change). The user signs in again.",
    ),
    entry(
        50199,
        Interrupted,
        "For security reasons, user confirmation is required for this request.",
        "The user was asked to confirm the app they are signing in to, common when a mobile app signs in through the browser. A routine prompt.",
    ),
    entry(
        51004,
        Failure,
        "The user account doesn't exist in the directory.",
        "The app sent the user to a tenant where they have no account. Add them as a guest there if they should have access.",
    ),
    entry(
        53000,
        Failure,
        "Conditional Access policy requires a compliant device, and the device isn't compliant.",
        "The device isn't enrolled in device management (such as Intune) or fails its compliance rules. The user enrolls the device or fixes what makes it non-compliant.",
    ),
    entry(
        53001,
        Failure,
        "Conditional Access policy requires a domain joined device, and the device isn't domain joined.",
        "This resource needs a corporate (hybrid) joined device. The user has to sign in from one.",
    ),
    entry(
        53002,
        Failure,
        "The app used isn't an approved app for Conditional Access.",
        "A policy only allows approved client apps, for example Outlook mobile instead of a built-in mail app. The user switches to an approved app.",
    ),
    entry(
        53003,
        Failure,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        "A blocking Conditional Access policy applied (location, platform, client app, risk). The event's Conditional Access details name the policy; unexpected blocks go to its owner.",
    ),
    entry(
        53004,
        Failure,
        "User needs to complete the multifactor authentication registration process before accessing this content.",
        "MFA registration was blocked because the account is considered risky, so the user can't add security info now. An admin must investigate and clear the risk first.",
    ),
    entry(
        53011,
        Failure,
        "User blocked due to risk on home tenant.",
        "The user's home tenant considers them risky, so access to this tenant was refused. The home tenant's admins must remediate the risk.",
    ),
    entry(
        65001,
        Failure,
        "The user or administrator hasn't consented to use the application.",
        "The app needs permissions nobody has consented to. The user consents when prompted, or an admin grants consent for the organization.",
    ),
    entry(
        70043,
        Failure,
        "The refresh token has expired or is invalid due to sign-in frequency checks by Conditional Access.",
        "A sign-in frequency policy requires the user to authenticate again. Expected under such a policy; the user signs in again.",
    ),
    entry(
        70046,
        Failure,
        "The session has expired or is invalid due to re-authentication checks by Conditional Access.",
        "A Conditional Access re-authentication check refused the existing session. Expected under sign-in frequency policies; the user signs in again.",
    ),
    entry(
        80012,
        Failure,
        "The users attempted to log on outside of the allowed hours (this is specified in AD).",
        "The on-premises AD account has logon-hour restrictions. Sign-in works again inside the allowed hours, or an AD admin changes them.",
    ),
    entry(
        81010,
        Failure,
        "Seamless SSO failed because the user's Kerberos ticket has expired or is invalid.",
        "Seamless single sign-on couldn't use the device's Kerberos ticket, so the user is normally asked for credentials instead. If it persists, check the Seamless SSO setup and the device's clock.",
    ),
    entry(
        90072,
        Failure,
        "The external account that the user signs in with doesn't exist on the tenant that they signed into; so the user can't satisfy the MFA requirements for the tenant.",
        "The external account isn't set up in this tenant, or a synced user's ImmutableID doesn't match. Add the account as an external user, or fix the source anchor mismatch.",
    ),
    entry(
        500011,
        Failure,
        "The resource principal wasn't found in the tenant.",
        "The app asked for an API that isn't installed in this tenant, or the request went to the wrong tenant. An admin adds or consents to the resource application.",
    ),
    entry(
        500121,
        Failure,
        "Authentication failed during strong authentication request.",
        "The MFA step failed: the user denied or ignored the prompt, entered a wrong code, or timed out. Denied prompts the user didn't start suggest someone else has their password (MFA fatigue).",
    ),
    entry(
        530032,
        Failure,
        "The tenant admin has configured a security policy that blocks this request.",
        "A tenant-level security policy blocked the request. Review the security policies configured for the tenant to see which one applies.",
    ),
    entry(
        530035,
        Failure,
        "Access has been blocked by security defaults.",
        "Security defaults blocked the request, typically legacy authentication (basic auth for IMAP, POP or SMTP) or a request judged unsafe. Move the client to modern authentication.",
    ),
    entry(
        700016,
        Failure,
        "The application wasn't found in the directory/tenant.",
        "The client ID in the request isn't known in this tenant: the app isn't installed, the ID is mistyped, or the request went to the wrong tenant. Check the app registration and tenant.",
    ),
    entry(
        700082,
        Failure,
        "The refresh token has expired due to inactivity.",
        "The app's refresh token went unused for too long (90 days by default). Expected; the user signs in again.",
    ),
    entry(
        7000215,
        Failure,
        "Invalid client secret is provided.",
        "An application, not a person, authenticated with a wrong or outdated client secret. The app owner updates the secret; repeated failures from unknown addresses may mean someone is trying the app's identity.",
    ),
];

// The binary search in `lookup` silently misses entries if the table is out of
// order, so an unsorted or duplicated code fails the build rather than a lookup.
const _: () = assert!(
    is_strictly_ascending(CATALOGUE),
    "CATALOGUE must be sorted by code without duplicates"
);

const fn is_strictly_ascending(table: &[SignInError]) -> bool {
    let mut index = 1;
    while index < table.len() {
        if table[index - 1].code >= table[index].code {
            return false;
        }
        index += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: &[i32] = &[
        0, 16000, 50011, 50020, 50034, 50053, 50055, 50056, 50057, 50058, 50072, 50074, 50076,
        50079, 50097, 50105, 50125, 50126, 50131, 50132, 50133, 50140, 50144, 50158, 50173, 51004,
        53000, 53001, 53002, 53003, 53004, 65001, 70043, 70046, 80012, 81010, 90072, 500011,
        500121, 530032, 530035, 700016, 7000215, 50012, 50089, 50199, 700082, 50059, 50128,
    ];

    const INTERRUPTS: &[i32] = &[
        16000, 50058, 50072, 50074, 50076, 50079, 50097, 50125, 50140, 50158, 50199,
    ];

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(CATALOGUE.windows(2).all(|pair| pair[0].code < pair[1].code));
    }

    #[test]
    fn table_has_at_least_45_entries() {
        assert!(CATALOGUE.len() >= 45, "only {} entries", CATALOGUE.len());
    }

    #[test]
    fn every_required_code_is_catalogued_with_text() {
        for &code in REQUIRED {
            let Some(found) = lookup(code) else {
                panic!("code {code} missing from the catalogue");
            };
            assert_eq!(found.code, code);
            if code != 0 {
                assert!(!found.failure_reason.is_empty(), "{code}: empty reason");
                assert!(
                    !found.additional_details.is_empty(),
                    "{code}: empty details"
                );
            }
        }
    }

    #[test]
    fn texts_are_single_clean_lines() {
        // The texts are shown verbatim in the API, so no placeholders or markup.
        for e in CATALOGUE {
            for text in [e.failure_reason, e.additional_details] {
                assert_eq!(text, text.trim(), "{}: stray whitespace", e.code);
                assert!(
                    !text.contains(['{', '}', '<', '>', '\n']),
                    "{}: {text}",
                    e.code
                );
            }
        }
    }

    #[test]
    fn success_entry_has_no_text() {
        let Some(success) = lookup(0) else {
            panic!("code 0 missing");
        };
        assert_eq!(success.outcome, SignInOutcome::Success);
        assert!(success.failure_reason.is_empty());
        assert!(success.additional_details.is_empty());
    }

    #[test]
    fn only_code_zero_is_success() {
        for e in CATALOGUE {
            assert_eq!(
                e.outcome == SignInOutcome::Success,
                e.code == 0,
                "{}",
                e.code
            );
        }
    }

    #[test]
    fn published_wording_for_well_known_codes() {
        let reason = |code| lookup(code).map(|e| e.failure_reason);
        assert_eq!(
            reason(50126),
            Some("Error validating credentials due to invalid username or password.")
        );
        assert_eq!(
            reason(50053),
            Some(
                "The account is locked because the user tried to sign in too many times with an incorrect user ID or password."
            )
        );
    }

    #[test]
    fn outcome_examples() {
        assert_eq!(outcome(0), SignInOutcome::Success);
        assert_eq!(outcome(50126), SignInOutcome::Failure);
        assert_eq!(outcome(50074), SignInOutcome::Interrupted);
        assert_eq!(outcome(50140), SignInOutcome::Interrupted);
        assert_eq!(outcome(12345), SignInOutcome::Failure);
        assert_eq!(outcome(-1), SignInOutcome::Failure);
    }

    #[test]
    fn interrupts_are_exactly_the_documented_set() {
        for e in CATALOGUE {
            let expected = if e.code == 0 {
                SignInOutcome::Success
            } else if INTERRUPTS.contains(&e.code) {
                SignInOutcome::Interrupted
            } else {
                SignInOutcome::Failure
            };
            assert_eq!(outcome(e.code), expected, "{}", e.code);
        }
    }

    #[test]
    fn failures_that_look_like_prompts_stay_failures() {
        // Password expiry, Conditional Access blocks and a failed MFA attempt
        // are real failures even though the user may be prompted afterwards.
        for code in [50055, 50144, 53000, 53003, 53004, 81010, 500121] {
            assert_eq!(outcome(code), SignInOutcome::Failure, "{code}");
        }
    }

    #[test]
    fn lookup_of_unknown_code_is_none() {
        assert!(lookup(12345).is_none());
        assert!(lookup(-1).is_none());
        assert!(lookup(i32::MAX).is_none());
        assert!(lookup(i32::MIN).is_none());
    }

    #[test]
    fn lookup_finds_first_and_last_entries() {
        for e in [CATALOGUE.first(), CATALOGUE.last()].into_iter().flatten() {
            assert_eq!(lookup(e.code).map(|found| found.code), Some(e.code));
        }
    }
}
