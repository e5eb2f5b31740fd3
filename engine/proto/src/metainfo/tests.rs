//! Tests of metainfo parsing and building, against fixtures made by mktorrent and libtorrent
//! (see `src/tests/fixtures/make_fixtures.py`, which also defines the payloads).

use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;
use crate::bencode::OwnedValue;

const MKTORRENT_MULTI: &[u8] = include_bytes!("../tests/fixtures/mktorrent_multi.torrent");
const MKTORRENT_SINGLE: &[u8] = include_bytes!("../tests/fixtures/mktorrent_single.torrent");
const LT_V1_MULTI: &[u8] = include_bytes!("../tests/fixtures/libtorrent_v1_multi.torrent");
const LT_HYBRID_MULTI: &[u8] = include_bytes!("../tests/fixtures/libtorrent_hybrid_multi.torrent");
const LT_HYBRID_SINGLE: &[u8] =
    include_bytes!("../tests/fixtures/libtorrent_hybrid_single.torrent");

const FIXTURE_PIECE_LEN: u32 = 32 * 1024;
const FIXTURE_TRACKERS: [&str; 2] = [
    "http://tracker.example/announce",
    "udp://tracker.example:6969/announce",
];
/// The fixture directory `d`, as make_fixtures.py writes it: (path, length, seed).
const FIXTURE_MULTI: [(&str, u64, u64); 6] = [
    ("B", 1, 1),
    ("a b", 2, 2),
    ("a.txt", 5, 3),
    ("a/b", 3, 4),
    ("empty", 0, 0),
    ("sub/deep/blob", 70000, 5),
];

/// Mirrors `payload_byte` in make_fixtures.py.
fn payload_byte(seed: u64, i: u64) -> u8 {
    (((i * 31 + seed * 17) ^ (i >> 7)) & 0xff) as u8
}

fn payload(len: u64, seed: u64) -> Vec<u8> {
    (0..len).map(|i| payload_byte(seed, i)).collect()
}

fn components(p: &str) -> Vec<String> {
    p.split('/').map(str::to_owned).collect()
}

fn hashes_of(t: &NewTorrent, content: impl Fn(&[String]) -> Vec<u8>) -> Vec<[u8; 20]> {
    let mut hasher = PieceHasher::new(&t.lengths(FIXTURE_PIECE_LEN).unwrap());
    for (p, _) in t.files() {
        hasher.feed(&content(p));
    }
    hasher.finish()
}

fn sha1_hex(b: &[u8]) -> String {
    hex::encode(sha1_piece(b))
}

#[test]
fn reads_a_mktorrent_multi_file_torrent() {
    let m = ValidMetainfo::from_bytes(MKTORRENT_MULTI).unwrap();
    // The info-hash libtorrent reports for the same file.
    assert_eq!(
        m.info_hash().to_hex(),
        "0fa133080e0a8175d76231d330135c94fc5ccdcb"
    );
    assert_eq!(m.name(), "d");
    assert!(m.is_multi_file());
    let files: Vec<(String, u64, u64)> = m
        .files()
        .iter()
        .map(|f| (f.display_path(), f.length, f.offset))
        .collect();
    assert_eq!(
        files,
        vec![
            ("d/B".to_owned(), 1, 0),
            ("d/a b".to_owned(), 2, 1),
            ("d/a.txt".to_owned(), 5, 3),
            ("d/a/b".to_owned(), 3, 8),
            ("d/empty".to_owned(), 0, 11),
            ("d/sub/deep/blob".to_owned(), 70000, 11),
        ]
    );
    assert_eq!(m.lengths().total_len(), 70011);
    assert_eq!(m.lengths().num_pieces(), 3);
    assert_eq!(m.piece_hashes().len(), 3);
    assert_eq!(m.trackers(), FIXTURE_TRACKERS);
    assert_eq!(m.comment(), Some("fixture"));
    assert_eq!(m.created_by(), Some("mktorrent 1.1"));
    assert_eq!(m.creation_date(), None);
    assert!(!m.private());
}

#[test]
fn reads_a_mktorrent_single_file_torrent() {
    let m = ValidMetainfo::from_bytes(MKTORRENT_SINGLE).unwrap();
    assert_eq!(
        m.info_hash().to_hex(),
        "48cbc2f94627002e966b50798db44090ac295115"
    );
    assert!(!m.is_multi_file());
    assert_eq!(m.files().len(), 1);
    assert_eq!(m.files()[0].path, vec!["single.bin"]);
    assert_eq!(m.files()[0].length, 100_000);
    assert_eq!(m.lengths().num_pieces(), 4);
    let whole = payload(100_000, 6);
    for p in m.lengths().pieces() {
        let start = usize::try_from(m.lengths().piece_offset(p)).unwrap();
        let end = start + m.lengths().piece_len(p) as usize;
        assert_eq!(m.piece_hash(p), &sha1_piece(&whole[start..end]));
    }
}

#[test]
fn reads_libtorrent_torrents_v1_and_hybrid() {
    // Info-hashes as python3-libtorrent 2.0.8 reports them (info_hashes().v1).
    let cases: [(&[u8], &str, usize); 3] = [
        (LT_V1_MULTI, "bb88d27809bc36da8feb4ec01a9022fd8c66eda7", 6),
        (
            LT_HYBRID_MULTI,
            "75fd4a277b43601fe739503792317baa91f25d3a",
            11,
        ),
        (
            LT_HYBRID_SINGLE,
            "2caad24d21888f775bed1e483647d9939b4898a3",
            1,
        ),
    ];
    for (bytes, hash, files) in cases {
        let m = ValidMetainfo::from_bytes(bytes).unwrap();
        assert_eq!(m.info_hash().to_hex(), hash);
        assert_eq!(m.files().len(), files);
        assert_eq!(m.trackers(), FIXTURE_TRACKERS);
    }
    // Hybrid torrents align files with BEP 47 padding files.
    let m = ValidMetainfo::from_bytes(LT_HYBRID_MULTI).unwrap();
    let pads: Vec<String> = m
        .files()
        .iter()
        .filter(|f| f.pad)
        .map(FileEntry::display_path)
        .collect();
    assert_eq!(pads.len(), 5);
    assert!(pads.iter().all(|p| p.starts_with("d/.pad/")));
    assert_eq!(m.lengths().total_len() % u64::from(FIXTURE_PIECE_LEN), 0);
}

#[test]
fn info_hash_is_taken_over_the_raw_info_bytes() {
    // Unsorted keys and a key we do not model: a re-encoding would change both.
    let info = b"d4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa6:lengthi5e7:x-extrali1eee";
    let mut torrent = b"d4:info".to_vec();
    torrent.extend_from_slice(info);
    torrent.push(b'e');
    let m = ValidMetainfo::from_bytes(&torrent).unwrap();
    assert_eq!(m.info_bytes(), info);
    assert_eq!(m.info_hash().to_hex(), sha1_hex(info));
    let reencoded = crate::bencode::decode(info)
        .unwrap()
        .to_owned_value()
        .encode();
    assert_ne!(m.info_hash().to_hex(), sha1_hex(&reencoded));
}

#[test]
fn builder_matches_mktorrent_byte_for_byte() {
    // Given in an order unlike mktorrent's: the builder sorts.
    let mut files: Vec<(Vec<String>, u64)> = FIXTURE_MULTI
        .iter()
        .map(|(p, len, _)| (components(p), *len))
        .collect();
    files.reverse();
    let t = NewTorrent::directory("d", files).unwrap();
    let order: Vec<String> = t.files().iter().map(|(p, _)| path::join(p)).collect();
    assert_eq!(
        order,
        ["B", "a b", "a.txt", "a/b", "empty", "sub/deep/blob"]
    );
    let hashes = hashes_of(&t, |p| {
        let (_, len, seed) = FIXTURE_MULTI
            .iter()
            .find(|(q, _, _)| components(q) == p)
            .unwrap();
        payload(*len, *seed)
    });
    let built = t
        .build(FIXTURE_PIECE_LEN, &hashes, &TorrentOptions::default())
        .unwrap();
    let ours = ValidMetainfo::from_bytes(&built).unwrap();
    let theirs = ValidMetainfo::from_bytes(MKTORRENT_MULTI).unwrap();
    assert_eq!(ours.info_bytes(), theirs.info_bytes());
    assert_eq!(ours.info_hash(), theirs.info_hash());
    assert_eq!(ours.files(), theirs.files());

    let single = NewTorrent::single_file("single.bin", 100_000).unwrap();
    let hashes = hashes_of(&single, |_| payload(100_000, 6));
    let built = single
        .build(FIXTURE_PIECE_LEN, &hashes, &TorrentOptions::default())
        .unwrap();
    let ours = ValidMetainfo::from_bytes(&built).unwrap();
    let theirs = ValidMetainfo::from_bytes(MKTORRENT_SINGLE).unwrap();
    assert_eq!(ours.info_bytes(), theirs.info_bytes());
}

#[test]
fn build_writes_trackers_private_date_and_comment() {
    let t = NewTorrent::directory("prod", vec![(components("bin/app"), 40_000)]).unwrap();
    let hashes = hashes_of(&t, |_| vec![7; 40_000]);
    let options = TorrentOptions {
        trackers: vec![
            "udp://t1:6969/announce".into(),
            " http://t2/announce ".into(),
            "udp://t1:6969/announce".into(),
        ],
        creation_date: Some(1_700_000_000),
        private: true,
        comment: Some("release 1.2".into()),
    };
    let built = t.build(FIXTURE_PIECE_LEN, &hashes, &options).unwrap();
    let m = ValidMetainfo::from_bytes(&built).unwrap();
    assert_eq!(m.announce(), Some("udp://t1:6969/announce"));
    assert_eq!(
        m.announce_list(),
        ["udp://t1:6969/announce", "http://t2/announce"]
    );
    let root = crate::bencode::decode(&built).unwrap();
    let tiers = root.get(b"announce-list").unwrap().as_list().unwrap();
    assert_eq!(tiers.len(), 2, "one tier per tracker");
    assert!(m.private());
    assert_eq!(m.creation_date(), Some(1_700_000_000));
    assert_eq!(m.comment(), Some("release 1.2"));
    assert_eq!(m.created_by(), Some(CREATED_BY));
    assert_eq!(m.files()[0].path, ["prod", "bin", "app"]);
    assert_eq!(m.info_hash().to_hex(), sha1_hex(m.info_bytes()));
}

#[test]
fn build_refuses_bad_input() {
    assert_eq!(
        NewTorrent::directory("d", vec![]).unwrap_err(),
        Error::NoFiles
    );
    assert_eq!(
        NewTorrent::directory("d", vec![(components("a"), 0)]).unwrap_err(),
        Error::EmptyPayload
    );
    assert_eq!(
        NewTorrent::single_file("big", u64::MAX).unwrap_err(),
        Error::TotalTooLarge
    );
    assert!(matches!(
        NewTorrent::directory("d", vec![(components("a/../../x"), 1)]),
        Err(Error::PathEscapes {
            problem: PathProblem::ParentDir,
            ..
        })
    ));
    assert!(matches!(
        NewTorrent::single_file("..", 1),
        Err(Error::PathEscapes { .. })
    ));
    assert_eq!(
        NewTorrent::directory("d", vec![(components("a"), 1), (components("a/b"), 1)]).unwrap_err(),
        Error::DuplicatePath { path: "a".into() }
    );
    let t = NewTorrent::single_file("f", 100).unwrap();
    for bad in [0, 1000, 8192, MAX_PIECE_LEN * 2] {
        assert_eq!(
            t.lengths(bad).unwrap_err(),
            Error::PieceLengthNotPowerOfTwo {
                len: bad,
                max: MAX_PIECE_LEN
            }
        );
    }
    assert_eq!(
        t.build(16384, &[], &TorrentOptions::default()).unwrap_err(),
        Error::PieceCountMismatch {
            expected: 1,
            received: 0
        }
    );
}

#[test]
fn auto_piece_len_targets_at_most_2048_pieces() {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    let table = [
        (1, 16 * KIB),
        (32 * MIB, 16 * KIB),
        (32 * MIB + 1, 32 * KIB),
        (64 * MIB, 32 * KIB),
        (256 * MIB, 128 * KIB),
        (GIB, 512 * KIB),
        (8 * GIB, 4 * MIB),
        (32 * GIB, 16 * MIB),
        (1024 * GIB, 16 * MIB),
    ];
    for (total, want) in table {
        assert_eq!(u64::from(auto_piece_len(total)), want, "total {total}");
    }
}

/// A torrent dict with the given `info` entries (and `pieces` computed when absent).
fn torrent_with(info: Vec<(&str, OwnedValue)>) -> Vec<u8> {
    let mut info = OwnedValue::dict(info);
    if let OwnedValue::Dict(d) = &mut info {
        d.entry(b"name".to_vec())
            .or_insert_with(|| OwnedValue::string("t"));
        d.entry(b"piece length".to_vec())
            .or_insert(OwnedValue::Int(16384));
        d.entry(b"pieces".to_vec())
            .or_insert_with(|| OwnedValue::Bytes(vec![0; 20]));
    }
    OwnedValue::dict([("info", info)]).encode()
}

fn file(path: &[&str], len: i64) -> OwnedValue {
    OwnedValue::dict([
        ("length", OwnedValue::Int(len)),
        (
            "path",
            OwnedValue::List(path.iter().map(OwnedValue::string).collect()),
        ),
    ])
}

fn files(list: Vec<OwnedValue>) -> Vec<(&'static str, OwnedValue)> {
    vec![("files", OwnedValue::List(list))]
}

#[test]
fn file_names_that_leave_the_output_directory_are_refused() {
    let cases: Vec<(Vec<u8>, &str, PathProblem)> = vec![
        (
            torrent_with(files(vec![file(&["..", "etc", "passwd"], 1)])),
            "t/../etc/passwd",
            PathProblem::ParentDir,
        ),
        (
            torrent_with(files(vec![file(&["", "etc", "passwd"], 1)])),
            "t//etc/passwd",
            PathProblem::EmptyComponent,
        ),
        (
            torrent_with(files(vec![file(&["/etc/passwd"], 1)])),
            "t//etc/passwd",
            PathProblem::Separator,
        ),
        (
            torrent_with(files(vec![file(&["a", ".", "b"], 1)])),
            "t/a/./b",
            PathProblem::CurrentDir,
        ),
        (
            torrent_with(files(vec![file(&["..\\..\\win.ini"], 1)])),
            "t/..\\..\\win.ini",
            PathProblem::Separator,
        ),
        (
            torrent_with(files(vec![file(&["a\0b"], 1)])),
            "t/a\0b",
            PathProblem::Nul,
        ),
        (
            torrent_with(files(vec![file(&[], 1)])),
            "t",
            PathProblem::NoComponents,
        ),
        (
            torrent_with(vec![
                ("name", OwnedValue::string("..")),
                ("length", OwnedValue::Int(1)),
            ]),
            "..",
            PathProblem::ParentDir,
        ),
        (
            torrent_with(vec![
                ("name", OwnedValue::string("/tmp/x")),
                ("length", OwnedValue::Int(1)),
            ]),
            "/tmp/x",
            PathProblem::Separator,
        ),
        (
            torrent_with(vec![
                ("name", OwnedValue::string("")),
                ("length", OwnedValue::Int(1)),
            ]),
            "",
            PathProblem::EmptyComponent,
        ),
    ];
    for (bytes, path, problem) in cases {
        assert_eq!(
            ValidMetainfo::from_bytes(&bytes).unwrap_err(),
            Error::PathEscapes {
                path: path.into(),
                problem
            },
            "{path:?}"
        );
    }
}

#[test]
fn utf8_name_variant_is_preferred_and_checked_too() {
    let bytes = torrent_with(vec![
        ("name", OwnedValue::string("ok")),
        ("name.utf-8", OwnedValue::string("..")),
        ("length", OwnedValue::Int(1)),
    ]);
    assert!(matches!(
        ValidMetainfo::from_bytes(&bytes),
        Err(Error::PathEscapes { .. })
    ));
    let bytes = torrent_with(vec![
        ("name", OwnedValue::Bytes(vec![0xff, 0xfe])),
        ("name.utf-8", OwnedValue::string("caf\u{e9}")),
        ("length", OwnedValue::Int(1)),
    ]);
    assert_eq!(
        ValidMetainfo::from_bytes(&bytes).unwrap().name(),
        "caf\u{e9}"
    );
}

#[test]
fn duplicate_and_conflicting_paths_are_refused() {
    let dup = torrent_with(files(vec![file(&["a"], 1), file(&["a"], 1)]));
    assert_eq!(
        ValidMetainfo::from_bytes(&dup).unwrap_err(),
        Error::DuplicatePath { path: "t/a".into() }
    );
    let file_and_dir = torrent_with(files(vec![file(&["a", "b"], 1), file(&["a"], 1)]));
    assert_eq!(
        ValidMetainfo::from_bytes(&file_and_dir).unwrap_err(),
        Error::DuplicatePath { path: "t/a".into() }
    );
    let fine = torrent_with(files(vec![file(&["a", "b"], 1), file(&["a!"], 0)]));
    assert!(ValidMetainfo::from_bytes(&fine).is_ok());
}

#[test]
fn structural_errors_name_the_field_and_numbers() {
    let i = OwnedValue::Int;
    let s = OwnedValue::string;
    let len1 = || ("length", i(1));
    let cases: Vec<(Vec<u8>, Error)> = vec![
        (b"i1e".to_vec(), Error::NotADictionary("the torrent")),
        (b"de".to_vec(), Error::MissingField("info")),
        (
            OwnedValue::dict([("info", i(1))]).encode(),
            Error::NotADictionary("info"),
        ),
        (
            OwnedValue::dict([("info", OwnedValue::dict([len1()]))]).encode(),
            Error::MissingField("name"),
        ),
        (
            torrent_with(vec![len1(), ("pieces", i(3))]),
            Error::WrongType {
                field: "pieces",
                expected: "string",
                found: "integer",
            },
        ),
        (
            torrent_with(vec![len1(), ("pieces", OwnedValue::Bytes(vec![0; 30]))]),
            Error::PiecesNotMultipleOf20 { len: 30 },
        ),
        (
            torrent_with(vec![
                ("length", i(40_000)),
                ("pieces", OwnedValue::Bytes(vec![0; 20])),
            ]),
            Error::PieceCountMismatch {
                expected: 3,
                received: 1,
            },
        ),
        (
            torrent_with(vec![len1(), ("piece length", i(0))]),
            Error::BadPieceLength {
                len: 0,
                max: MAX_PIECE_LEN,
            },
        ),
        (
            torrent_with(vec![len1(), ("piece length", i(-5))]),
            Error::BadPieceLength {
                len: -5,
                max: MAX_PIECE_LEN,
            },
        ),
        (
            torrent_with(vec![len1(), ("piece length", i(1 << 40))]),
            Error::BadPieceLength {
                len: 1 << 40,
                max: MAX_PIECE_LEN,
            },
        ),
        (
            torrent_with(vec![("length", i(-1))]),
            Error::NegativeLength { len: -1 },
        ),
        (torrent_with(vec![("length", i(0))]), Error::EmptyPayload),
        (torrent_with(vec![]), Error::MissingField("length")),
        (
            torrent_with(vec![
                len1(),
                ("files", OwnedValue::List(vec![file(&["a"], 1)])),
            ]),
            Error::AmbiguousLayout,
        ),
        (torrent_with(files(vec![])), Error::NoFiles),
        (
            torrent_with(files(vec![
                file(&["a"], i64::MAX),
                file(&["b"], i64::MAX),
                file(&["c"], i64::MAX),
            ])),
            Error::TotalTooLarge,
        ),
        (
            torrent_with(files(vec![s("a")])),
            Error::WrongType {
                field: "files",
                expected: "dictionary",
                found: "string",
            },
        ),
        (
            torrent_with(vec![len1(), ("name", OwnedValue::Bytes(vec![0xc3, 0x28]))]),
            Error::NotUtf8 { field: "name" },
        ),
        (
            torrent_with(vec![
                ("length", i(u32::MAX as i64 * 2)),
                ("piece length", i(1)),
            ]),
            Error::Lengths(LengthsError::TooManyPieces {
                pieces: u32::MAX as u64 * 2,
            }),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            ValidMetainfo::from_bytes(&bytes).unwrap_err(),
            want,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(matches!(
        ValidMetainfo::from_bytes(b"d4:info"),
        Err(Error::Bencode(_))
    ));
}

#[test]
fn error_messages_carry_the_numbers() {
    let e = Error::PieceCountMismatch {
        expected: 3,
        received: 1,
    };
    assert_eq!(e.to_string(), "1 piece hashes for 3 pieces");
    let e = Error::PathEscapes {
        path: "t/../x".into(),
        problem: PathProblem::ParentDir,
    };
    assert_eq!(
        e.to_string(),
        "file path \"t/../x\" is unsafe: it has a `..` component"
    );
}

#[test]
fn announce_list_is_flattened_deduplicated_and_tolerant() {
    let s = OwnedValue::string;
    let l = OwnedValue::List;
    let mut t = crate::bencode::decode(&torrent_with(vec![("length", OwnedValue::Int(1))]))
        .unwrap()
        .to_owned_value();
    if let OwnedValue::Dict(d) = &mut t {
        d.insert(b"announce".to_vec(), s("http://b/"));
        d.insert(
            b"announce-list".to_vec(),
            l(vec![
                l(vec![s("http://a/"), s("http://b/")]),
                s("not a tier"),
                l(vec![
                    OwnedValue::Int(3),
                    s(""),
                    s("http://a/"),
                    s("udp://c:1"),
                ]),
            ]),
        );
    }
    let m = ValidMetainfo::from_bytes(&t.encode()).unwrap();
    assert_eq!(m.announce_list(), ["http://a/", "http://b/", "udp://c:1"]);
    assert_eq!(m.trackers(), ["http://b/", "http://a/", "udp://c:1"]);
}

#[test]
fn never_panics_on_truncated_or_corrupted_fixtures() {
    for fixture in [
        MKTORRENT_MULTI,
        MKTORRENT_SINGLE,
        LT_V1_MULTI,
        LT_HYBRID_MULTI,
        LT_HYBRID_SINGLE,
    ] {
        for n in 0..fixture.len() {
            assert!(ValidMetainfo::from_bytes(&fixture[..n]).is_err());
        }
        let mut copy = fixture.to_vec();
        for i in 0..copy.len() {
            for flip in [0x01, 0x80, 0xff] {
                copy[i] ^= flip;
                let _ = ValidMetainfo::from_bytes(&copy);
                copy[i] ^= flip;
            }
        }
    }
}

fn arb_files() -> impl Strategy<Value = Vec<(Vec<String>, u64)>> {
    let component = "[a-zA-Z0-9 ._-]{1,6}".prop_filter("safe", |c| c != "." && c != "..");
    proptest::collection::btree_map(
        proptest::collection::vec(component, 1..4),
        0u64..50_000,
        1..8,
    )
    .prop_map(|m| m.into_iter().collect::<Vec<_>>())
    .prop_filter(
        "no conflicts, not empty",
        |files: &Vec<(Vec<String>, u64)>| {
            first_path_conflict(files.iter().map(|(p, _)| p.as_slice())).is_none()
                && files.iter().map(|(_, l)| l).sum::<u64>() > 0
        },
    )
}

proptest! {
    #[test]
    fn build_then_parse_gives_the_same_torrent(files in arb_files(), seed in any::<u64>()) {
        let t = NewTorrent::directory("root", files).unwrap();
        let content = |p: &[String]| {
            let (_, len) = t.files().iter().find(|(q, _)| q == p).unwrap();
            payload(*len, seed % 1000 + p.len() as u64)
        };
        let hashes = hashes_of(&t, content);
        let built = t.build(FIXTURE_PIECE_LEN, &hashes, &TorrentOptions::default()).unwrap();
        let m = ValidMetainfo::from_bytes(&built).unwrap();
        prop_assert_eq!(m.info_hash().to_hex(), sha1_hex(m.info_bytes()));
        prop_assert_eq!(m.piece_hashes(), &hashes[..]);
        prop_assert_eq!(m.lengths().total_len(), t.total_len());
        let got: Vec<(Vec<String>, u64)> =
            m.files().iter().map(|f| (f.path[1..].to_vec(), f.length)).collect();
        prop_assert_eq!(&got[..], t.files());
        let mut offset = 0;
        for f in m.files() {
            prop_assert_eq!(f.offset, offset);
            offset += f.length;
        }
    }

    #[test]
    fn piece_hashes_do_not_depend_on_chunking(
        data in proptest::collection::vec(any::<u8>(), 1..100_000),
        cuts in proptest::collection::vec(0usize..100_000, 0..20),
    ) {
        let lengths = Lengths::new(data.len() as u64, 16384).unwrap();
        let mut hasher = PieceHasher::new(&lengths);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        for w in cuts.windows(2) {
            hasher.feed(&data[w[0]..w[1]]);
        }
        prop_assert_eq!(hasher.bytes_fed(), data.len() as u64);
        let want: Vec<[u8; 20]> = data.chunks(16384).map(sha1_piece).collect();
        prop_assert_eq!(hasher.finish(), want);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ValidMetainfo::from_bytes(&bytes);
    }
}
