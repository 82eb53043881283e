//! A TCP proxy a test can cut, slow or delay, for outage drills: while cut, every open
//! connection through it is closed and new ones are closed as soon as they are accepted,
//! as a partition that resets connections would; while slowed, every chunk of bytes
//! waits before it is forwarded, either way, and the next is not read meanwhile (a
//! stalled peer); with a latency, every chunk arrives that much later (a random share of
//! a range, in order) while the next ones are read on (a distant or loaded peer: calls
//! take longer, throughput stays); restored, it forwards again at once.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub struct Proxy {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    delay: watch::Sender<Duration>,
    latency: watch::Sender<(Duration, Duration)>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<free port>` to `target`, on a thread of its own.
    pub fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (open, open_rx) = watch::channel(true);
        let (delay, delay_rx) = watch::channel(Duration::ZERO);
        let (latency, latency_rx) = watch::channel((Duration::ZERO, Duration::ZERO));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                loop {
                    let (inbound, _) = tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    if !*open_rx.borrow() {
                        continue;
                    }
                    let (mut cut, delay, latency) = (open_rx.clone(), delay_rx.clone(), latency_rx.clone());
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(target).await else { return };
                        let _ = outbound.set_nodelay(true);
                        let _ = inbound.set_nodelay(true);
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::select! {
                            _ = forward(in_read, out_write, delay.clone(), latency.clone()) => {}
                            _ = forward(out_read, in_write, delay, latency) => {}
                            _ = cut.wait_for(|open| !*open) => {}
                        }
                    });
                }
            });
        });
        Ok(Proxy { addr, open, delay, latency, stop: Some(stop), thread: Some(thread) })
    }

    /// Delivers every chunk of bytes, in both directions, a random time in `low..=high`
    /// after it was read, in order, reading on meanwhile.
    pub fn latency(&self, low: Duration, high: Duration) {
        self.latency.send_replace((low, high.max(low)));
    }

    /// Holds every chunk of bytes `by` before forwarding it, in both directions.
    pub fn slow(&self, by: Duration) {
        self.delay.send_replace(by);
    }

    /// Closes every connection through the proxy, and every new one until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Forwards again, at once.
    pub fn restore(&self) {
        self.delay.send_replace(Duration::ZERO);
        self.latency.send_replace((Duration::ZERO, Duration::ZERO));
        self.open.send_replace(true);
    }
}

/// Copies `from` to `to`: each chunk after the current delay (the next read waits for
/// it), then delivered after the current latency (the next read does not wait).
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    delay: watch::Receiver<Duration>,
    latency: watch::Receiver<(Duration, Duration)>,
) {
    let (queue, mut due) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 << 10];
        let mut last = tokio::time::Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let wait = *delay.borrow();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let (low, high) = *latency.borrow();
            let extra = low + (high - low).mul_f64(fastrand::f64());
            // Never before the chunk ahead of it: a byte stream stays in order.
            last = (tokio::time::Instant::now() + extra).max(last);
            if queue.send((last, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    // The writer drains what was read before the reader stopped; a failed write drops
    // the queue, which stops the reader.
    tokio::join!(read, write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
