//! Whatever arrives on /filter, the shim answers 200, 400 or 413 with JSON.

use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use proptest::prelude::*;
use tokio::runtime::Runtime;

use crate::common::*;

static RT: LazyLock<Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());

static APP: LazyLock<Router> = LazyLock::new(|| {
    RT.block_on(async {
        let mut config = config(&closed_port_url().await, Duration::from_millis(50));
        config.limits.max_body_bytes = 16 << 10;
        fitsched_shim::router(&config).unwrap()
    })
});

static SEED: LazyLock<Vec<u8>> = LazyLock::new(|| fixture("names", "001-filter-request.json"));

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        // Truncated and mutated real bodies reach much deeper into the decoder.
        (0..SEED.len()).prop_map(|cut| SEED[..cut].to_vec()),
        (0..SEED.len(), any::<u8>()).prop_map(|(at, byte)| {
            let mut b = SEED.clone();
            b[at] = byte;
            b
        }),
        (0..SEED.len(), 1usize..8).prop_map(|(at, n)| {
            let mut b = SEED.clone();
            b.drain(at..(at + n).min(SEED.len()));
            b
        }),
        proptest::collection::vec(any::<u8>(), (16 << 10) + 1..(17 << 10)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn arbitrary_bytes_never_panic(body in bodies()) {
        let (status, content_type, answer) = RT.block_on(send(&APP, axum::http::Method::POST, "/filter", body));
        prop_assert!(matches!(status.as_u16(), 200 | 400 | 413), "status {}", status);
        prop_assert_eq!(content_type, "application/json");
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&answer).is_ok());
    }
}
