//! Modules the demo, the bench and the tests run without a C toolchain, written in the
//! WebAssembly text format (the C examples in `examples/compute/` need clang's
//! wasm32-wasi target, which `scripts/test` installs).

/// Counts the primes in `[N*SPAN, (N+1)*SPAN)`; argv `N [SPAN]`; prints `N count`.
pub const PRIMES_WAT: &str = include_str!("../../../examples/compute/primes.wat");

/// [`PRIMES_WAT`] as wasm.
pub fn primes() -> Vec<u8> {
    wat::parse_str(PRIMES_WAT).expect("the primes module is valid text")
}

/// The number of primes below `n`, by a sieve: what the primes projects must add up to.
pub fn primes_below(n: u64) -> u64 {
    let n = n as usize;
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

/// The sum of the counts in primes outputs (`N count` lines).
pub fn sum_counts<'a>(outputs: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
    outputs
        .into_iter()
        .map(|o| {
            std::str::from_utf8(o)
                .ok()?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sieve_counts() {
        assert_eq!(primes_below(10), 4);
        assert_eq!(primes_below(1_000_000), 78_498);
        assert_eq!(sum_counts([&b"0 4\n"[..], b"1 4\n"]), Some(8));
        assert_eq!(sum_counts([&b"junk"[..]]), None);
    }
}
