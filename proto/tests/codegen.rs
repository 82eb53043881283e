//! Regenerates the committed Rust code and descriptor set from the `.proto` files and
//! fails when they differ, so that the generated code can never drift from its source.
//! On a difference the new files are left in place: review them and commit.

use std::path::{Path, PathBuf};

#[test]
fn generated_code_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = root.join("src/generated");
    let out = tempdir();

    let fds = protox::compile(["fitsched/v1/fitsched.proto"], [root]).expect("protox compiles the .proto files");
    // compile_fds does not write the descriptor set itself; reflection needs it encoded.
    std::fs::write(out.join("fitsched_v1_descriptor.bin"), prost::Message::encode_to_vec(&fds))
        .expect("write descriptor set");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("tonic-prost-build generates code");

    let mut stale = Vec::new();
    for name in ["fitsched.v1.rs", "fitsched_v1_descriptor.bin"] {
        let fresh = std::fs::read(out.join(name)).expect("generated file exists");
        let committed_path = generated.join(name);
        if std::fs::read(&committed_path).ok().as_deref() != Some(&fresh[..]) {
            std::fs::write(&committed_path, &fresh).expect("write regenerated file");
            stale.push(name);
        }
    }
    std::fs::remove_dir_all(&out).ok();
    assert!(stale.is_empty(), "generated code was stale and has been rewritten: {stale:?}; commit it");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fitsched-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
