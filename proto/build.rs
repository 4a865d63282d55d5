//! Compiles the `.proto` contracts with the `protoc` shipped by `protoc-bin-vendored`,
//! so that no system package is needed, and writes the descriptor set that the services
//! serve through gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["bitmail/v1/mta.proto", "bitmail/v1/admin.proto", "bitmail/v1/lists.proto", "bitmail/v1/store.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .codec_path("crate::codec::BitmailCodec")
        .file_descriptor_set_path(out_dir.join("bitmail_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])?;
    Ok(())
}
