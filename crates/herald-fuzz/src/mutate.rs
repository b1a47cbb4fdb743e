//! Mutations of an input: the byte-level edits of a classic mutational
//! fuzzer (flip, set, insert, delete, duplicate, splice with another input)
//! plus dictionary tokens of the formats under test (JSON punctuation,
//! edge numbers, escapes, protocol event names, envelope separators), so
//! that mutants of a valid frame stay close enough to valid to reach the
//! parser's deeper paths.

use rand::Rng;
use rand::rngs::SmallRng;

/// Tokens worth inserting: each one switches a parser into another path.
pub const DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\\uDFFF\\uD800",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"-1e-999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.0000000000000000000000001",
    b"\"event\":",
    b"\"data\":",
    b"\"cid\":",
    b"\"rid\":",
    b"\"channel\":",
    b"\"recover\":{\"offset\":1,\"epoch\":\"e\"}",
    b"\"#handshake\"",
    b"\"#publish\"",
    b"\"#subscribe\"",
    b"\"#authenticate\"",
    b"\"#herald/history\"",
    b"h1|",
    b"|",
    b"|p|",
    b"|j|",
    b".",
    b"eyJ",
    b"\"alg\":\"none\"",
    b"\"alg\":\"HS256\"",
    b"\"exp\":",
    b"\"nbf\":",
    b"\xff",
    b"\xc3\x28",
    b"\xf0\x9f\x92\xa9",
    b"\x00",
];

/// Applies 1 to 8 random edits to `input`, splicing from `other` at times.
/// The result is at most `max_len` bytes.
pub fn mutate(rng: &mut SmallRng, input: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = rng.random_range(1..=8);
    for _ in 0..edits {
        edit(rng, &mut out, other);
    }
    out.truncate(max_len);
    out
}

fn edit(rng: &mut SmallRng, out: &mut Vec<u8>, other: &[u8]) {
    let len = out.len();
    let at = |rng: &mut SmallRng, n: usize| if n == 0 { 0 } else { rng.random_range(0..=n) };
    match rng.random_range(0..10) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            out[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            out[i] = rng.random();
        }
        2 => {
            let i = at(rng, len);
            let n = rng.random_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            out.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(32));
            out.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a range (grows nesting and batches).
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(64));
            let copy = out[i..i + n].to_vec();
            let j = at(rng, out.len());
            let times = rng.random_range(1..=16);
            for _ in 0..times {
                out.splice(j..j, copy.iter().copied());
            }
        }
        5 if !other.is_empty() => {
            // Splice: a head of this input, a tail of another.
            let i = at(rng, len);
            let j = rng.random_range(0..other.len());
            out.truncate(i);
            out.extend_from_slice(&other[j..]);
        }
        6 if len > 0 => {
            let i = rng.random_range(0..len);
            out.truncate(i);
        }
        _ => {
            let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
            let i = at(rng, len);
            if rng.random_bool(0.5) || len == 0 {
                out.splice(i..i, token.iter().copied());
            } else {
                // Overwrite instead of insert.
                let end = (i + token.len()).min(len);
                out.splice(i..end, token.iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutants_are_bounded_and_differ() {
        let mut rng = SmallRng::seed_from_u64(7);
        let input = br##"{"event":"#publish","data":{"channel":"c","data":1},"cid":2}"##;
        let mut changed = 0;
        for _ in 0..1000 {
            let m = mutate(&mut rng, input, b"h1|p|0||1|c1", 128);
            assert!(m.len() <= 128);
            if m != input {
                changed += 1;
            }
        }
        assert!(changed > 950, "{changed}");
    }
}
