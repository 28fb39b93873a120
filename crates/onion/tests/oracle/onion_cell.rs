//! A cell as a neighbouring hop sends it, and a relay payload once layers are off:
//! decoding never panics; what decodes re-encodes to the same bytes; a relay message that
//! decodes survives its own encoding. Short input is padded with zeros to a whole cell
//! (a link only ever hands over whole cells).

use nodus_onion::cell::{CELL_LEN, Cell, RelayMsg};

pub fn check(data: &[u8]) {
    let mut bytes = [0u8; CELL_LEN];
    let n = data.len().min(CELL_LEN);
    bytes[..n].copy_from_slice(&data[..n]);
    let Ok(cell) = Cell::decode(&bytes) else {
        return;
    };
    let mut again = [0u8; CELL_LEN];
    cell.encode(&mut again);
    assert_eq!(again, bytes, "a decoded cell re-encodes to its bytes");
    if let Ok(m) = RelayMsg::decode(&cell.body) {
        let body = m.encode().expect("a decoded message fits a cell");
        assert_eq!(RelayMsg::decode(&body).expect("re-decodes"), m);
    }
}
