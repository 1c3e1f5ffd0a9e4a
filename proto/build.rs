//! Compiles the contracts with protox (no system `protoc`), writes the descriptor set that
//! reflection serves (it carries the lowerCamelCase JSON names grpcurl prints), and generates
//! the prost messages and tonic clients and servers.
//!
//! SignInService's server is generated a second time, into `OUT_DIR/encoded`, with every
//! message taken from the first generation except ListSignInsResponse, which there is
//! [`EncodedListSignInsResponse`](src/encoded.rs): bytes already in that message's wire form, so
//! query-service can write a page straight from the database rows. Clients see one contract.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &["signins/flag/v1/flag.proto", "signins/query/v1/query.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor_set.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds.clone())?;

    let encoded = out.join("encoded");
    std::fs::create_dir_all(&encoded)?;
    let mut query_only = fds;
    query_only
        .file
        .retain(|file| file.package() == "signins.query.v1");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&encoded)
        .extern_path(".signins.query.v1", "crate::query::v1")
        .extern_path(
            ".signins.query.v1.ListSignInsResponse",
            "crate::encoded::EncodedListSignInsResponse",
        )
        .compile_fds(query_only)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
