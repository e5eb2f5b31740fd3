//! A minimal borrowed bencode reader for tracker replies (BEP 3 encoding).
//!
//! Tracker replies are small dictionaries read once, so a borrowed value tree is simplest.
//! Invariants: recursion depth is bounded by [`MAX_DEPTH`]; every list or dict element
//! consumes at least two input bytes, so the tree's size is bounded by the input's; integers
//! that overflow `i64` are errors, not wraps.

/// Deepest nesting accepted; tracker replies need 3 (`d` → `files` → per-torrent `d`).
const MAX_DEPTH: usize = 16;

/// A decoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Keys in input order (not checked for sorting: we only read).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value of `key` in a dict.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub(crate) fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Where decoding failed: byte offset into the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BencodeError {
    pub(crate) offset: usize,
}

/// Decodes exactly one value spanning the whole input.
pub(crate) fn parse(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let mut pos = 0;
    let v = value(input, &mut pos, 0)?;
    if pos != input.len() {
        return Err(BencodeError { offset: pos });
    }
    Ok(v)
}

fn value<'a>(input: &'a [u8], pos: &mut usize, depth: usize) -> Result<Value<'a>, BencodeError> {
    let err = |offset| BencodeError { offset };
    if depth > MAX_DEPTH {
        return Err(err(*pos));
    }
    match input.get(*pos).copied() {
        Some(b'i') => {
            *pos += 1;
            let end = find(input, *pos, b'e')?;
            let n = parse_int(&input[*pos..end]).ok_or(err(*pos))?;
            *pos = end + 1;
            Ok(Value::Int(n))
        }
        Some(b'l') => {
            *pos += 1;
            let mut items = Vec::new();
            while input.get(*pos) != Some(&b'e') {
                items.push(value(input, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Value::List(items))
        }
        Some(b'd') => {
            *pos += 1;
            let mut entries = Vec::new();
            while input.get(*pos) != Some(&b'e') {
                let key = bytes(input, pos)?;
                let v = value(input, pos, depth + 1)?;
                entries.push((key, v));
            }
            *pos += 1;
            Ok(Value::Dict(entries))
        }
        Some(b'0'..=b'9') => Ok(Value::Bytes(bytes(input, pos)?)),
        _ => Err(err(*pos)),
    }
}

fn bytes<'a>(input: &'a [u8], pos: &mut usize) -> Result<&'a [u8], BencodeError> {
    let colon = find(input, *pos, b':')?;
    let len = std::str::from_utf8(&input[*pos..colon])
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or(BencodeError { offset: *pos })?;
    let start = colon + 1;
    // Bounded by the input before slicing: a lying length cannot allocate.
    let end = start
        .checked_add(len)
        .filter(|&e| e <= input.len())
        .ok_or(BencodeError { offset: *pos })?;
    *pos = end;
    Ok(&input[start..end])
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, BencodeError> {
    input
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == byte))
        .map(|i| from + i)
        .ok_or(BencodeError { offset: from })
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(digits).ok()?;
    // BEP 3: no leading zeros, no "-0".
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    if unsigned.is_empty()
        || !unsigned.bytes().all(|b| b.is_ascii_digit())
        || (unsigned.len() > 1 && unsigned.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_values() {
        let v = parse(b"d3:agei-3e5:itemsl1:ai7eee").unwrap();
        assert_eq!(v.get(b"age").and_then(Value::as_int), Some(-3));
        assert_eq!(
            v.get(b"items"),
            Some(&Value::List(vec![Value::Bytes(b"a"), Value::Int(7)]))
        );
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            &b""[..],
            b"i01e",
            b"i-0e",
            b"ie",
            b"5:abc",
            b"l",
            b"d1:a",
            b"i1ei2e",
            b"99999999999999999999999:x",
            b"i99999999999999999999e",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut deep = vec![b'l'; 10_000];
        deep.extend(vec![b'e'; 10_000]);
        assert!(parse(&deep).is_err());
    }
}
