//! The binary at start: a binder that could never bind refuses to start.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn kubernetes_binder_without_a_cluster_exits_naming_scorer_only() {
    let home = std::env::temp_dir().join(format!("fitsched-shim-no-kube-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fitsched-shim"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("FITSCHED_SHIM_BINDER")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env("HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("fitsched-shim kept running without a Kubernetes configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&home);
    assert!(!status.success());
    assert!(stderr.contains("--binder scorer-only"), "{stderr}");
}
