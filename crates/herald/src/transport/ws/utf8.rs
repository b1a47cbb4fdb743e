//! Incremental UTF-8 validation of a text message that arrives in pieces
//! (fragments, or one frame over several reads), so that invalid text is
//! refused as soon as its first bad byte arrives (RFC 6455 §8.1, "fail
//! fast") rather than once the whole message is in.
//!
//! Each piece is checked with `std::str::from_utf8`; a character cut at
//! the end of a piece is kept (at most 3 bytes) and completed from the
//! start of the next one.

/// Validation state of one text message.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Utf8Check {
    /// The start of a character cut at the end of the last piece.
    tail: [u8; 4],
    tail_len: u8,
}

/// The length of the character a lead byte starts (a lead byte the standard
/// library left as "incomplete" is one of 0xC2..=0xF4).
fn char_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Bytes are not UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

impl Utf8Check {
    /// Checks the next piece of the message.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        if self.tail_len > 0 {
            let have = usize::from(self.tail_len);
            let need = char_width(self.tail[0]) - have;
            let take = need.min(bytes.len());
            self.tail[have..have + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take as u8;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.tail[..usize::from(self.tail_len)]) {
                Ok(_) => self.tail_len = 0,
                // Still cut (the piece was too short to complete it).
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &bytes[e.valid_up_to()..];
                self.tail[..rest.len()].copy_from_slice(rest);
                self.tail_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// Whether the pieces so far end on a character boundary (the message
    /// may end here).
    pub(crate) fn is_complete(&self) -> bool {
        self.tail_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(bytes: &[u8]) -> Result<bool, Invalid> {
        // Every way of cutting `bytes` in three agrees with the one-shot
        // check.
        let whole = std::str::from_utf8(bytes).is_ok();
        let mut verdict = None;
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut c = Utf8Check::default();
                let r = c
                    .feed(&bytes[..a])
                    .and_then(|()| c.feed(&bytes[a..b]))
                    .and_then(|()| c.feed(&bytes[b..]))
                    .map(|()| c.is_complete());
                let ok = matches!(r, Ok(true));
                assert_eq!(ok, whole, "{bytes:?} cut at {a}, {b}");
                verdict = Some(r);
            }
        }
        verdict.expect("at least one cut")
    }

    #[test]
    fn pieces_agree_with_the_whole() {
        let samples: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            "€ and 𝄞".as_bytes(),
            &[0xF0, 0x9F, 0x98, 0x80, b'x'],
            &[0xCE, 0xBA, 0xE1, 0xBD],             // cut at the end
            &[0xED, 0xA0, 0x80],                   // a surrogate
            &[0xF4, 0x90, 0x80, 0x80],             // above U+10FFFF
            &[0xC0, 0x80],                         // overlong
            &[0xE0, 0x80, 0x80],                   // overlong
            &[b'a', 0xFF, b'b'],                   // never valid
            &[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0x80], // stray continuation
        ];
        for s in samples {
            let _ = check_split(s);
        }
    }

    #[test]
    fn a_bad_byte_fails_as_soon_as_it_arrives() {
        let mut c = Utf8Check::default();
        assert_eq!(c.feed("κόσμε".as_bytes()), Ok(()));
        // A surrogate's second byte is already impossible.
        assert_eq!(c.feed(&[0xED]), Ok(()));
        assert_eq!(c.feed(&[0xA0]), Err(Invalid));
    }

    #[test]
    fn a_cut_character_is_not_complete() {
        let mut c = Utf8Check::default();
        c.feed(&[0xE2, 0x82]).unwrap();
        assert!(!c.is_complete());
        c.feed(&[0xAC]).unwrap();
        assert!(c.is_complete());
    }
}
