//! Whole cells over one overlay stream (`/nodus/onion/1`): one stream per circuit per
//! link, so a link's stream is the circuit there and cells need no circuit id.
//!
//! An open circuit reads its links through a [`BufReader`] and writes them through a
//! [`BufWriter`] of [`LINK_BUFFER`] bytes, flushed whenever nothing more is ready to
//! go: a busy circuit moves sixteen cells per call into the transport instead of one
//! (two, command byte and body), an idle one waits for nothing.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::OnionError;
use crate::cell::{BODY_LEN, Cell, Command};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/onion/1");

/// Bytes a link's reader and writer buffer: sixteen cells.
pub const LINK_BUFFER: usize = 16 * crate::cell::CELL_LEN;

pub use futures::io::{BufReader, BufWriter};

/// A link's reading half, buffered.
pub fn reader<R: AsyncRead>(r: R) -> BufReader<R> {
    BufReader::with_capacity(LINK_BUFFER, r)
}

/// A link's writing half, buffered: flush it before waiting for more to send.
pub fn writer<W: AsyncWrite>(w: W) -> BufWriter<W> {
    BufWriter::with_capacity(LINK_BUFFER, w)
}

/// The next thing for a writer task to send: at once if one is ready, else after what
/// `w` buffered has gone out. `None` once nothing more can come or `w` failed.
pub async fn next_or_flush<T, W: AsyncWrite + Unpin>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
    w: &mut BufWriter<W>,
) -> Option<T> {
    match rx.try_recv() {
        Ok(m) => Some(m),
        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
            w.flush().await.ok()?;
            rx.recv().await
        }
    }
}

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
