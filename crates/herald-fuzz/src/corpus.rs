//! The seed corpus: every frame of the socketcluster-server 20 capture
//! (`corpus/socketcluster-v2-frames.txt`, embedded at build time), and
//! seeds for the envelope and token formats.

use crate::targets::Target;

const CAPTURE: &str = include_str!("../corpus/socketcluster-v2-frames.txt");

/// The frames of the capture: each `->`/`<-` line holds one frame as a
/// JSON string.
pub fn capture_frames() -> Vec<Vec<u8>> {
    CAPTURE
        .lines()
        .filter_map(|line| {
            line.strip_prefix("-> ")
                .or_else(|| line.strip_prefix("<- "))
        })
        .filter_map(|s| serde_json::from_str::<String>(s.trim()).ok())
        .map(String::into_bytes)
        .collect()
}

/// The seeds of a target.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    match target {
        Target::Inbound => {
            let mut seeds = capture_frames();
            seeds.push(
                br##"[{"event":"#subscribe","data":{"channel":"a"},"cid":1},{"event":"t"}]"##
                    .to_vec(),
            );
            seeds.push(br##"{"event":"#subscribe","data":{"channel":"chat:a","recover":{"offset":41,"epoch":"xY"}},"cid":2}"##.to_vec());
            seeds.push(br##"{"event":"#publish","data":{"channel":"c","data":1,"offset":7,"epoch":"e1"}}"##.to_vec());
            seeds
        }
        Target::Envelope => vec![
            b"h1|p|0||2|ab\"d\"".to_vec(),
            b"h1|p|7|e|1|c1".to_vec(),
            br##"h1|j|0||6|chat:a{"channel":"chat:a","client":"id1","user":null}"##.to_vec(),
            b"h1|l|0||1|c{}".to_vec(),
        ],
        Target::Jwt => capture_frames()
            .iter()
            .filter_map(|f| {
                let v: serde_json::Value = serde_json::from_slice(f).ok()?;
                Some(v["data"]["token"].as_str()?.as_bytes().to_vec())
            })
            .chain([b"garbage".to_vec(), b"a.b.c".to_vec()])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_frames_are_read() {
        let frames = capture_frames();
        assert!(frames.len() > 20, "{}", frames.len());
        assert!(
            frames
                .iter()
                .any(|f| f.starts_with(b"{\"event\":\"#handshake\""))
        );
        assert!(!seeds(Target::Jwt).is_empty());
    }
}
