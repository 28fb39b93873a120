//! The ERC-20 the demo and the bench deploy, and the ABI encoding they call it with.

use nodus_chain::primitives::keccak256;

/// OpenZeppelin's ERC-20 (interop/eth/Token.sol) as solc 0.8.37 compiles it
/// (`node interop/eth/compile.mjs`), so the demo needs no compiler.
pub const TOKEN_BYTECODE: &str = include_str!("token.hex");
pub fn word(bytes: &[u8]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[32 - bytes.len()..].copy_from_slice(bytes);
    w
}

pub fn call_data(selector: &str, args: &[[u8; 32]]) -> Vec<u8> {
    let mut d = keccak256(selector.as_bytes())[..4].to_vec();
    for a in args {
        d.extend_from_slice(a);
    }
    d
}
