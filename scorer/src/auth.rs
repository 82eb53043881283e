//! Who may call the scorer, and for which node an agent speaks.
//!
//! Every RPC but `grpc.health.v1` needs an `authorization: Bearer <token>` header. A
//! token names a caller with a [`Role`]:
//!
//! | role | may call |
//! |---|---|
//! | `agent` | `Ingest/Stream`, for its own node only |
//! | `scheduler` (the shim) | `Score`, `Filter`, `Bind` |
//! | `operator` | `Score`, `Filter`, `Predict`, `ListNodes`, `Explain`, `ModelInfo` |
//!
//! Only the shim binds: a `Bind` records a placement that steers the next pods.
//!
//! Reflection is open to every authenticated caller. A token is accepted when either
//!
//! - it equals the content of a `--token-file ROLE=PATH` (read again every
//!   [`fitsched_runtime::BearerToken::RELOAD`], so a rotated Secret needs no restart). Such a caller speaks for
//!   any node: it is for agents that report several nodes (simulators, replays), and for
//!   clusters without TokenReview; or
//! - the API server's TokenReview (`--token-review`) says it is a service account token
//!   for the audience `--token-audience`, of a service account mapped to a role with
//!   `--service-account ROLE=NAMESPACE/NAME`. An agent's token must be bound to its pod
//!   (a projected token, as the kubelet mounts it), from which the API server names the
//!   pod's node (`authentication.kubernetes.io/node-name`): the agent may stream windows
//!   for that node only, and any other gets `PERMISSION_DENIED`. Answers are cached for
//!   [`Limits::review_ttl`](crate::Limits); at most
//!   [`Limits::max_reviews_in_flight`](crate::Limits) reviews run at once, so a flood of
//!   bad tokens cannot flood the API server.
//!
//! Without any of these the scorer starts only with `--allow-unauthenticated` (the
//! demo's and the tests' setting), and says so in its log.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use tonic::Status;

/// Metric names, all prefixed `fitsched_scorer_`.
pub mod series {
    /// Counter `{reason}`: calls refused (`unauthenticated`, `forbidden`, `unavailable`).
    pub const REFUSED: &str = "fitsched_scorer_auth_refused_total";
    /// Counter `{result}`: TokenReviews asked of the API server.
    pub const REVIEWS: &str = "fitsched_scorer_token_reviews_total";
}

/// Where the API server puts the node of a pod-bound service account token.
const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    Agent,
    Scheduler,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Scheduler => "scheduler",
            Role::Operator => "operator",
        }
    }

    fn parse(s: &str) -> Result<Role, String> {
        <Role as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("{s:?} is not a role (agent, scheduler or operator)"))
    }
}

/// An authenticated caller, put in the request's extensions for the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The token file's path or the service account's user name, for logs.
    pub subject: String,
    /// The node an agent speaks for; `None`: any.
    pub node: Option<String>,
}

impl Caller {
    /// Refuses a window for `node` from a caller bound to another.
    pub fn check_node(&self, node: &str) -> Result<(), Status> {
        match &self.node {
            Some(own) if own != node => {
                metrics::counter!(series::REFUSED, "reason" => "forbidden").increment(1);
                Err(Status::permission_denied(format!("{} speaks for node {own:?}, not {node:?}", self.subject)))
            }
            _ => Ok(()),
        }
    }
}

/// The caller of the request being served, if the scorer checks callers.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}

/// `ROLE=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    pub role: Role,
    pub path: PathBuf,
}

pub fn parse_token_file(s: &str) -> Result<TokenFile, String> {
    let (role, path) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ROLE=PATH"))?;
    Ok(TokenFile { role: Role::parse(role.trim())?, path: PathBuf::from(path.trim()) })
}

/// `ROLE=NAMESPACE/NAME`: a service account and the role its tokens carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRole {
    pub role: Role,
    /// `system:serviceaccount:NAMESPACE:NAME`, as TokenReview names it.
    pub user: String,
}

pub fn parse_service_account(s: &str) -> Result<ServiceAccountRole, String> {
    let (role, account) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ROLE=NAMESPACE/NAME"))?;
    let (namespace, name) =
        account.trim().split_once('/').ok_or_else(|| format!("{s:?}: expected ROLE=NAMESPACE/NAME"))?;
    if namespace.is_empty() || name.is_empty() {
        return Err(format!("{s:?}: the namespace and the name must be non-empty"));
    }
    Ok(ServiceAccountRole {
        role: Role::parse(role.trim())?,
        user: format!("system:serviceaccount:{namespace}:{name}"),
    })
}

/// The roles allowed to call `path` (`/package.Service/Method`); empty: any
/// authenticated caller; `None`: open to all (health).
fn allowed(path: &str) -> Option<&'static [Role]> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    Some(match (service, method) {
        ("grpc.health.v1.Health", _) => return None,
        ("fitsched.v1.Ingest", _) => &[Role::Agent],
        ("fitsched.v1.Scorer", "Score" | "Filter") => &[Role::Scheduler, Role::Operator],
        ("fitsched.v1.Scorer", "Bind") => &[Role::Scheduler],
        ("fitsched.v1.Scorer", _) => &[Role::Operator],
        // Reflection, and whatever else is served: any known caller.
        _ => &[],
    })
}

struct StaticToken {
    file: TokenFile,
    /// Read again every [`fitsched_runtime::BearerToken::RELOAD`], as the clients read theirs.
    token: fitsched_runtime::BearerToken,
}

/// Checks callers; see the module docs.
pub struct Authenticator {
    tokens: Vec<StaticToken>,
    review: Option<Reviewer>,
}

struct Reviewer {
    client: kube::Client,
    audience: String,
    accounts: Vec<ServiceAccountRole>,
    cache: Mutex<HashMap<String, (Caller, Instant)>>,
    in_flight: tokio::sync::Semaphore,
    /// [`Limits::review_ttl`](crate::Limits) and [`Limits::max_cached_reviews`](crate::Limits).
    ttl: Duration,
    max_cached: usize,
}

impl Authenticator {
    /// Static tokens only; with none (and no review) nobody is checked.
    pub fn new(tokens: Vec<TokenFile>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|file| StaticToken { token: fitsched_runtime::BearerToken::new(&file.path), file })
            .collect();
        Self { tokens, review: None }
    }

    /// Adds TokenReview through `client` for tokens of `audience` from `accounts`.
    pub fn with_review(
        mut self,
        client: kube::Client,
        audience: String,
        accounts: Vec<ServiceAccountRole>,
        limits: &crate::Limits,
    ) -> Self {
        self.review = Some(Reviewer {
            client,
            audience,
            accounts,
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(limits.max_reviews_in_flight),
            ttl: limits.review_ttl,
            max_cached: limits.max_cached_reviews,
        });
        self
    }

    /// Whether any caller can be accepted at all.
    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty() || self.review.is_some()
    }

    /// The caller of a request for `path` with these headers; `Ok(None)` for open paths,
    /// and for every path when nothing is configured (`--allow-unauthenticated`).
    pub async fn authorize(&self, path: &str, headers: &::http::HeaderMap) -> Result<Option<Caller>, Status> {
        let Some(roles) = allowed(path).filter(|_| self.is_configured()) else { return Ok(None) };
        let refuse = |reason: &'static str, status: Status| {
            metrics::counter!(series::REFUSED, "reason" => reason).increment(1);
            tracing::warn!(path, reason, message = status.message(), "call refused");
            status
        };
        let token = headers
            .get(::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                refuse(
                    "unauthenticated",
                    Status::unauthenticated("the scorer needs an `authorization: Bearer <token>` header"),
                )
            })?;
        let caller = match self.static_caller(token) {
            Some(c) => c,
            None => match &self.review {
                Some(review) => review.caller(token).await.map_err(|(reason, status)| refuse(reason, status))?,
                None => return Err(refuse("unauthenticated", Status::unauthenticated("unknown token"))),
            },
        };
        if !roles.is_empty() && !roles.contains(&caller.role) {
            let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            return Err(refuse(
                "forbidden",
                Status::permission_denied(format!(
                    "{} ({}) may not call {path}; it needs the role {}",
                    caller.subject,
                    caller.role.as_str(),
                    wanted.join(" or ")
                )),
            ));
        }
        Ok(Some(caller))
    }

    fn static_caller(&self, presented: &str) -> Option<Caller> {
        self.tokens.iter().find_map(|t| {
            // An unreadable file is logged by the token itself, once per reload.
            let header = t.token.header().ok()?;
            let expected = header.as_bytes().strip_prefix(b"Bearer ")?;
            bool::from(subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected)).then(|| Caller {
                role: t.file.role,
                subject: format!("token file {}", t.file.path.display()),
                node: None,
            })
        })
    }
}

type Refusal = (&'static str, Status);

impl Reviewer {
    async fn caller(&self, token: &str) -> Result<Caller, Refusal> {
        if let Some((caller, at)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(token)
            && at.elapsed() < self.ttl
        {
            return Ok(caller.clone());
        }
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| ("unavailable", Status::unavailable("too many token reviews in flight; retry")))?;
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_owned(), audiences: Some(vec![self.audience.clone()]) },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| {
            metrics::counter!(series::REVIEWS, "result" => "error").increment(1);
            tracing::error!(error = %e, "TokenReview failed");
            ("unavailable", Status::unavailable("the scorer cannot check tokens right now"))
        })?;
        let status = answer.status.unwrap_or_default();
        let unknown = |why: String| {
            metrics::counter!(series::REVIEWS, "result" => "refused").increment(1);
            ("unauthenticated", Status::unauthenticated(why))
        };
        if status.authenticated != Some(true) {
            return Err(unknown(format!("token not accepted: {}", status.error.unwrap_or_default())));
        }
        if !status.audiences.unwrap_or_default().contains(&self.audience) {
            return Err(unknown(format!("the token is not for the audience {:?}", self.audience)));
        }
        let user = status.user.unwrap_or_default();
        let name = user.username.unwrap_or_default();
        let Some(account) = self.accounts.iter().find(|a| a.user == name) else {
            return Err(unknown(format!("{name} has no role at the scorer")));
        };
        let node = user.extra.unwrap_or_default().remove(NODE_NAME_EXTRA).and_then(|mut v| v.pop());
        if account.role == Role::Agent && node.is_none() {
            return Err(unknown(format!(
                "{name}'s token is not bound to a pod on a node; an agent needs a projected service account token"
            )));
        }
        metrics::counter!(series::REVIEWS, "result" => "accepted").increment(1);
        let caller = Caller { role: account.role, subject: name, node };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.max_cached {
            cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if cache.len() >= self.max_cached {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), (caller.clone(), Instant::now()));
        Ok(caller)
    }
}

/// The tower layer that checks every call before tonic routes it.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<Authenticator>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<::http::Request<B>> for AuthService<S>
where
    S: tower::Service<::http::Request<B>, Response = ::http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = ::http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ::http::Request<B>) -> Self::Future {
        // The clone is the one made ready by `poll_ready`, as tower requires.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.authorize(req.uri().path(), req.headers()).await {
                Ok(caller) => {
                    if let Some(caller) = caller {
                        req.extensions_mut().insert(caller);
                    }
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: Option<&str>) -> ::http::HeaderMap {
        let mut h = ::http::HeaderMap::new();
        if let Some(t) = token {
            h.insert(::http::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        h
    }

    fn files() -> (PathBuf, Authenticator) {
        let dir = std::env::temp_dir().join(format!("fitsched-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tokens = Vec::new();
        for (role, token) in [(Role::Agent, "agent-secret"), (Role::Scheduler, "shim-secret"), (Role::Operator, "ops")]
        {
            let path = dir.join(role.as_str());
            std::fs::write(&path, format!("{token}\n")).unwrap();
            tokens.push(TokenFile { role, path });
        }
        (dir, Authenticator::new(tokens))
    }

    #[tokio::test]
    async fn every_rpc_but_health_needs_a_token_of_the_right_role() {
        let (dir, auth) = files();
        let score = "/fitsched.v1.Scorer/Score";
        assert!(matches!(auth.authorize("/grpc.health.v1.Health/Check", &headers(None)).await, Ok(None)));
        let refused = auth.authorize(score, &headers(None)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let refused = auth.authorize(score, &headers(Some("guess"))).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let shim = auth.authorize(score, &headers(Some("shim-secret"))).await.unwrap().unwrap();
        assert_eq!((shim.role, shim.node.as_deref()), (Role::Scheduler, None));
        for (path, token) in [
            ("/fitsched.v1.Scorer/Bind", "agent-secret"),
            ("/fitsched.v1.Ingest/Stream", "shim-secret"),
            ("/fitsched.v1.Scorer/Predict", "shim-secret"),
            ("/fitsched.v1.Scorer/Bind", "ops"),
        ] {
            let refused = auth.authorize(path, &headers(Some(token))).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{path} with {token}");
        }
        assert!(auth.authorize("/fitsched.v1.Ingest/Stream", &headers(Some("agent-secret"))).await.is_ok());
        assert!(auth.authorize("/fitsched.v1.Scorer/ListNodes", &headers(Some("ops"))).await.is_ok());
        let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert!(auth.authorize(reflection, &headers(Some("ops"))).await.is_ok());
        assert!(auth.authorize(reflection, &headers(None)).await.is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_node_bound_caller_speaks_for_its_node_only() {
        let agent = Caller { role: Role::Agent, subject: "sa".into(), node: Some("n1".into()) };
        assert!(agent.check_node("n1").is_ok());
        assert_eq!(agent.check_node("n2").unwrap_err().code(), tonic::Code::PermissionDenied);
        let any = Caller { node: None, ..agent };
        assert!(any.check_node("n2").is_ok());
    }

    #[test]
    fn flags_parse() {
        assert_eq!(
            parse_token_file("scheduler=/run/t").unwrap(),
            TokenFile { role: Role::Scheduler, path: "/run/t".into() }
        );
        assert!(parse_token_file("root=/x").is_err());
        assert!(parse_token_file("/x").is_err());
        assert_eq!(
            parse_service_account("agent=fitsched/fitsched-agent").unwrap().user,
            "system:serviceaccount:fitsched:fitsched-agent"
        );
        assert!(parse_service_account("agent=fitsched").is_err());
        assert!(parse_service_account("agent=/x").is_err());
    }
}
