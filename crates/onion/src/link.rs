//! Whole cells over one overlay stream (`/nodus/onion/1`): one stream per circuit per
//! link, so a link's stream is the circuit there and cells need no circuit id.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::OnionError;
use crate::cell::{CELL_LEN, Cell};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/onion/1");

/// The next cell, or `None` if the stream ended cleanly between cells. A stream that
/// ends inside a cell is an error.
pub async fn read_cell<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Cell>, OnionError> {
    let mut buf = [0u8; CELL_LEN];
    let mut have = 0;
    while have < CELL_LEN {
        let n = r.read(&mut buf[have..]).await?;
        if n == 0 {
            return if have == 0 {
                Ok(None)
            } else {
                Err(OnionError::Malformed(format!(
                    "stream ended {have} bytes into a cell"
                )))
            };
        }
        have += n;
    }
    Cell::decode(&buf).map(Some)
}

pub async fn write_cell<W: AsyncWrite + Unpin>(w: &mut W, cell: &Cell) -> Result<(), OnionError> {
    let mut buf = [0u8; CELL_LEN];
    cell.encode(&mut buf);
    w.write_all(&buf).await?;
    Ok(())
}
