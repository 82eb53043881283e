//! A TCP proxy a test can cut, for outage drills: while cut, every open connection
//! through it is closed and new ones are closed as soon as they are accepted, as a
//! partition that resets connections would; restored, it forwards again.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub struct Proxy {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
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
        let (stop, mut stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                loop {
                    let (mut inbound, _) = tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    if !*open_rx.borrow() {
                        continue;
                    }
                    let mut cut = open_rx.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.wait_for(|open| !*open) => {}
                        }
                    });
                }
            });
        });
        Ok(Proxy { addr, open, stop: Some(stop), thread: Some(thread) })
    }

    /// Closes every connection through the proxy, and every new one until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
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
