//! The wire contracts of flagged sign-ins, shared by both services, their clients and tests.
//!
//! Proto types are the wire; each service converts them into validated domain types at its
//! edge. `FILE_DESCRIPTOR_SET` is what server reflection serves.
#![allow(unreachable_pub, clippy::all)]

/// The encoded descriptor set of every contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

pub mod flag {
    pub mod v1 {
        tonic::include_proto!("signins.flag.v1");
    }
}

pub mod query {
    pub mod v1 {
        tonic::include_proto!("signins.query.v1");
    }
}

pub mod encoded;

pub use prost_types::{Duration, Timestamp};
