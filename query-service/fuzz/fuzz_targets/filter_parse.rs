//! Fuzzes the `$filter` parser: whatever bytes arrive, parsing never panics and either
//! succeeds or fails with a position inside (or just past) the input. The contract itself is
//! `query_service::domain::filter_fuzz::check`, shared with the CI-sized unit test.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A filter arrives as a protobuf `string`, which is UTF-8 by definition: other bytes never
    // reach the parser.
    if let Ok(input) = std::str::from_utf8(data) {
        if let Err(broken) = query_service::domain::filter_fuzz::check(input) {
            panic!("{broken}\ninput: {input:?}");
        }
    }
});
