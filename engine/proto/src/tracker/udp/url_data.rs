//! BEP 41 URL data: the announce URL's path and query carried as options after a UDP
//! announce request. <https://www.bittorrent.org/beps/bep_0041.html>

/// BEP 41 option types.
mod option {
    pub(super) const END_OF_OPTIONS: u8 = 0;
    pub(super) const NOP: u8 = 1;
    pub(super) const URL_DATA: u8 = 2;
}

/// BEP 41: a sequence of options after the announce body. `EndOfOptions` (0) stops,
/// `NOP` (1) is one byte, every other type carries a length byte and that many bytes;
/// `URLData` (2) payloads are concatenated. Malformed or truncated options end the parse
/// without failing the announce: the announce itself was complete.
pub(super) fn parse_url_data(mut opts: &[u8]) -> Vec<u8> {
    let mut url = Vec::new();
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            option::END_OF_OPTIONS => break,
            option::NOP => opts = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len);
                if rest.len() < len {
                    break;
                }
                if kind == option::URL_DATA {
                    url.extend_from_slice(&rest[..len]);
                }
                opts = &rest[len..];
            }
        }
    }
    url
}

/// Writes `url` as URL-data options of at most 255 bytes each, then `EndOfOptions`;
/// writes nothing for an empty `url`.
pub(super) fn encode_url_data(url: &[u8], out: &mut Vec<u8>) {
    if url.is_empty() {
        return;
    }
    for chunk in url.chunks(usize::from(u8::MAX)) {
        out.push(option::URL_DATA);
        out.push(u8::try_from(chunk.len()).expect("chunks of at most 255"));
        out.extend_from_slice(chunk);
    }
    out.push(option::END_OF_OPTIONS);
}
