//! A cell as a neighbouring hop sends it, and a relay payload once layers are off:
//! decoding never panics; what decodes re-encodes to the same bytes; a relay message that
//! decodes survives its own encoding, and a BEGIN_OVERLAY's target that parses is
//! written back to the same bytes. Short input is padded with zeros to a whole cell
//! (a link only ever hands over whole cells).

use nodus_onion::cell::{CELL_LEN, Cell, RelayCommand, RelayMsg};
use nodus_onion::client::{overlay_target, parse_overlay_target};

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
        if m.command == RelayCommand::BeginOverlay
            && let Some((peer, protocol)) = parse_overlay_target(&m.data)
        {
            let again = overlay_target(&peer, protocol).expect("what parsed fits a cell");
            assert_eq!(again, m.data, "a parsed target writes back to its bytes");
        }
    }
}
