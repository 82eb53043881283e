//! A TCP proxy a test can cut or slow, for outage drills: while cut, every open
//! connection through it is closed and new ones are closed as soon as they are accepted,
//! as a partition that resets connections would; while slowed, every chunk of bytes
//! waits before it is forwarded, either way; restored, it forwards again at once.

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
                    let (mut cut, delay) = (open_rx.clone(), delay_rx.clone());
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(target).await else { return };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::select! {
                            _ = forward(in_read, out_write, delay.clone()) => {}
                            _ = forward(out_read, in_write, delay) => {}
                            _ = cut.wait_for(|open| !*open) => {}
                        }
                    });
                }
            });
        });
        Ok(Proxy { addr, open, delay, stop: Some(stop), thread: Some(thread) })
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
        self.open.send_replace(true);
    }
}

/// Copies `from` to `to`, each chunk after the current delay.
async fn forward(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, delay: watch::Receiver<Duration>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let wait = *delay.borrow();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
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
