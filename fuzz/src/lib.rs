//! Shared helpers of the fuzz targets: the fixed policy the relay target enforces, and how
//! an input is cut into chunks or header lines.

/// The relay target's policy (the one the bad-input corpus test uses).
pub const POLICY: &str = include_str!("../../crates/gateway/tests/fixtures/policy-bad-inputs.json");

/// Cuts `data` into chunks: the first byte of each chunk gives its length (1 to 64), so the
/// fuzzer controls where the cuts fall.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let len = (usize::from(n) % 64 + 1).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        out.push(chunk);
        rest = tail;
    }
    out
}
