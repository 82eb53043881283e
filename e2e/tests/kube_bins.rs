//! The download path of `kube_bins`, for real: a folder laid out like the official
//! release (`<name>` and `<name>.sha256`, the binaries unpacked from `../shared/kube`)
//! served over HTTP on loopback by `python3 -m http.server`, fetched with curl into an
//! empty cache, then from a full cache, then with a tampered checksum; and a server that
//! is not there.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use fitsched_e2e::kube_bins::{self, BINARIES, KUBE_VERSION};
use fitsched_e2e::{paths, stack, tools};

/// A scratch folder under the target dir, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = paths::target_dir().join("kube-bins-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// `dir` laid out like the official release: each binary unpacked from
/// `../shared/kube/<name>.gz` and its hex digest (from `SHA256SUMS`) in `<name>.sha256`.
/// `None` when `../shared/kube` is not there.
fn release_folder(dir: &Path) -> Option<()> {
    let shared = paths::shared_dir().join("kube");
    let sums = std::fs::read_to_string(shared.join("SHA256SUMS")).ok()?;
    for name in BINARIES {
        let sum = sums
            .lines()
            .filter_map(|l| l.split_once(char::is_whitespace))
            .find(|(_, file)| file.trim().trim_start_matches('*') == name)
            .map(|(sum, _)| sum.to_owned())
            .unwrap_or_else(|| panic!("{}/SHA256SUMS has no line for {name}", shared.display()));
        let out = std::fs::File::create(dir.join(name)).expect("create binary");
        let status = Command::new("gunzip")
            .arg("-c")
            .arg(shared.join(format!("{name}.gz")))
            .stdout(out)
            .status()
            .expect("start gunzip");
        assert!(status.success(), "gunzip {name}.gz: {status}");
        std::fs::write(dir.join(format!("{name}.sha256")), sum).expect("write .sha256");
    }
    Some(())
}

/// `python3 -m http.server` serving a folder on a free loopback port; killed on drop.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, log: PathBuf) -> Server {
        let addr = stack::free_addr().expect("free port");
        let child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1"])
            .arg(addr.port().to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("server log"))
            .spawn()
            .expect("start python3 -m http.server");
        let mut server = Server { child, url: format!("http://{addr}"), log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("http.server exited ({status}): {}", server.log());
            }
            assert!(Instant::now() < deadline, "http.server not listening on {addr}: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times each binary (not its `.sha256`) has been fetched.
    fn binary_gets(&self) -> usize {
        let log = self.log();
        BINARIES.iter().map(|name| log.matches(&format!("\"GET /{name} HTTP")).count()).sum()
    }

    fn sum_gets(&self) -> usize {
        self.log().matches(".sha256 HTTP").count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mtimes(dir: &Path) -> Vec<SystemTime> {
    BINARIES.iter().map(|b| std::fs::metadata(dir.join(b)).and_then(|m| m.modified()).expect("cached binary")).collect()
}

/// What `dir` holds whose name starts with `name` (the binary or a partial download).
fn entries_named(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read cache")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.starts_with(name))
        .collect()
}

#[test]
#[ignore = "serves ../shared/kube over loopback and fetches it with curl: cargo xtask test"]
fn downloads_verifies_and_caches_release_binaries() {
    let started = Instant::now();
    let work = scratch("release");
    let release = work.join("release");
    std::fs::create_dir_all(&release).unwrap();
    if release_folder(&release).is_none() {
        eprintln!("skipped: no {}/kube/SHA256SUMS to serve", paths::shared_dir().display());
        return;
    }
    let server = Server::start(&release, work.join("http.log"));
    let cache = work.join("cache");
    std::fs::create_dir_all(&cache).unwrap();

    // (a) An empty cache: all three downloaded, verified, executable, the right version.
    let dir = kube_bins::download_to(&server.url, &cache).expect("download into an empty cache");
    assert_eq!(dir, cache);
    for name in BINARIES {
        let out = tools::run(Command::new(dir.join(name)).arg("--version")).expect("--version runs");
        assert!(out.contains(&format!("Kubernetes {KUBE_VERSION}")), "{name} --version: {out:?}");
    }
    assert_eq!(server.binary_gets(), 3, "each binary fetched once:\n{}", server.log());
    assert_eq!(server.sum_gets(), 3, "each .sha256 fetched once:\n{}", server.log());
    assert!(entries_named(&cache, "").iter().all(|f| !f.ends_with(".partial")), "no partial download left");

    // (b) Everything cached: the sums are fetched again, the binaries are not.
    let before = mtimes(&cache);
    kube_bins::download_to(&server.url, &cache).expect("download with a full cache");
    assert_eq!(server.binary_gets(), 3, "nothing downloaded again:\n{}", server.log());
    assert_eq!(server.sum_gets(), 6, "the published sums are checked on every call:\n{}", server.log());
    assert_eq!(mtimes(&cache), before, "the cached binaries are untouched");

    // (c) A tampered .sha256: the download fails and nothing of that name stays cached,
    // not even the binary that matched the old sum.
    std::fs::write(release.join("kube-scheduler.sha256"), "0".repeat(64)).unwrap();
    let err = kube_bins::download_to(&server.url, &cache).expect_err("a tampered checksum fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("checksum mismatch") && msg.contains("kube-scheduler"), "{msg}");
    assert_eq!(entries_named(&cache, "kube-scheduler"), Vec::<String>::new(), "after: {msg}");
    assert!(cache.join("kube-apiserver").is_file(), "the verified kube-apiserver stays");

    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("download path checked in {:.1?}", started.elapsed());
}

#[test]
#[ignore = "serves ../shared/kube over loopback and fetches it with curl: cargo xtask test"]
fn a_missing_server_fails_clearly() {
    let work = scratch("no-server");
    let cache = work.join("cache");
    // Nothing listens on a port just freed.
    let url = format!("http://{}/release", stack::free_addr().expect("free port"));
    let started = Instant::now();
    let err = kube_bins::download_to(&url, &cache).expect_err("no server, no binaries");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("fetching {url}/kube-apiserver.sha256")), "says what it fetched: {msg}");
    assert!(msg.to_ascii_lowercase().contains("connect"), "says it could not connect: {msg}");
    assert!(started.elapsed() < Duration::from_secs(20), "fails fast, took {:?}", started.elapsed());
    assert!(BINARIES.iter().all(|b| !cache.join(b).exists()), "nothing cached");
    let _ = std::fs::remove_dir_all(&work);
}
