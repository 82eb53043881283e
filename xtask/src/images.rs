//! `cargo xtask images`: an OCI image archive per image (`fitsched_e2e::images` defines
//! them), for clusters without a registry: `ctr -n k8s.io images import`, `kind load
//! image-archive`, `docker load`.

use std::path::PathBuf;
use std::time::Instant;

use fitsched_e2e::images::{self, Inputs};
use fitsched_e2e::{kube_bins, paths, progress, tools};

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Where the archives go. Default: `<target>/images/<profile>`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The cargo profile the fitsched binaries are built with (`debug` builds faster,
    /// for tests).
    #[arg(long, default_value = "release", value_parser = ["release", "debug"])]
    profile: String,
    /// Only these images (comma-separated; default all).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Where the Kubernetes binaries are (for the kube-scheduler image).
    #[arg(long, value_name = "DIR", env = "FITSCHED_KUBE_BIN")]
    kube_bin: Option<PathBuf>,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let written = build(&args.profile, args.out, &args.only, args.kube_bin.as_deref())?;
    println!("{:<50} {:>9}  {:<71}  file", "image", "MiB", "digest");
    for w in &written {
        println!("{:<50} {:>9.1}  {:<71}  {}", w.reference, w.bytes as f64 / 1048576.0, w.digest, w.path.display());
    }
    progress(format!("{} image archives in {:.0?}", written.len(), started.elapsed()));
    Ok(())
}

/// Builds the binaries with `profile`, then writes the archives.
pub fn build(
    profile: &str,
    out: Option<PathBuf>,
    only: &[String],
    kube_bin: Option<&std::path::Path>,
) -> anyhow::Result<Vec<images::Written>> {
    let mut cargo_args = vec!["build", "--bin", "fitsched-agent", "--bin", "fitsched-scorer", "--bin", "fitsched-shim"];
    if profile == "release" {
        cargo_args.push("--release");
    }
    tools::cargo(&cargo_args)?;
    let inputs = Inputs::from_checkout(paths::target_dir().join(profile), kube_bins::locate(kube_bin)?)?;
    let out = out.unwrap_or_else(|| paths::target_dir().join("images").join(profile));
    let mut written = Vec::new();
    for image in images::definitions(&inputs, only)? {
        progress(format!("writing {} ({})", image.file_name, image.reference));
        written.push(images::write_archive(&image, &out)?);
    }
    Ok(written)
}
