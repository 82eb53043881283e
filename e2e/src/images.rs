//! fitsched's container images as OCI image archives, built from files on this machine:
//! no Docker daemon, no registry, no base image to pull.
//!
//! [`definitions`] is the one definition of each image: the binary, the shared libraries
//! `ldd` says it loads (with the host's symlinks, so the dynamic loader finds them where
//! it looks), CA certificates, and a non-root user (65532, as distroless' `nonroot`).
//! [`write_archive`] writes one image as an OCI image layout in a tar (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) with a Docker `manifest.json` beside it, so
//! `ctr images import`, `kind load image-archive`, `docker load` and `podman load` all
//! take it. One uncompressed layer: the archive is reproducible (entries sorted, owners
//! and times fixed, JSON keys in a fixed order), so the same inputs give the same bytes
//! and the same digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use serde_json::json;

use crate::tools;

/// The user every image runs as, as distroless' `nonroot`.
pub const NONROOT: u32 = 65532;

/// Every entry's modification time: fixed, so rebuilding changes no byte.
const MTIME: u64 = 0;

/// Where the fitsched binaries' images are published; the chart's default repositories.
pub const REGISTRY: &str = "ghcr.io/fitsched";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a file in the image holds.
#[derive(Debug, Clone)]
enum Content {
    /// A host file's bytes, with its permission bits.
    Host(PathBuf),
    Bytes(Vec<u8>, u32),
    Symlink(String),
    Dir(u32),
}

#[derive(Debug, Clone)]
struct Entry {
    content: Content,
    owner: u32,
}

/// One image: its name, its files and how it runs.
#[derive(Debug, Clone)]
pub struct Image {
    /// `repository:tag`.
    pub reference: String,
    /// The archive's file name (`fitsched-scorer.tar`).
    pub file_name: String,
    /// Keyed by path without the leading `/`: entries sorted, each path once.
    entries: BTreeMap<String, Entry>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    ports: Vec<u16>,
    /// `uid:gid` the image runs as when the pod does not say.
    user: String,
    labels: BTreeMap<String, String>,
}

impl Image {
    /// An image with the root layout of a merged-`/usr` Debian (`/bin`, `/lib`, `/lib64`,
    /// `/sbin` link into `/usr`, as on the host the libraries come from), `/etc/passwd`
    /// and `/etc/group` naming root and `nonroot`, `/tmp` and `nonroot`'s home.
    pub fn new(repository: &str, tag: &str, title: &str, description: &str) -> Image {
        let mut image = Image {
            reference: format!("{repository}:{tag}"),
            file_name: format!("{}.tar", repository.rsplit('/').next().unwrap_or(repository)),
            entries: BTreeMap::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec![PATH_ENV.into()],
            ports: Vec::new(),
            user: format!("{NONROOT}:{NONROOT}"),
            labels: BTreeMap::new(),
        };
        for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")] {
            image.put(link, Content::Symlink(target.into()), 0);
        }
        image.bytes(
            "/etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
            0o644,
        );
        image.bytes("/etc/group", "root:x:0:\nnonroot:x:65532:\n", 0o644);
        image.put("tmp", Content::Dir(0o1777), 0);
        image.put("home/nonroot", Content::Dir(0o700), NONROOT);
        for (key, value) in [
            ("org.opencontainers.image.title", title),
            ("org.opencontainers.image.description", description),
            ("org.opencontainers.image.version", tag),
            ("org.opencontainers.image.source", "https://github.com/fitsched/fitsched"),
            ("org.opencontainers.image.licenses", "Apache-2.0"),
        ] {
            image.labels.insert(key.into(), value.into());
        }
        image
    }

    fn put(&mut self, path: &str, content: Content, owner: u32) {
        self.entries.insert(path.trim_start_matches('/').to_owned(), Entry { content, owner });
    }

    /// Adds `bytes` at `path`.
    pub fn bytes(&mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.put(path, Content::Bytes(bytes.into(), mode), 0);
        self
    }

    /// Adds the host file `host` at `path` (its permission bits kept).
    pub fn file(&mut self, path: &str, host: &Path) -> &mut Self {
        self.put(path, Content::Host(host.to_owned()), 0);
        self
    }

    /// Adds a symbolic link at `path`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.put(path, Content::Symlink(target.into()), 0);
        self
    }

    /// Adds every file under the host's folder `dir`, at the same paths.
    pub fn tree(&mut self, dir: &Path) -> anyhow::Result<&mut Self> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                self.tree(&path)?;
            } else {
                self.file(&path.to_string_lossy(), &path);
            }
        }
        Ok(self)
    }

    /// Adds the ELF file `host` at `path` and every shared library it loads.
    pub fn program(&mut self, path: &str, host: &Path) -> anyhow::Result<&mut Self> {
        self.file(path, host);
        self.libraries_of(host)?;
        Ok(self)
    }

    /// Adds the shared libraries `elf` loads, each at the host's path of it, with the
    /// symlinks on the way (`/lib64/ld-linux-x86-64.so.2` through `lib64 -> usr/lib64`
    /// and on to the file): the loader and the libraries' own `DT_NEEDED` names resolve
    /// in the image as on the host.
    pub fn libraries_of(&mut self, elf: &Path) -> anyhow::Result<&mut Self> {
        for lib in shared_libraries(elf)? {
            self.host_path(&lib, 0)?;
        }
        Ok(self)
    }

    /// Adds the host's `path`, replicating each symlink met while resolving it.
    fn host_path(&mut self, path: &Path, depth: usize) -> anyhow::Result<()> {
        ensure!(depth < 40, "too many symlinks resolving {}", path.display());
        let mut prefix = PathBuf::from("/");
        let components: Vec<Component<'_>> = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        for (i, component) in components.iter().enumerate() {
            prefix.push(component);
            let meta = std::fs::symlink_metadata(&prefix).with_context(|| format!("reading {}", prefix.display()))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&prefix)?;
                let key = prefix.to_string_lossy().into_owned();
                // Keep an existing entry: the root layout's links are the image's own.
                if !self.entries.contains_key(key.trim_start_matches('/')) {
                    self.put(&key, Content::Symlink(target.to_string_lossy().into_owned()), 0);
                }
                let mut resolved = prefix.parent().unwrap_or(Path::new("/")).join(&target);
                resolved.extend(&components[i + 1..]);
                return self.host_path(&normalize(&resolved), depth + 1);
            }
        }
        ensure!(std::fs::metadata(path)?.is_file(), "{} is not a regular file", path.display());
        self.put(&path.to_string_lossy(), Content::Host(path.to_owned()), 0);
        Ok(())
    }

    pub fn entrypoint(&mut self, argv: &[&str]) -> &mut Self {
        self.entrypoint = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn cmd(&mut self, argv: &[&str]) -> &mut Self {
        self.cmd = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.push(format!("{name}={value}"));
        self
    }

    /// Runs as root unless the pod says otherwise.
    pub fn as_root(&mut self) -> &mut Self {
        self.user = "0:0".into();
        self
    }

    pub fn port(&mut self, port: u16) -> &mut Self {
        self.ports.push(port);
        self
    }

    /// The image's paths, sorted (for tests and listings).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The root file system as one tar: every parent directory written before its
    /// children, owners and times fixed.
    fn layer(&self) -> anyhow::Result<Vec<u8>> {
        let mut dirs: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for (path, entry) in &self.entries {
            let mut parent = Path::new(path).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.entry(p.to_string_lossy().into_owned()).or_insert((0o755, 0));
                parent = p.parent();
            }
            if let Content::Dir(mode) = entry.content {
                dirs.insert(path.clone(), (mode, entry.owner));
            }
        }
        // Directories and files in one sorted walk: a parent sorts before its children.
        let mut all: BTreeMap<&str, Option<&Entry>> = dirs.keys().map(|d| (d.as_str(), None)).collect();
        for (path, entry) in &self.entries {
            if !matches!(entry.content, Content::Dir(_)) {
                ensure!(!dirs.contains_key(path), "{path} is both a directory and a file");
                all.insert(path.as_str(), Some(entry));
            }
        }
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in all {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(MTIME);
            match entry {
                None => {
                    let (mode, owner) = dirs[path];
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(mode);
                    header.set_uid(owner.into());
                    header.set_gid(owner.into());
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Some(entry) => {
                    header.set_uid(entry.owner.into());
                    header.set_gid(entry.owner.into());
                    match &entry.content {
                        Content::Symlink(target) => {
                            header.set_entry_type(tar::EntryType::Symlink);
                            header.set_mode(0o777);
                            header.set_size(0);
                            tar.append_link(&mut header, path, target)?;
                        }
                        Content::Bytes(bytes, mode) => {
                            file_header(&mut header, *mode, bytes.len());
                            tar.append_data(&mut header, path, bytes.as_slice())?;
                        }
                        Content::Host(host) => {
                            use std::os::unix::fs::PermissionsExt;
                            let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
                            // Executable or not, readable by all: the build's umask does not
                            // reach the image (nor its digest).
                            let executable = std::fs::metadata(host)?.permissions().mode() & 0o111 != 0;
                            file_header(&mut header, if executable { 0o755 } else { 0o644 }, bytes.len());
                            tar.append_data(&mut header, path, bytes.as_slice())?;
                        }
                        Content::Dir(_) => unreachable!("directories are walked from `dirs`"),
                    }
                }
            }
        }
        Ok(tar.into_inner()?)
    }
}

fn file_header(header: &mut tar::Header, mode: u32, len: usize) {
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_size(len as u64);
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The absolute paths of the shared libraries `elf` loads, the dynamic loader included;
/// none for a static executable.
pub fn shared_libraries(elf: &Path) -> anyhow::Result<Vec<PathBuf>> {
    // As the loader in the image will resolve them: not through a library path that
    // cargo or the caller set for themselves.
    let out = Command::new("ldd").arg(elf).env_remove("LD_LIBRARY_PATH").output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {err}", elf.display());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", elf.display()))
}

fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        ensure!(!line.contains("not found"), "a library is missing: {line}");
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)`;
        // the vDSO (`linux-vdso.so.1 (0x…)`) is the kernel's and has no file.
        let path = line.split_once("=> ").map_or(line, |(_, p)| p);
        let path = path.split(" (").next().unwrap_or(path).trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What [`write_archive`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub reference: String,
    /// The manifest's digest: what `ctr images ls` and a registry name the image by.
    pub digest: String,
    pub bytes: u64,
}

/// Writes `image` as `dir/<file name>`.
pub fn write_archive(image: &Image, dir: &Path) -> anyhow::Result<Written> {
    let layer = image.layer()?;
    let layer_digest = sha256(&layer);
    let exposed: serde_json::Map<String, serde_json::Value> =
        image.ports.iter().map(|p| (format!("{p}/tcp"), json!({}))).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": image.user,
            "Entrypoint": image.entrypoint,
            "Cmd": image.cmd,
            "Env": image.env,
            "WorkingDir": "/",
            "ExposedPorts": exposed,
            "Labels": image.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "cargo xtask images"}],
    }))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))?;
    let manifest_digest = sha256(&manifest);
    let tag = image.reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            // containerd names the image by the first, the OCI tools by the second.
            "annotations": {"io.containerd.image.name": image.reference, "org.opencontainers.image.ref.name": tag},
        }],
    }))?;
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": blob(&config_digest),
        "RepoTags": [image.reference],
        "Layers": [blob(&layer_digest)],
    }]))?;

    std::fs::create_dir_all(dir)?;
    let path = dir.join(&image.file_name);
    let tmp = dir.join(format!(".{}.partial", image.file_name));
    let mut out = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
    let dirs = ["blobs/", "blobs/sha256/"];
    for d in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(MTIME);
        header.set_size(0);
        out.append_data(&mut header, d, std::io::empty())?;
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let files: [(String, &[u8]); 6] = [
        (blob(&config_digest), &config),
        (blob(&layer_digest), &layer),
        (blob(&manifest_digest), &manifest),
        ("index.json".into(), &index),
        ("manifest.json".into(), &docker_manifest),
        ("oci-layout".into(), layout),
    ];
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        file_header(&mut header, 0o644, bytes.len());
        out.append_data(&mut header, name, bytes)?;
    }
    out.into_inner()?.flush()?;
    std::fs::rename(&tmp, &path)?;
    let bytes = std::fs::metadata(&path)?.len();
    Ok(Written { path, reference: image.reference.clone(), digest: manifest_digest, bytes })
}

/// Where each image's files come from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `fitsched-agent`, `fitsched-scorer` and `fitsched-shim`.
    pub bin_dir: PathBuf,
    /// ONNX Runtime's shared library (the onnxruntime wheel's).
    pub onnxruntime: PathBuf,
    /// The scorer's default model.
    pub model: PathBuf,
    /// The Kubernetes binaries' folder (`kube-scheduler`).
    pub kube_bin: PathBuf,
    /// The version tag of fitsched's images (the chart's `appVersion`).
    pub version: String,
    /// The kube-scheduler image's tag.
    pub kube_version: String,
    /// `images/bench`: nginx's configuration, its page and the wrk loop.
    pub bench_dir: PathBuf,
}

impl Inputs {
    /// The inputs of this checkout: binaries from `bin_dir`, ONNX Runtime from the
    /// project venv, nginx, wrk and busybox from Debian (installed when missing).
    pub fn from_checkout(bin_dir: PathBuf, kube_bin: PathBuf) -> anyhow::Result<Inputs> {
        tools::ensure_debian_tools(&[
            ("nginx", "nginx"),
            ("wrk", "wrk"),
            ("ldd", "libc-bin"),
            ("pcm-sensor-server", "pcm"),
        ])?;
        tools::ensure_debian_file(Path::new(BUSYBOX), "busybox-static")?;
        tools::ensure_debian_file(Path::new(CA_CERTIFICATES), "ca-certificates")?;
        let root = crate::paths::workspace_root();
        Ok(Inputs {
            bin_dir,
            onnxruntime: tools::ensure_venv()?.onnxruntime_library()?,
            model: root.join("onnx/fitness.onnx"),
            kube_bin,
            version: chart_app_version(&root.join("charts/fitsched/Chart.yaml"))?,
            kube_version: crate::kube_bins::KUBE_VERSION.to_owned(),
            bench_dir: root.join("images/bench"),
        })
    }
}

const BUSYBOX: &str = "/bin/busybox";
const CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The chart's `appVersion`: the tag its values default to.
pub fn chart_app_version(chart_yaml: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(chart_yaml).with_context(|| format!("reading {}", chart_yaml.display()))?;
    let chart: serde_json::Value = serde_saphyr::from_str(&text)?;
    chart["appVersion"].as_str().map(str::to_owned).context("Chart.yaml has no appVersion")
}

/// The names [`definitions`] builds, in its order, with their repositories.
pub const NAMES: &[&str] =
    &["fitsched-agent", "fitsched-scorer", "fitsched-shim", "fitsched-pcm", "fitsched-bench", "kube-scheduler"];

/// The repository an image of [`NAMES`] is published as.
pub fn repository(name: &str) -> String {
    if name == "kube-scheduler" { KUBE_SCHEDULER_REPOSITORY.to_owned() } else { format!("{REGISTRY}/{name}") }
}

/// The upstream name: the chart's scheduler image defaults to
/// `registry.k8s.io/kube-scheduler:<the cluster's version>`.
const KUBE_SCHEDULER_REPOSITORY: &str = "registry.k8s.io/kube-scheduler";

/// Every image, defined once. `only`: the names to build (all when empty).
pub fn definitions(inputs: &Inputs, only: &[String]) -> anyhow::Result<Vec<Image>> {
    for name in only {
        ensure!(NAMES.contains(&name.as_str()), "no image named {name} (images: {})", NAMES.join(", "));
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let v = &inputs.version;
    let mut images = Vec::new();
    let fitsched = |name: &str, description: &str| {
        let mut image = Image::new(&repository(name), v, name, description);
        image.file(CA_CERTIFICATES, Path::new(CA_CERTIFICATES));
        image
    };
    if wanted("fitsched-agent") {
        let mut image = fitsched(
            "fitsched-agent",
            "fitsched node agent: perf, PCM, procfs, PSI and cgroup windows streamed to the scorer",
        );
        image
            .program("/usr/local/bin/fitsched-agent", &inputs.bin_dir.join("fitsched-agent"))?
            .entrypoint(&["/usr/local/bin/fitsched-agent"])
            .port(9100);
        images.push(image);
    }
    if wanted("fitsched-scorer") {
        let mut image = fitsched(
            "fitsched-scorer",
            "fitsched scorer: node windows in, ONNX fitness and strategy scores out over gRPC",
        );
        image
            .program("/usr/local/bin/fitsched-scorer", &inputs.bin_dir.join("fitsched-scorer"))?
            // Loaded at run time (ort's `load-dynamic`), so ldd of the scorer does not name it.
            .program("/usr/lib/fitsched/libonnxruntime.so", &inputs.onnxruntime)?
            .file("/usr/share/fitsched/fitness.onnx", &inputs.model)
            .env("ORT_DYLIB_PATH", "/usr/lib/fitsched/libonnxruntime.so")
            .env("FITSCHED_MODEL", "/usr/share/fitsched/fitness.onnx")
            .entrypoint(&["/usr/local/bin/fitsched-scorer"])
            .port(50051)
            .port(9090);
        images.push(image);
    }
    if wanted("fitsched-shim") {
        let mut image = fitsched(
            "fitsched-shim",
            "fitsched kube-scheduler extender: filter, prioritize, bind over HTTP, answered by the scorer",
        );
        image
            .program("/usr/local/bin/fitsched-shim", &inputs.bin_dir.join("fitsched-shim"))?
            .entrypoint(&["/usr/local/bin/fitsched-shim"])
            .port(8080);
        images.push(image);
    }
    if wanted("fitsched-pcm") {
        // Intel PCM from Debian; it reads model-specific registers, so the chart runs it
        // as root in a privileged container whatever the image's user.
        let mut image = fitsched("fitsched-pcm", "Intel PCM pcm-sensor-server from Debian, the agent's PCM sidecar");
        image
            .program("/usr/sbin/pcm-sensor-server", Path::new("/usr/sbin/pcm-sensor-server"))?
            .tree(Path::new("/usr/share/pcm"))?
            .entrypoint(&["pcm-sensor-server"])
            .cmd(&["-p", "9738"])
            .port(9738);
        images.push(image);
    }
    if wanted("fitsched-bench") {
        let mut image = fitsched(
            "fitsched-bench",
            "nginx + wrk benchmark workload for comparing fitsched with the default scheduler",
        );
        let bench = &inputs.bench_dir;
        image
            .program("/usr/sbin/nginx", Path::new("/usr/sbin/nginx"))?
            .program("/usr/bin/wrk", Path::new("/usr/bin/wrk"))?
            // The wrk loop is a shell script: busybox gives it `sh`, `date` and `sleep`.
            .program("/usr/bin/busybox", Path::new(BUSYBOX))?
            .file("/etc/fitsched-bench/nginx.conf", &bench.join("nginx.conf"))
            .file("/usr/share/fitsched-bench/index.html", &bench.join("index.html"))
            .file("/usr/local/bin/fitsched-bench-wrk", &bench.join("fitsched-bench-wrk"))
            .cmd(&["nginx", "-e", "stderr", "-c", "/etc/fitsched-bench/nginx.conf"])
            .port(8080);
        for applet in ["sh", "date", "sleep"] {
            image.symlink(&format!("/usr/bin/{applet}"), "busybox");
        }
        images.push(image);
    }
    if wanted("kube-scheduler") {
        // The tested binary under the upstream name: the chart's scheduler image defaults
        // to `registry.k8s.io/kube-scheduler:<the cluster's version>`.
        let mut image = Image::new(
            KUBE_SCHEDULER_REPOSITORY,
            &inputs.kube_version,
            "kube-scheduler",
            "kube-scheduler, built from the Kubernetes source fitsched is tested with",
        );
        image
            .file(CA_CERTIFICATES, Path::new(CA_CERTIFICATES))
            .program("/usr/local/bin/kube-scheduler", &inputs.kube_bin.join("kube-scheduler"))?
            .entrypoint(&["/usr/local/bin/kube-scheduler"])
            // As upstream's image: imported on a control-plane node, this name and tag is
            // also what a kubeadm static pod runs, which reads a root-only kubeconfig. The
            // chart's pod runs it as 65532 all the same.
            .as_root();
        images.push(image);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Image {
        std::fs::write(dir.join("prog"), b"#!/bin/sh\necho hi\n").unwrap();
        let mut image = Image::new("example.test/sample", "1.0", "sample", "a test image");
        image.file("/usr/local/bin/prog", &dir.join("prog")).bytes("/etc/motd", "hello\n", 0o644).entrypoint(&["prog"]);
        image
    }

    fn entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut tar = tar::Archive::new(archive);
        let mut out = BTreeMap::new();
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            out.insert(e.path().unwrap().to_string_lossy().into_owned(), bytes);
        }
        out
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_the_digests_hold() {
        let dir = std::env::temp_dir().join(format!("fitsched-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = sample(&dir);
        let a = write_archive(&image, &dir.join("a")).unwrap();
        let b = write_archive(&image, &dir.join("b")).unwrap();
        let (bytes_a, bytes_b) = (std::fs::read(&a.path).unwrap(), std::fs::read(&b.path).unwrap());
        assert_eq!(bytes_a, bytes_b, "two builds of one image differ");
        assert_eq!(a.digest, b.digest);

        // The index names the manifest, the manifest the config and the layer, each by
        // the digest and size of the blob stored under that name.
        let files = entries(&bytes_a);
        let blob = |d: &str| files[&format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))].clone();
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["annotations"]["io.containerd.image.name"], "example.test/sample:1.0");
        let manifest_bytes = blob(m["digest"].as_str().unwrap());
        assert_eq!(sha256(&manifest_bytes), m["digest"].as_str().unwrap());
        assert_eq!(manifest_bytes.len() as u64, m["size"].as_u64().unwrap());
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        for d in [&manifest["config"], &manifest["layers"][0]] {
            let b = blob(d["digest"].as_str().unwrap());
            assert_eq!(sha256(&b), d["digest"].as_str().unwrap());
            assert_eq!(b.len() as u64, d["size"].as_u64().unwrap());
        }
        let config: serde_json::Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["rootfs"]["diff_ids"][0], manifest["layers"][0]["digest"]);

        // The layer: parents before children, the files with their bytes and modes.
        let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
        let mut tar = tar::Archive::new(layer.as_slice());
        let mut seen = Vec::new();
        for e in tar.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
            if let Some(parent) = Path::new(&path).parent().filter(|p| !p.as_os_str().is_empty()) {
                assert!(seen.contains(&parent.to_string_lossy().into_owned()), "{path} before its parent");
            }
            assert_eq!(e.header().mtime().unwrap(), MTIME);
            if path == "usr/local/bin/prog" {
                // Written 0644 on the host (the build's umask): not executable, readable by all.
                assert_eq!(e.header().mode().unwrap() & 0o777, 0o644);
            }
            if path == "home/nonroot" {
                assert_eq!(e.header().uid().unwrap(), u64::from(NONROOT));
            }
            if path == "lib64" {
                assert_eq!(e.link_name().unwrap().unwrap(), Path::new("usr/lib64"));
            }
            seen.push(path);
        }
        for p in ["etc/passwd", "etc/motd", "usr/local/bin/prog", "tmp", "bin"] {
            assert!(seen.iter().any(|s| s == p), "{p} missing from the layer: {seen:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_change_of_input_changes_the_digest() {
        let dir = std::env::temp_dir().join(format!("fitsched-images-change-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut image = sample(&dir);
        let a = write_archive(&image, &dir.join("a")).unwrap();
        image.bytes("/etc/motd", "hello!\n", 0o644);
        let b = write_archive(&image, &dir.join("b")).unwrap();
        assert_ne!(a.digest, b.digest);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every image the chart runs is one this module builds, tagged as the chart's
    /// values default to; the release workflow pushes what `cargo xtask images` writes.
    #[test]
    fn the_chart_runs_the_images_defined_here() {
        let root = crate::paths::workspace_root();
        let values: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(root.join("charts/fitsched/values.yaml")).unwrap())
                .unwrap();
        let defined: Vec<String> = NAMES.iter().map(|n| repository(n)).collect();
        for path in
            ["/agent/image", "/scorer/image", "/shim/image", "/agent/pcm/image", "/bench/image", "/scheduler/image"]
        {
            let image = values.pointer(path).unwrap_or_else(|| panic!("values.yaml has no {path}"));
            let repository = image["repository"].as_str().unwrap().to_owned();
            assert!(defined.contains(&repository), "{path}: {repository} is not built by `cargo xtask images`");
            assert_eq!(image["tag"], "", "{path}: the tag follows the chart (appVersion, or the cluster's version)");
            assert_eq!(image["pullPolicy"], "IfNotPresent", "{path}: imported archives need IfNotPresent");
        }
        let workflow = std::fs::read_to_string(root.join(".github/workflows/release.yml")).unwrap();
        assert!(workflow.contains("cargo xtask images --out dist/images"), "the release pushes other images");
        assert!(!root.join("docker/Dockerfile").exists(), "a second definition of the images");
    }

    #[test]
    fn ldd_output_is_read_into_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn a_host_library_keeps_its_symlinks() {
        // This test binary's own loader: on merged-/usr hosts reached through `lib64`.
        let libs = shared_libraries(&std::env::current_exe().unwrap()).unwrap();
        let mut image = Image::new("example.test/x", "1", "x", "x");
        for lib in &libs {
            image.host_path(lib, 0).unwrap();
        }
        for lib in &libs {
            let canonical = std::fs::canonicalize(lib).unwrap();
            let key = canonical.to_string_lossy().trim_start_matches('/').to_owned();
            assert!(image.paths().any(|p| p == key), "{} missing ({key})", lib.display());
        }
    }
}
