//! Every image `cargo xtask images` writes starts its program from its own root file
//! system: the libraries `ldd` named, with the loader where the binary looks for it.
//! (The real-node test runs agent, scorer, shim, bench and kube-scheduler as pods; this
//! covers the PCM sidecar too, which needs an Intel host's registers to do more.)

use std::path::Path;
use std::process::Command;

use fitsched_e2e::images::{self, Inputs};
use fitsched_e2e::{kube_bins, paths};

/// The archive's one layer, unpacked into `root`.
fn unpack(archive: &Path, root: &Path) {
    let outer = std::fs::read(archive).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(outer.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.insert(entry.path().unwrap().to_string_lossy().into_owned(), bytes);
    }
    let blob = |digest: &str| files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))].clone();
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    tar::Archive::new(layer.as_slice()).unpack(root).unwrap();
}

#[test]
#[ignore = "builds every image from the debug binaries, Debian packages and ../shared/kube, and chroots (root): cargo xtask test"]
fn every_image_starts_its_program() {
    let inputs = Inputs::from_checkout(paths::bin_dir(), kube_bins::locate(None).unwrap()).unwrap();
    let dir = paths::target_dir().join("images-test");
    let _ = std::fs::remove_dir_all(&dir);
    for image in images::definitions(&inputs, &[]).unwrap() {
        let written = images::write_archive(&image, &dir).unwrap();
        let root = dir.join(image.file_name.trim_end_matches(".tar"));
        unpack(&written.path, &root);
        let (program, arg) = match image.file_name.as_str() {
            "fitsched-agent.tar" => ("/usr/local/bin/fitsched-agent", "--version"),
            "fitsched-scorer.tar" => ("/usr/local/bin/fitsched-scorer", "--version"),
            "fitsched-shim.tar" => ("/usr/local/bin/fitsched-shim", "--version"),
            "fitsched-pcm.tar" => ("/usr/sbin/pcm-sensor-server", "--help"),
            "fitsched-bench.tar" => ("/usr/sbin/nginx", "-v"),
            "kube-scheduler.tar" => ("/usr/local/bin/kube-scheduler", "--version"),
            other => panic!("no check for {other}"),
        };
        let out =
            Command::new("chroot").arg("--userspec=65532:65532").arg(&root).args([program, arg]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() || (program.contains("pcm") && text.contains("Usage")),
            "{program} {arg} in {}: {}\n{text}",
            written.reference,
            out.status
        );
        assert!(!text.contains("error while loading shared libraries"), "{}: {text}", written.reference);
        if image.file_name == "fitsched-bench.tar" {
            // The wrk loop's shell and the tools it calls.
            for argv in [&["/usr/bin/wrk", "--version"][..], &["/bin/sh", "-c", "date && sleep 0"][..]] {
                let out = Command::new("chroot").arg(&root).args(argv).output().unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(!text.contains("error while loading") && !text.contains("not found"), "{argv:?}: {text}");
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
