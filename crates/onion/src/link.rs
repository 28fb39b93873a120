//! Whole cells over one overlay stream (`/nodus/onion/1`): one stream per circuit per
//! link, so a link's stream is the circuit there and cells need no circuit id.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::OnionError;
use crate::cell::{BODY_LEN, Cell, Command};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/onion/1");

/// The next cell, or `None` if the stream ended cleanly between cells. A stream that
/// ends inside a cell is an error. Read straight into the cell's body.
pub async fn read_cell<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Cell>, OnionError> {
    let mut command = [0u8; 1];
    if r.read(&mut command).await? == 0 {
        return Ok(None);
    }
    let command = Command::try_from(command[0])?;
    let mut body = Box::new([0u8; BODY_LEN]);
    let mut have = 0;
    while have < BODY_LEN {
        let n = r.read(&mut body[have..]).await?;
        if n == 0 {
            return Err(OnionError::Malformed(format!(
                "stream ended {} bytes into a cell",
                have + 1
            )));
        }
        have += n;
    }
    Ok(Some(Cell { command, body }))
}

/// Writes `cell` as it is on the wire, its command byte then its body.
pub async fn write_cell<W: AsyncWrite + Unpin>(w: &mut W, cell: &Cell) -> Result<(), OnionError> {
    w.write_all(&[cell.command as u8]).await?;
    w.write_all(&cell.body[..]).await?;
    Ok(())
}
