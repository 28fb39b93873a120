//! On-demand ping with the standard libp2p ping protocol (`/ipfs/ping/1.0.0`): 32 random
//! bytes out, the same 32 bytes back. The ping behaviour answers the remote side, so any
//! libp2p peer (js-libp2p included) can be pinged.

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Stream, StreamProtocol};
use rand::RngCore;

use crate::NetError;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn round_trip(stream: &mut Stream) -> Result<Duration, NetError> {
    let mut payload = [0u8; 32];
    rand::rng().fill_bytes(&mut payload);
    let exchange = async {
        let start = Instant::now();
        stream.write_all(&payload).await?;
        stream.flush().await?;
        let mut back = [0u8; 32];
        stream.read_exact(&mut back).await?;
        if back != payload {
            return Err(NetError::PingMismatch);
        }
        Ok(start.elapsed())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| NetError::Timeout(TIMEOUT))?
}
