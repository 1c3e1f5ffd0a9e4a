//! The sign-in domain: events, the `$filter` language, the error-code catalogue and
//! user-agent parsing used to enrich events.

pub mod filter;
pub mod filter_fuzz;
pub mod sign_in;
pub mod sign_in_errors;
pub mod user_agent;
