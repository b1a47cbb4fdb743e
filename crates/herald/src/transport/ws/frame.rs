//! WebSocket frames (RFC 6455 §5): the header of a frame from a client,
//! the header of a frame to a client, masking, close codes.
//!
//! Pure functions over byte slices, so that the reader can decode in place
//! in whatever buffer holds the bytes (the worker thread's scratch buffer
//! or a socket's own partial-frame buffer).

use super::WsError;

/// A frame's opcode (RFC 6455 §5.2). Reserved opcodes are refused when the
/// header is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The largest control frame payload (RFC 6455 §5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest header of a frame the server sends (no mask).
pub(crate) const MAX_SERVER_HEADER: usize = 10;

/// A decoded client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: [u8; 4],
    /// Payload length.
    pub(crate) len: usize,
    /// Header length (where the payload starts).
    pub(crate) header_len: usize,
}

impl Head {
    /// Header and payload.
    pub(crate) fn frame_len(&self) -> usize {
        self.header_len + self.len
    }
}

/// Decodes the header of a client frame at the start of `buf`: `None`
/// while `buf` holds only part of it. Refuses what RFC 6455 forbids a
/// client (no extension is negotiated, so the reserved bits must be 0) and
/// a payload longer than `max_payload`.
pub(crate) fn decode_head(buf: &[u8], max_payload: usize) -> Result<Option<Head>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let Some(opcode) = OpCode::from_bits(b0 & 0x0F) else {
        return Err(WsError::Protocol("reserved opcode"));
    };
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("unmasked frame from a client"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(b);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(WsError::Protocol("payload length with the high bit set"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(WsError::Protocol("control frame payload over 125 bytes"));
        }
    }
    if len > max_payload as u64 {
        return Err(WsError::TooBig { max: max_payload });
    }
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        len: len as usize,
        header_len: at + 4,
    }))
}

/// Writes the header of a final, unmasked server frame into `out` and
/// returns its length.
pub(crate) fn encode_head(opcode: OpCode, len: usize, out: &mut [u8; MAX_SERVER_HEADER]) -> usize {
    out[0] = 0x80 | opcode.bits();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Unmasks `buf`, the payload bytes from `offset` on, in place.
pub(crate) fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let r = offset % 4;
    let key = [
        mask[r],
        mask[(r + 1) % 4],
        mask[(r + 2) % 4],
        mask[(r + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Chunks of 8 keep the position modulo 4.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Whether a peer may send close code `code` (RFC 6455 §7.4): the
/// registered codes but those that must never be on the wire, and the
/// ranges for libraries and applications.
pub(crate) fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A client frame for tests: `first` is FIN/opcode, the payload masked
/// with `mask`.
#[cfg(test)]
pub(super) fn masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut v = vec![first];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decode_at_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let frame = masked(0x81, &payload, [1, 2, 3, 4]);
            let head = decode_head(&frame, usize::MAX).unwrap().unwrap();
            assert_eq!(head.len, len);
            assert!(head.fin);
            assert_eq!(head.opcode, OpCode::Text);
            assert_eq!(head.mask, [1, 2, 3, 4]);
            assert_eq!(head.frame_len(), frame.len());
            // Every prefix of the header is "not yet".
            for cut in 0..head.header_len {
                assert_eq!(decode_head(&frame[..cut], usize::MAX).unwrap(), None);
            }
        }
    }

    #[test]
    fn forbidden_headers_are_refused() {
        let proto = |b: &[u8]| matches!(decode_head(b, 1 << 20), Err(WsError::Protocol(_)));
        assert!(proto(&[0xC1, 0x80]), "RSV1");
        assert!(proto(&[0x83, 0x80]), "reserved opcode");
        assert!(proto(&[0x81, 0x00]), "unmasked");
        assert!(proto(&[0x09, 0x80]), "fragmented ping");
        assert!(proto(&[0x89, 0xFE, 0x00, 0x7E]), "ping of 126 bytes");
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(proto(&huge), "high bit");
        assert!(matches!(
            decode_head(&[0x82, 0xFE, 0x01, 0x00], 255),
            Err(WsError::TooBig { max: 255 })
        ));
    }

    #[test]
    fn unmask_matches_bytewise_at_any_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for offset in 0..8 {
            let mut fast = data.clone();
            unmask(&mut fast, mask, offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(i + offset) % 4])
                .collect();
            assert_eq!(fast, slow, "offset {offset}");
        }
    }

    #[test]
    fn server_headers_encode_every_length_form() {
        let mut out = [0u8; MAX_SERVER_HEADER];
        assert_eq!(encode_head(OpCode::Text, 5, &mut out), 2);
        assert_eq!(out[..2], [0x81, 5]);
        assert_eq!(encode_head(OpCode::Binary, 300, &mut out), 4);
        assert_eq!(out[..4], [0x82, 126, 1, 44]);
        assert_eq!(encode_head(OpCode::Text, 70000, &mut out), 10);
        assert_eq!(out[..2], [0x81, 127]);
        assert_eq!(u64::from_be_bytes(out[2..10].try_into().unwrap()), 70000);
    }

    #[test]
    fn close_codes() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4100, 4999] {
            assert!(valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!valid_close_code(bad), "{bad}");
        }
    }
}
