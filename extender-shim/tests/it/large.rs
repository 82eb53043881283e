//! A 5 000-node full-mode body (~20 MB, the size of a large cluster) goes through within
//! the default limit, on the multi-threaded runtime the binary uses.

use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_full_nodes() {
    let mut request: Value = serde_json::from_slice(&fixture("full", "001-filter-request.json")).unwrap();
    let template = request["Nodes"]["items"][0].clone();
    let items: Vec<Value> = (1..=5000)
        .map(|i| {
            let mut node = template.clone();
            node["metadata"]["name"] = Value::from(format!("worker-{i}"));
            node
        })
        .collect();
    request["Nodes"]["items"] = Value::from(items);
    let body = serde_json::to_vec_pretty(&request).unwrap();
    assert!(body.len() > 10 << 20, "body is {} bytes", body.len());

    let fake = FakeScorer::default();
    let app = app(&start_fake(fake.clone()).await);
    let (status, answer) = post(&app, "/filter", body.clone()).await;
    assert_eq!(status, 200);
    let passing = answer["Nodes"]["items"].as_array().unwrap();
    assert_eq!(passing.len(), 4999);
    assert_eq!(passing[2]["metadata"]["name"], "worker-4");
    assert_eq!(passing[4998], request["Nodes"]["items"][4999]);
    assert_eq!(answer["FailedNodes"].as_object().unwrap().len(), 1);

    let (status, answer) = post(&app, "/prioritize", body).await;
    assert_eq!(status, 200);
    let scores = answer.as_array().unwrap();
    assert_eq!(scores.len(), 5000);
    assert_eq!(scores[4999], serde_json::json!({"Host": "worker-5000", "Score": 4999 * 3 % 11}));
    assert_eq!(fake.filters.lock().unwrap()[0].nodes[4999].zone, "zone-1");
}
