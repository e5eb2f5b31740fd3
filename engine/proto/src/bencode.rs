//! Bencode (BEP 3): a span-recording decoder and a canonical encoder.
//!
//! The decoder borrows from its input and records, for every value, the exact byte range it
//! occupies ([`Node::span`], [`Node::raw`]). That is what the info-hash needs: SHA-1 over the
//! `info` dictionary *as it appears in the file*, unknown keys and all, never over a
//! re-encoding (a re-encoding silently drops or reorders what we did not model).
//!
//! Invariants of [`decode`], which reads bytes from files and from the network:
//! - it never panics and never recurses deeper than [`MAX_DEPTH`] containers;
//! - a string's announced length is checked against the bytes left *before* anything is
//!   sliced or allocated, so memory use is bounded by a small multiple of the input;
//! - integers are canonical (`i0e`, no leading zeros, no `-0`) and fit an `i64`;
//! - a dictionary key appears at most once. Keys need not be sorted: torrents with unsorted
//!   keys exist in the wild and libtorrent reads them, and the info-hash is taken over the
//!   raw bytes anyway.
//!
//! [`OwnedValue`] is the encoder's input; its dictionaries are `BTreeMap`s, so keys come out
//! sorted as raw byte strings, as BEP 3 requires.
//!
//! `serde_bencode` is deliberately not used on untrusted input: it recurses without a depth
//! bound, so a few kilobytes of `l` overflow the stack.

use std::collections::BTreeMap;
use std::ops::Range;

use thiserror::Error;

/// Deepest nesting of lists and dictionaries accepted. Real torrents and extension messages
/// nest 4 levels at most; 64 keeps the recursion far from any stack limit.
pub const MAX_DEPTH: usize = 64;

/// Why an input is not valid bencode, and where.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("invalid bencode at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    /// What is wrong there.
    pub kind: DecodeErrorKind,
}

/// The kinds of [`DecodeError`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The input ends inside a value.
    #[error("input ends inside a value")]
    UnexpectedEof,
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{0:02x}")]
    UnexpectedByte(u8),
    /// An integer or string length that is empty, has a leading zero, or is `-0`.
    #[error("malformed integer")]
    BadInteger,
    /// An integer that does not fit an `i64`.
    #[error("integer does not fit 64 bits")]
    IntegerOverflow,
    /// A string whose announced length exceeds the input left (`len` saturates at `u64::MAX`).
    #[error("string length {len} exceeds the {remaining} bytes left")]
    StringTooLong {
        /// Announced length.
        len: u64,
        /// Bytes left after the `:`.
        remaining: usize,
    },
    /// Lists and dictionaries nested deeper than `max`.
    #[error("nesting deeper than {max} levels")]
    TooDeep {
        /// The bound, [`MAX_DEPTH`].
        max: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a string")]
    KeyNotString,
    /// The same key twice in one dictionary (the offset is the second occurrence).
    #[error("dictionary key repeated")]
    DuplicateKey,
    /// Bytes left over after the one value the input should hold.
    #[error("{extra} bytes after the value")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

/// One decoded value, borrowing from the input, with the byte range it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    span: Range<usize>,
    raw: &'a [u8],
    value: Value<'a>,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i…e`
    Int(i64),
    /// `len:bytes`
    Bytes(&'a [u8]),
    /// `l…e`
    List(Vec<Node<'a>>),
    /// `d…e`, in input order (keys are unique, not necessarily sorted).
    Dict(Vec<(&'a [u8], Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Byte range of this value in the input given to [`decode`].
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The exact input bytes of this value (`&input[self.span()]`).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The decoded value.
    pub fn value(&self) -> &Value<'a> {
        &self.value
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if this is a string and valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements, if this is a list.
    pub fn as_list(&self) -> Option<&[Node<'a>]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries in input order, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Node<'a>)]> {
        match &self.value {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value under `key`, if this is a dictionary that has it.
    pub fn get(&self, key: &[u8]) -> Option<&Node<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// "integer", "string", "list" or "dictionary", for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// An owned copy, e.g. to re-encode canonically.
    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.value {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(l) => OwnedValue::List(l.iter().map(Node::to_owned_value).collect()),
            Value::Dict(d) => OwnedValue::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Decodes `input`, which must hold exactly one value.
pub fn decode(input: &[u8]) -> Result<Node<'_>, DecodeError> {
    let (node, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: DecodeErrorKind::TrailingBytes {
                extra: input.len() - used,
            },
        });
    }
    Ok(node)
}

/// Decodes the value at the start of `input` and returns it with the number of bytes it
/// used; whatever follows is left alone (BEP 9 `ut_metadata` appends raw data to a dict).
pub fn decode_prefix(input: &[u8]) -> Result<(Node<'_>, usize), DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let node = d.value(0)?;
    Ok((node, d.pos))
}

/// Byte range of the value under `key` in the top-level dictionary of `input` (e.g. the
/// `info` dictionary of a .torrent), or `None` if the input is not a dictionary or lacks it.
pub fn dict_value_span(input: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, DecodeError> {
    Ok(decode(input)?.get(key).map(Node::span))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(self.err(self.pos, DecodeErrorKind::UnexpectedEof))
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, DecodeError> {
        let start = self.pos;
        let value = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Value::Int(self.integer(b'e')?)
            }
            b'0'..=b'9' => Value::Bytes(self.string()?),
            c @ (b'l' | b'd') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(start, DecodeErrorKind::TooDeep { max: MAX_DEPTH }));
                }
                self.pos += 1;
                if c == b'l' {
                    self.list(depth + 1)?
                } else {
                    self.dict(depth + 1)?
                }
            }
            other => return Err(self.err(start, DecodeErrorKind::UnexpectedByte(other))),
        };
        Ok(Node {
            span: start..self.pos,
            raw: &self.input[start..self.pos],
            value,
        })
    }

    /// Reads a canonical decimal integer terminated by `end` and consumes the terminator.
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        // Accumulate as a negative number so that i64::MIN is representable.
        let mut acc: i64 = 0;
        loop {
            let c = self.peek()?;
            if c == end {
                break;
            }
            if !c.is_ascii_digit() {
                return Err(self.err(self.pos, DecodeErrorKind::UnexpectedByte(c)));
            }
            acc = acc
                .checked_mul(10)
                .and_then(|a| a.checked_sub(i64::from(c - b'0')))
                .ok_or(self.err(start, DecodeErrorKind::IntegerOverflow))?;
            self.pos += 1;
        }
        let digits = &self.input[digits_start..self.pos];
        let leading_zero = digits.len() > 1 && digits[0] == b'0';
        if digits.is_empty() || leading_zero || (negative && digits == b"0") {
            return Err(self.err(start, DecodeErrorKind::BadInteger));
        }
        self.pos += 1; // terminator
        if negative {
            Ok(acc)
        } else {
            acc.checked_neg()
                .ok_or(self.err(start, DecodeErrorKind::IntegerOverflow))
        }
    }

    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let mut len: u64 = 0;
        let mut saturated = false;
        loop {
            let c = self.peek()?;
            if c == b':' {
                break;
            }
            if !c.is_ascii_digit() {
                return Err(self.err(self.pos, DecodeErrorKind::UnexpectedByte(c)));
            }
            match len
                .checked_mul(10)
                .and_then(|l| l.checked_add(u64::from(c - b'0')))
            {
                Some(l) => len = l,
                None => saturated = true,
            }
            self.pos += 1;
        }
        if self.pos - start > 1 && self.input[start] == b'0' {
            return Err(self.err(start, DecodeErrorKind::BadInteger));
        }
        self.pos += 1; // ':'
        let remaining = self.input.len() - self.pos;
        let fits = usize::try_from(len)
            .ok()
            .filter(|&l| !saturated && l <= remaining);
        let Some(len) = fits else {
            let len = if saturated { u64::MAX } else { len };
            return Err(self.err(start, DecodeErrorKind::StringTooLong { len, remaining }));
        };
        let s = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn list(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        let mut items = Vec::new();
        while self.peek()? != b'e' {
            items.push(self.value(depth)?);
        }
        self.pos += 1;
        Ok(Value::List(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        let mut entries: Vec<(&'a [u8], Node<'a>)> = Vec::new();
        let mut key_offsets = Vec::new();
        let mut sorted = true;
        while self.peek()? != b'e' {
            let key_start = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return Err(self.err(key_start, DecodeErrorKind::KeyNotString));
            }
            let key = self.string()?;
            if let Some((prev, _)) = entries.last() {
                if key == *prev {
                    return Err(self.err(key_start, DecodeErrorKind::DuplicateKey));
                }
                sorted &= key > *prev;
            }
            let value = self.value(depth)?;
            entries.push((key, value));
            key_offsets.push(key_start);
        }
        self.pos += 1;
        if !sorted {
            // Rare path (unsorted keys): sort a copy to find duplicates anywhere.
            let mut keys: Vec<(&[u8], usize)> = entries
                .iter()
                .map(|(k, _)| *k)
                .zip(key_offsets.iter().copied())
                .collect();
            keys.sort_unstable();
            if let Some(w) = keys.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(self.err(w[1].1, DecodeErrorKind::DuplicateKey));
            }
        }
        Ok(Value::Dict(entries))
    }
}

/// An owned bencode value: what the encoder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary; a `BTreeMap` keeps keys in the raw-byte order BEP 3 requires.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string holding `s`.
    pub fn string(s: impl AsRef<[u8]>) -> Self {
        OwnedValue::Bytes(s.as_ref().to_vec())
    }

    /// A dictionary from `(key, value)` pairs (a later duplicate key replaces an earlier one).
    pub fn dict<K: AsRef<[u8]>>(entries: impl IntoIterator<Item = (K, OwnedValue)>) -> Self {
        OwnedValue::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v))
                .collect(),
        )
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            OwnedValue::Bytes(b) => encode_bytes(b, out),
            OwnedValue::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            OwnedValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    fn kind(input: &[u8]) -> DecodeErrorKind {
        decode(input).unwrap_err().kind
    }

    #[test]
    fn spans_cover_each_value_exactly() {
        let input = b"d3:fooli1e4:spame4:infod1:xi-7eee";
        let root = decode(input).unwrap();
        assert_eq!(root.span(), 0..input.len());
        let info = root.get(b"info").unwrap();
        assert_eq!(info.raw(), b"d1:xi-7ee");
        assert_eq!(&input[info.span()], info.raw());
        let foo = root.get(b"foo").unwrap().as_list().unwrap();
        assert_eq!(foo[0].span(), 7..10);
        assert_eq!(foo[1].as_str(), Some("spam"));
        assert_eq!(info.get(b"x").unwrap().as_int(), Some(-7));
    }

    #[test]
    fn dict_value_span_finds_a_top_level_key() {
        let input = b"d8:announce3:url4:infod4:name1:aee";
        let span = dict_value_span(input, b"info").unwrap().unwrap();
        assert_eq!(&input[span], b"d4:name1:ae");
        assert_eq!(dict_value_span(input, b"nope").unwrap(), None);
        assert_eq!(dict_value_span(b"i1e", b"info").unwrap(), None);
    }

    #[test]
    fn integers_must_be_canonical() {
        assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
        assert_eq!(decode(b"i-12e").unwrap().as_int(), Some(-12));
        let max = format!("i{}e", i64::MAX);
        let min = format!("i{}e", i64::MIN);
        assert_eq!(decode(max.as_bytes()).unwrap().as_int(), Some(i64::MAX));
        assert_eq!(decode(min.as_bytes()).unwrap().as_int(), Some(i64::MIN));
        for bad in [&b"ie"[..], b"i-e", b"i-0e", b"i03e", b"i-03e"] {
            assert_eq!(kind(bad), DecodeErrorKind::BadInteger, "{bad:?}");
        }
        assert_eq!(kind(b"i1x2e"), DecodeErrorKind::UnexpectedByte(b'x'));
        assert_eq!(
            kind(b"i9223372036854775808e"),
            DecodeErrorKind::IntegerOverflow
        );
        assert_eq!(
            kind(b"i-9223372036854775809e"),
            DecodeErrorKind::IntegerOverflow
        );
    }

    #[test]
    fn string_length_is_checked_before_slicing() {
        assert_eq!(
            decode(b"5:abc").unwrap_err(),
            DecodeError {
                offset: 0,
                kind: DecodeErrorKind::StringTooLong {
                    len: 5,
                    remaining: 3
                }
            }
        );
        assert_eq!(
            kind(b"99999999999999999999999:x"),
            DecodeErrorKind::StringTooLong {
                len: u64::MAX,
                remaining: 1
            }
        );
        assert_eq!(kind(b"03:abc"), DecodeErrorKind::BadInteger);
        assert_eq!(decode(b"0:").unwrap().as_bytes(), Some(&b""[..]));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = [vec![b'l'; MAX_DEPTH], vec![b'e'; MAX_DEPTH]].concat();
        assert!(decode(&ok).is_ok());
        let deep = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
        assert_eq!(
            decode(&deep).unwrap_err(),
            DecodeError {
                offset: MAX_DEPTH,
                kind: DecodeErrorKind::TooDeep { max: MAX_DEPTH }
            }
        );
        // A megabyte of `l` is refused without exhausting the stack.
        assert_eq!(
            kind(&vec![b'l'; 1 << 20]),
            DecodeErrorKind::TooDeep { max: MAX_DEPTH }
        );
    }

    #[test]
    fn duplicate_keys_are_refused_sorted_or_not() {
        assert_eq!(
            decode(b"d1:ai1e1:ai2ee").unwrap_err(),
            DecodeError {
                offset: 7,
                kind: DecodeErrorKind::DuplicateKey
            }
        );
        assert_eq!(
            decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap_err(),
            DecodeError {
                offset: 13,
                kind: DecodeErrorKind::DuplicateKey
            }
        );
    }

    #[test]
    fn unsorted_keys_are_tolerated_and_kept_in_input_order() {
        let root = decode(b"d1:bi1e1:ai2ee").unwrap();
        let keys: Vec<_> = root.as_dict().unwrap().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![&b"b"[..], b"a"]);
        // Re-encoding sorts them, which is why hashes use the raw span instead.
        assert_eq!(root.to_owned_value().encode(), b"d1:ai2e1:bi1ee");
    }

    #[test]
    fn malformed_structure_is_reported_with_its_offset() {
        assert_eq!(
            decode(b"di1ei2ee").unwrap_err(),
            DecodeError {
                offset: 1,
                kind: DecodeErrorKind::KeyNotString
            }
        );
        assert_eq!(
            decode(b"i1ei2e").unwrap_err(),
            DecodeError {
                offset: 3,
                kind: DecodeErrorKind::TrailingBytes { extra: 3 }
            }
        );
        assert_eq!(kind(b"x"), DecodeErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind(b""), DecodeErrorKind::UnexpectedEof);
        assert_eq!(kind(b"l"), DecodeErrorKind::UnexpectedEof);
        assert_eq!(kind(b"d1:a"), DecodeErrorKind::UnexpectedEof);
    }

    #[test]
    fn decode_prefix_leaves_trailing_data() {
        let (node, used) = decode_prefix(b"d1:ai1eeRAWDATA").unwrap();
        assert_eq!(used, 8);
        assert_eq!(node.get(b"a").unwrap().as_int(), Some(1));
    }

    #[test]
    fn encoder_sorts_keys_as_raw_bytes() {
        let v = OwnedValue::dict([
            ("b", OwnedValue::Int(1)),
            ("B", OwnedValue::Int(2)),
            ("a", OwnedValue::List(vec![OwnedValue::string("x")])),
        ]);
        assert_eq!(v.encode(), b"d1:Bi2e1:al1:xe1:bi1ee".to_vec());
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(OwnedValue::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn same_after_conversion(v in arb_value()) {
            let bytes = v.encode();
            let node = decode(&bytes).unwrap();
            prop_assert_eq!(node.span(), 0..bytes.len());
            prop_assert_eq!(node.to_owned_value(), v);
            prop_assert_eq!(node.to_owned_value().encode(), bytes);
        }

        #[test]
        fn every_truncation_is_an_error(v in arb_value()) {
            let bytes = v.encode();
            for n in 0..bytes.len() {
                let err = decode(&bytes[..n]).unwrap_err();
                prop_assert!(err.offset <= n);
            }
        }

        #[test]
        fn garbage_never_panics_and_spans_stay_in_bounds(
            input in proptest::collection::vec(
                prop_oneof![Just(b'i'), Just(b'l'), Just(b'd'), Just(b'e'), Just(b':'),
                            Just(b'-'), b'0'..=b'9', any::<u8>()],
                0..64)
        ) {
            match decode(&input) {
                Ok(node) => {
                    prop_assert_eq!(node.span(), 0..input.len());
                    fn check(n: &Node<'_>, input: &[u8]) {
                        assert_eq!(&input[n.span()], n.raw());
                        match n.value() {
                            Value::List(l) => l.iter().for_each(|c| check(c, input)),
                            Value::Dict(d) => d.iter().for_each(|(_, c)| check(c, input)),
                            _ => {}
                        }
                    }
                    check(&node, &input);
                }
                Err(e) => prop_assert!(e.offset <= input.len()),
            }
        }
    }
}
