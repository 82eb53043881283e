//! Binding pods when kube-scheduler leaves it to the extender (`bindVerb` set).
//!
//! The shim creates the `Binding` itself, as kube-scheduler's DefaultBinder would
//! (`POST /api/v1/namespaces/{ns}/pods/{name}/binding` with the pod's UID, so a pod
//! deleted and re-created under the same name is not bound by mistake), then tells the
//! scorer at once with `Scorer/Bind`. That notice is why the shim binds at all: the next
//! replica of a burst is scored before the pod watch shows this one, and the scorer must
//! already count it. A failed notice does not fail the bind: the Binding exists, and the
//! scorer's pod watch will show it a moment later.
//!
//! A Binding that already exists for the requested node is a success. A slow API server
//! can apply the POST after the client gave up on it; a refusal (409) or no answer is
//! therefore checked against the pod itself before it is called a failure, so that
//! kube-scheduler never falls back to its own binder for a pod that is already where it
//! asked (its binder would then fail on "already assigned").

use std::time::{Duration, Instant};

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

    /// Creates the Binding of `req`'s pod to its node, within `deadline` of `since` (when
    /// the request arrived): the POST gets [`POST_SHARE`] of it, and a refusal or silence
    /// is checked against the pod in what is left. `ScorerOnly` creates nothing and
    /// succeeds.
    pub async fn bind(&self, req: &BindRequest, deadline: Duration, since: Instant) -> Result<Bound, BindError> {
        let Self::Kubernetes(client) = self else { return Ok(Bound::Created) };
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
        let post_until = since + deadline.mul_f64(POST_SHARE);
        let error = match tokio::time::timeout_at(post_until.into(), call).await {
            Ok(Ok(_)) => return Ok(Bound::Created),
            // Already bound (to our node, by a POST that landed late?), or not answered
            // in time (it may still land): the pod says which.
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => BindError::from_kube(kube::Error::Api(s)),
            Err(_) => BindError::Timeout(deadline),
            Ok(Err(e)) => return Err(BindError::from_kube(e)),
        };
        match tokio::time::timeout_at((since + deadline).into(), pods.get_opt(&req.pod_name)).await {
            Ok(Ok(Some(pod))) if is_bound_as_asked(&pod, req) => Ok(Bound::AlreadyThere),
            _ => Err(error),
        }
    }
}

/// The share of the bind deadline the POST may take; the rest is for asking the pod
/// whether a refused or silent POST bound it anyway.
pub const POST_SHARE: f64 = 0.7;

/// How a pod came to be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The Binding was created now (or nothing was to be created).
    Created,
    /// The pod was already bound to the requested node: a POST that the API server
    /// applied after its client stopped waiting, or a retry of one.
    AlreadyThere,
}

/// Whether `pod` is the pod `req` names (its UID, when the request has one: a pod
/// re-created under the same name is another pod) on the node `req` asks for.
fn is_bound_as_asked(pod: &Pod, req: &BindRequest) -> bool {
    let same_pod = req.pod_uid.is_empty() || pod.metadata.uid.as_deref() == Some(req.pod_uid.as_str());
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    same_pod && node == Some(req.node.as_str())
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
        let (binder, seen) = mock_api_answering(vec![answer]);
        (binder, tokio::spawn(async move { seen.await.unwrap().remove(0) }))
    }

    /// A request the mock API server was sent: method, path, JSON body (or null).
    pub(crate) type Seen = (Method, String, Value);

    /// A Kubernetes binder over a mock API server that answers its requests in turn with
    /// `answers` (never, for a `None`), and hands back what it was sent (method, path,
    /// JSON body or null).
    pub(crate) fn mock_api_answering(
        answers: Vec<Option<(StatusCode, Value)>>,
    ) -> (Binder, tokio::task::JoinHandle<Vec<Seen>>) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let seen = tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            let mut seen = Vec::new();
            for answer in answers {
                let Some((request, send)) = handle.next_request().await else { break };
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                let bytes = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
                seen.push((method, path, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
                match answer {
                    Some((status, value)) => {
                        let mut response = Response::new(Body::from(serde_json::to_vec(&value).unwrap()));
                        *response.status_mut() = status;
                        send.send_response(response);
                    }
                    None => std::mem::forget(send), // never answers
                }
            }
            seen
        });
        (Binder::Kubernetes(kube::Client::new(service, "default")), seen)
    }

    fn pod(uid: &str, node: Option<&str>) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "uid": uid},
               "spec": {"containers": [{"name": "c"}], "nodeName": node}})
    }

    fn status(code: u16, reason: &str, message: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message})
    }

    #[tokio::test]
    async fn creates_the_binding_as_the_default_binder_would() {
        let ok = json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201});
        let (binder, seen) = mock_api(Some((StatusCode::CREATED, ok)));
        assert_eq!(binder.bind(&request(), Duration::from_secs(2), Instant::now()).await.unwrap(), Bound::Created);
        let (method, path, body) = seen.await.unwrap();
        assert_eq!((method, path.as_str()), (Method::POST, "/api/v1/namespaces/shop/pods/web-1/binding"));
        assert_eq!(body["metadata"], json!({"name": "web-1", "namespace": "shop", "uid": "uid-1"}));
        assert_eq!(body["target"], json!({"apiVersion": "v1", "kind": "Node", "name": "n7"}));
    }

    #[tokio::test]
    async fn api_refusals_name_the_reason() {
        let conflict = status(409, "Conflict", "pod web-1 is already assigned to node n2");
        let cases = [
            // Bound elsewhere: the pod says so.
            (
                vec![Some((StatusCode::CONFLICT, conflict)), Some((StatusCode::OK, pod("uid-1", Some("n2"))))],
                "conflict",
            ),
            (vec![Some((StatusCode::NOT_FOUND, status(404, "NotFound", "pods \"web-1\" not found")))], "not_found"),
            (vec![Some((StatusCode::FORBIDDEN, status(403, "Forbidden", "cannot create pods/binding")))], "forbidden"),
            (vec![Some((StatusCode::INTERNAL_SERVER_ERROR, status(500, "InternalError", "etcd")))], "api_error"),
        ];
        for (answers, reason) in cases {
            let (binder, _) = mock_api_answering(answers);
            let e = binder.bind(&request(), Duration::from_secs(2), Instant::now()).await.unwrap_err();
            assert_eq!(e.reason(), reason, "{e}");
        }
    }

    #[tokio::test]
    async fn a_binding_already_there_for_the_asked_node_is_a_success() {
        let conflict = status(409, "Conflict", "pod web-1 is already assigned to node n7");
        let (binder, seen) = mock_api_answering(vec![
            Some((StatusCode::CONFLICT, conflict)),
            Some((StatusCode::OK, pod("uid-1", Some("n7")))),
        ]);
        assert_eq!(binder.bind(&request(), Duration::from_secs(2), Instant::now()).await.unwrap(), Bound::AlreadyThere);
        let seen = seen.await.unwrap();
        assert_eq!((&seen[1].0, seen[1].1.as_str()), (&Method::GET, "/api/v1/namespaces/shop/pods/web-1"));
        // Another pod under the same name on that node is not ours.
        let conflict = status(409, "Conflict", "pod web-1 is already assigned to node n7");
        let (binder, _) = mock_api_answering(vec![
            Some((StatusCode::CONFLICT, conflict)),
            Some((StatusCode::OK, pod("uid-2", Some("n7")))),
        ]);
        assert_eq!(
            binder.bind(&request(), Duration::from_secs(2), Instant::now()).await.unwrap_err().reason(),
            "conflict"
        );
    }

    #[tokio::test]
    async fn a_silent_api_server_is_bounded_by_the_deadline_and_the_pod_asked() {
        // The POST is never answered, but it landed: the pod is where we asked.
        let (binder, seen) = mock_api_answering(vec![None, Some((StatusCode::OK, pod("uid-1", Some("n7"))))]);
        assert_eq!(
            binder.bind(&request(), Duration::from_millis(200), Instant::now()).await.unwrap(),
            Bound::AlreadyThere
        );
        assert_eq!(seen.await.unwrap().len(), 2);
        // Not bound yet: a timeout.
        let (binder, _) = mock_api_answering(vec![None, Some((StatusCode::OK, pod("uid-1", None)))]);
        assert_eq!(
            binder.bind(&request(), Duration::from_millis(200), Instant::now()).await.unwrap_err().reason(),
            "timeout"
        );
        // Nothing answers at all: the deadline ends it.
        let (binder, _) = mock_api_answering(vec![None, None]);
        assert_eq!(
            binder.bind(&request(), Duration::from_millis(200), Instant::now()).await.unwrap_err().reason(),
            "timeout"
        );
    }

    #[tokio::test]
    async fn scorer_only_creates_nothing() {
        assert_eq!(
            Binder::ScorerOnly.bind(&request(), Duration::from_millis(1), Instant::now()).await.unwrap(),
            Bound::Created
        );
    }
}
