//! Binding pods when kube-scheduler leaves it to the extender (`bindVerb` set).
//!
//! The shim creates the `Binding` itself, as kube-scheduler's DefaultBinder would
//! (`POST /api/v1/namespaces/{ns}/pods/{name}/binding` with the pod's UID, so a pod
//! deleted and re-created under the same name is not bound by mistake), then tells the
//! scorer at once with `Scorer/Bind`. That notice is why the shim binds at all: the next
//! replica of a burst is scored before the pod watch shows this one, and the scorer must
//! already count it. A failed notice does not fail the bind: the Binding exists, and the
//! scorer's pod watch will show it a moment later.

use std::time::Duration;

use fitsched_proto::BindRequest;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;

/// Who creates the Binding.
#[derive(Clone)]
pub enum Binder {
    /// The Kubernetes API, with this client (in a cluster: the scheduler pod's service
    /// account, which `system:kube-scheduler` allows to bind pods).
    Kubernetes(kube::Client),
    /// Nobody: only the scorer is told. For scheduler simulators without an API server
    /// (the demo, the end-to-end tests): kube-scheduler believes the pod is bound.
    ScorerOnly,
}

impl std::fmt::Debug for Binder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kubernetes(_) => "Kubernetes",
            Self::ScorerOnly => "ScorerOnly",
        })
    }
}

/// `--binder`: how the shim binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BinderKind {
    /// Create the Binding through the Kubernetes API (in-cluster config or KUBECONFIG).
    Kubernetes,
    /// Create nothing, only tell the scorer: for scheduler simulators only.
    ScorerOnly,
}

impl Binder {
    /// The binder `kind` asks for; `Kubernetes` needs a Kubernetes configuration now, so
    /// a shim that could never bind fails at start, not at the first pod.
    pub async fn new(kind: BinderKind) -> anyhow::Result<Self> {
        match kind {
            BinderKind::ScorerOnly => {
                tracing::warn!(
                    "--binder scorer-only: /bind creates no Binding; kube-scheduler will believe pods are bound \
                     (for scheduler simulators only)"
                );
                Ok(Self::ScorerOnly)
            }
            BinderKind::Kubernetes => {
                let client = kube::Client::try_default().await.map_err(|e| {
                    anyhow::anyhow!(
                        "--binder kubernetes needs a Kubernetes configuration (in-cluster service account or \
                         KUBECONFIG): {e}; without a cluster use --binder scorer-only"
                    )
                })?;
                Ok(Self::Kubernetes(client))
            }
        }
    }

    /// Creates the Binding of `req`'s pod to its node, within `deadline`.
    /// `ScorerOnly` creates nothing and succeeds.
    pub async fn bind(&self, req: &BindRequest, deadline: Duration) -> Result<(), BindError> {
        let Self::Kubernetes(client) = self else { return Ok(()) };
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(req.pod_name.clone()),
                namespace: Some(req.pod_namespace.clone()),
                uid: Some(req.pod_uid.clone()).filter(|u| !u.is_empty()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(req.node.clone()),
                ..ObjectReference::default()
            },
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &req.pod_namespace);
        let params = PostParams::default();
        let call = pods.create_subresource::<_, serde_json::Value>("binding", &req.pod_name, &params, &binding);
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BindError::from_kube(e)),
            Err(_) => Err(BindError::Timeout(deadline)),
        }
    }
}

/// Why the API server did not bind the pod.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("the API server answered {code} {reason}: {message}")]
    Api { code: u16, reason: String, message: String },
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
    #[error("could not reach the API server: {0}")]
    Transport(String),
}

impl BindError {
    fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => Self::Api { code: s.code, reason: s.reason.clone(), message: s.message.clone() },
            other => Self::Transport(other.to_string()),
        }
    }

    /// The `reason` label of `fitsched_shim_bind_errors_total`; a small fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            // 409: already bound (another scheduler, or a retry after a lost answer).
            Self::Api { code: 409, .. } => "conflict",
            // 404: the pod was deleted meanwhile.
            Self::Api { code: 404, .. } => "not_found",
            Self::Api { code: 401 | 403, .. } => "forbidden",
            Self::Api { .. } => "api_error",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "unreachable",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;

    pub(crate) fn request() -> BindRequest {
        BindRequest {
            pod_name: "web-1".into(),
            pod_namespace: "shop".into(),
            pod_uid: "uid-1".into(),
            node: "n7".into(),
        }
    }

    /// A Kubernetes binder over a mock API server that answers the first request with
    /// `status` and `body` (or never, with `None`), and hands back what it was sent.
    pub(crate) fn mock_api(
        answer: Option<(StatusCode, Value)>,
    ) -> (Binder, tokio::task::JoinHandle<(Method, String, Value)>) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let seen = tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            let (request, send) = handle.next_request().await.expect("the binder called the API");
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let bytes = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            match answer {
                Some((status, value)) => {
                    let mut response = Response::new(Body::from(serde_json::to_vec(&value).unwrap()));
                    *response.status_mut() = status;
                    send.send_response(response);
                }
                None => std::mem::forget(send), // never answers
            }
            (method, path, body)
        });
        (Binder::Kubernetes(kube::Client::new(service, "default")), seen)
    }

    fn status(code: u16, reason: &str, message: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message})
    }

    #[tokio::test]
    async fn creates_the_binding_as_the_default_binder_would() {
        let ok = json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201});
        let (binder, seen) = mock_api(Some((StatusCode::CREATED, ok)));
        binder.bind(&request(), Duration::from_secs(2)).await.unwrap();
        let (method, path, body) = seen.await.unwrap();
        assert_eq!((method, path.as_str()), (Method::POST, "/api/v1/namespaces/shop/pods/web-1/binding"));
        assert_eq!(body["metadata"], json!({"name": "web-1", "namespace": "shop", "uid": "uid-1"}));
        assert_eq!(body["target"], json!({"apiVersion": "v1", "kind": "Node", "name": "n7"}));
    }

    #[tokio::test]
    async fn api_refusals_name_the_reason() {
        let cases = [
            (StatusCode::CONFLICT, status(409, "Conflict", "pod web-1 is already assigned to node n2"), "conflict"),
            (StatusCode::NOT_FOUND, status(404, "NotFound", "pods \"web-1\" not found"), "not_found"),
            (StatusCode::FORBIDDEN, status(403, "Forbidden", "cannot create pods/binding"), "forbidden"),
            (StatusCode::INTERNAL_SERVER_ERROR, status(500, "InternalError", "etcd"), "api_error"),
        ];
        for (code, body, reason) in cases {
            let (binder, _) = mock_api(Some((code, body)));
            let e = binder.bind(&request(), Duration::from_secs(2)).await.unwrap_err();
            assert_eq!(e.reason(), reason, "{e}");
            assert!(e.to_string().contains(&code.as_u16().to_string()), "{e}");
        }
    }

    #[tokio::test]
    async fn a_silent_api_server_is_bounded_by_the_deadline() {
        let (binder, _) = mock_api(None);
        let e = binder.bind(&request(), Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e.reason(), "timeout");
    }

    #[tokio::test]
    async fn scorer_only_creates_nothing() {
        Binder::ScorerOnly.bind(&request(), Duration::from_millis(1)).await.unwrap();
    }
}
