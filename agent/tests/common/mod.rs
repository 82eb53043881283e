//! An in-process stand-in for the scorer's Ingest service.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fitsched_proto::ingest_server::{Ingest, IngestServer};
use fitsched_proto::{IngestAck, NodeWindow};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// How the fake scorer behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Acknowledge only windows up to this sequence (None: all).
    pub ack_up_to: Option<u64>,
    /// End the stream with INVALID_ARGUMENT when this sequence arrives (not stored).
    pub reject: Option<u64>,
}

#[derive(Clone)]
struct Svc {
    received: Arc<Mutex<Vec<NodeWindow>>>,
    behaviour: Behaviour,
    kill: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Ingest for Svc {
    type StreamStream = ReceiverStream<Result<IngestAck, Status>>;

    async fn stream(&self, request: Request<Streaming<NodeWindow>>) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let received = Arc::clone(&self.received);
        let behaviour = self.behaviour.clone();
        let mut kill = self.kill.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = async { let _ = kill.wait_for(|k| *k).await; } => {
                        let _ = tx.send(Err(Status::unavailable("scorer stopping"))).await;
                        break;
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(w)) => {
                            if behaviour.reject == Some(w.sequence) {
                                let _ = tx.send(Err(Status::invalid_argument(format!("window {} is invalid", w.sequence)))).await;
                                break;
                            }
                            let ack = IngestAck { node_name: w.node_name.clone(), agent_id: w.agent_id.clone(), acked_sequence: w.sequence };
                            let sequence = w.sequence;
                            received.lock().unwrap().push(w);
                            if behaviour.ack_up_to.is_none_or(|limit| sequence <= limit) && tx.send(Ok(ack)).await.is_err() {
                                break;
                            }
                        }
                        _ => break,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub struct FakeScorer {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<NodeWindow>>>,
    kill: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FakeScorer {
    /// Serves on `addr` (port 0 for any), retrying briefly while a previous server's
    /// socket on the same port is being released.
    pub async fn start(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (kill, kill_rx) = watch::channel(false);
        let svc = Svc { received: Arc::clone(&received), behaviour, kill: kill_rx.clone() };
        let mut shutdown = kill_rx;
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(IngestServer::new(svc))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = shutdown.wait_for(|k| *k).await;
                })
                .await
                .unwrap();
        });
        Self { addr, received, kill, task }
    }

    pub fn sequences(&self) -> Vec<u64> {
        self.received.lock().unwrap().iter().map(|w| w.sequence).collect()
    }

    pub fn windows(&self) -> Vec<NodeWindow> {
        self.received.lock().unwrap().clone()
    }

    /// Ends every open stream with UNAVAILABLE and stops listening.
    pub async fn stop(self) {
        let _ = self.kill.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// A port nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
