//! Compiles the contracts with protox (no system `protoc`), writes the descriptor set that
//! reflection serves (it carries the lowerCamelCase JSON names grpcurl prints), and generates
//! the prost messages and tonic clients and servers.

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
        .compile_fds(fds)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
