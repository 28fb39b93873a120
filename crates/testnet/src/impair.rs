//! Network impairment in user space (this kernel has no netem): proxies that sit between
//! two nodes and add one-way delay (TCP and UDP) and packet loss (UDP, so QUIC sees it).
//!
//! A node dials the proxy's address instead of the peer's; the proxy forwards to the
//! peer. Delay is applied per chunk or datagram in arrival order, so a stream's bytes
//! are never reordered. Every proxy stops when its handle is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Bound on chunks (up to 64 KiB each) in flight inside one direction of a TCP proxy.
const IN_FLIGHT: usize = 1024;
/// Bound on datagrams in flight inside one direction of a UDP proxy: 16,384 of QUIC's
/// 1,200-1,500 bytes carry 400 MB/s at 50 ms one way; past it they are lost.
const DATAGRAMS_IN_FLIGHT: usize = 16384;

/// A running proxy; dropping it stops it.
pub struct Proxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hands each item to `deliver` `delay` (plus up to `jitter`, drawn for each) after it
/// arrived, in order, until `deliver` says the way out is closed. In order: an item
/// drawn less delay than the one before it waits for that one.
async fn delayed<T>(
    mut items: mpsc::Receiver<(Instant, T)>,
    delay: Duration,
    jitter: Duration,
    mut deliver: impl AsyncFnMut(T) -> bool,
) {
    while let Some((at, item)) = items.recv().await {
        let extra = jitter.mul_f64(rand::rng().random::<f64>());
        tokio::time::sleep_until(at + delay + extra).await;
        if !deliver(item).await {
            return;
        }
    }
}

/// A TCP proxy on `listen` (port 0 for any) to `target`, delaying each direction by
/// `one_way`.
pub async fn tcp_delay(
    listen: SocketAddr,
    target: SocketAddr,
    one_way: Duration,
) -> std::io::Result<Proxy> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Owned here, so aborting this task (dropping the proxy) aborts every pipe.
        let mut pipes = JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            while pipes.try_join_next().is_some() {}
            let Ok(server) = TcpStream::connect(target).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            pipes.spawn(pipe(cr, sw, one_way));
            pipes.spawn(pipe(sr, cw, one_way));
        }
    });
    Ok(Proxy { addr, task })
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    one_way: Duration,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let mut to = to;
    let writer = delayed(rx, one_way, Duration::ZERO, async move |chunk: Vec<u8>| {
        to.write_all(&chunk).await.is_ok()
    });
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

/// A UDP proxy on `listen` to `target` that drops each datagram with probability `loss`
/// and delays the rest by `one_way` plus up to `jitter`, in both directions. Each client
/// address gets its own upstream socket, so the target sees one peer per client.
pub async fn udp_impair(
    listen: SocketAddr,
    target: SocketAddr,
    one_way: Duration,
    jitter: Duration,
    loss: f64,
) -> std::io::Result<Proxy> {
    let front = Arc::new(UdpSocket::bind(listen).await?);
    let addr = front.local_addr()?;
    let task = tokio::spawn(async move {
        // Owned here, so aborting this task (dropping the proxy) ends every session.
        let mut tasks = JoinSet::new();
        let mut sessions: HashMap<SocketAddr, mpsc::Sender<(Instant, Vec<u8>)>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, client)) = front.recv_from(&mut buf).await {
            if rand::rng().random_bool(loss.clamp(0.0, 1.0)) {
                continue;
            }
            let up = match sessions.get(&client) {
                Some(up) if !up.is_closed() => up.clone(),
                _ => match open_session(
                    &mut tasks,
                    front.clone(),
                    client,
                    target,
                    (one_way, jitter),
                    loss,
                )
                .await
                {
                    Ok(up) => {
                        sessions.insert(client, up.clone());
                        up
                    }
                    Err(_) => continue,
                },
            };
            let _ = up.try_send((Instant::now(), buf[..n].to_vec()));
        }
    });
    Ok(Proxy { addr, task })
}

async fn open_session(
    tasks: &mut JoinSet<()>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddr,
    (one_way, jitter): (Duration, Duration),
    loss: f64,
) -> std::io::Result<mpsc::Sender<(Instant, Vec<u8>)>> {
    let back = Arc::new(UdpSocket::bind((target.ip(), 0)).await?);
    back.connect(target).await?;
    let (up_tx, up_rx) = mpsc::channel::<(Instant, Vec<u8>)>(DATAGRAMS_IN_FLIGHT);
    let sender = back.clone();
    tasks.spawn(delayed(up_rx, one_way, jitter, async move |d: Vec<u8>| {
        let _ = sender.send(&d).await;
        true
    }));
    let (down_tx, down_rx) = mpsc::channel::<(Instant, Vec<u8>)>(DATAGRAMS_IN_FLIGHT);
    tasks.spawn(delayed(
        down_rx,
        one_way,
        jitter,
        async move |d: Vec<u8>| {
            let _ = front.send_to(&d, client).await;
            true
        },
    ));
    tasks.spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            if rand::rng().random_bool(loss.clamp(0.0, 1.0)) {
                continue;
            }
            if down_tx
                .try_send((Instant::now(), buf[..n].to_vec()))
                .is_err()
                && down_tx.is_closed()
            {
                return;
            }
        }
    });
    Ok(up_tx)
}

/// A UDP proxy on `listen` to `target` whose way there is a link of `bits_per_sec`
/// with a drop-tail buffer of `buffer` (at that rate): what is sent faster queues, and
/// what overflows the queue is lost, as on a narrow access link. The way back is not
/// limited. One client at a time (the last to send gets the answers).
pub async fn udp_bottleneck(
    listen: SocketAddr,
    target: SocketAddr,
    bits_per_sec: u64,
    buffer: Duration,
) -> std::io::Result<Proxy> {
    let front = Arc::new(UdpSocket::bind(listen).await?);
    let addr = front.local_addr()?;
    let back = Arc::new(UdpSocket::bind((target.ip(), 0)).await?);
    back.connect(target).await?;
    let task = tokio::spawn(async move {
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let limit = (bits_per_sec as f64 * buffer.as_secs_f64() / 8.0) as usize;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut tasks = JoinSet::new();
        let (link, link_queued) = (back.clone(), queued.clone());
        tasks.spawn(async move {
            let mut free_at = Instant::now();
            while let Some(d) = rx.recv().await {
                let on_wire = Duration::from_secs_f64(d.len() as f64 * 8.0 / bits_per_sec as f64);
                free_at = free_at.max(Instant::now()) + on_wire;
                tokio::time::sleep_until(free_at).await;
                link_queued.fetch_sub(d.len(), std::sync::atomic::Ordering::Relaxed);
                let _ = link.send(&d).await;
            }
        });
        let (down, down_client, down_front) = (back.clone(), client.clone(), front.clone());
        tasks.spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = down.recv(&mut buf).await {
                let to = *down_client.lock().expect("client");
                if let Some(to) = to {
                    let _ = down_front.send_to(&buf[..n], to).await;
                }
            }
        });
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = front.recv_from(&mut buf).await {
            *client.lock().expect("client") = Some(from);
            let q = queued.load(std::sync::atomic::Ordering::Relaxed);
            if q + n > limit {
                continue;
            }
            queued.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            let _ = tx.send(buf[..n].to_vec());
        }
    });
    Ok(Proxy { addr, task })
}
