//! Table lines and messages: good and bad inputs, exact errors, and
//! round trips of what the target prints back.

use snapguard_dmtarget::*;

fn words(line: &str) -> Vec<&[u8]> {
    line.split_ascii_whitespace().map(str::as_bytes).collect()
}

fn pool(line: &str) -> Result<PoolTable<'_>, TableError> {
    let w = words(line);
    // Re-borrow the words from `line` so the result may outlive `w`.
    parse_pool_table(&w).map(|t| PoolTable {
        metadata_dev: sub(line, t.metadata_dev),
        data_dev: sub(line, t.data_dev),
        config: t.config,
    })
}

fn sub<'a>(line: &'a str, w: &str) -> &'a str {
    let i = line.find(w).expect("word from line");
    &line[i..i + w.len()]
}

fn volume(line: &str) -> Result<(String, u32), TableError> {
    parse_volume_table(&words(line)).map(|t| (t.pool_dev.to_string(), t.volume_id))
}

fn msg(line: &str) -> Result<Message, MessageError> {
    parse_message(&words(line))
}

fn pool_line(t: &PoolTable<'_>) -> String {
    let mut s = String::new();
    t.write_table(&mut s).unwrap();
    s
}

#[test]
fn pool_minimal() {
    let t = pool("/dev/meta /dev/data 128 10").unwrap();
    assert_eq!(t.metadata_dev, "/dev/meta");
    assert_eq!(t.data_dev, "/dev/data");
    assert_eq!(t.config.extent_sectors, 128);
    assert_eq!(t.config.extent_bytes(), 65536);
    assert_eq!(t.config.extent_shift(), 7);
    assert_eq!(t.config.low_water_extents, 10);
    assert_eq!(t.config.features, PoolFeatures::default());
    assert_eq!(pool_line(&t), "/dev/meta /dev/data 128 10 0");
}

#[test]
fn pool_extent_bounds() {
    assert_eq!(pool("a b 8 0").unwrap().config.extent_bytes(), 4096);
    assert_eq!(
        pool("a b 2097152 0").unwrap().config.extent_bytes(),
        1 << 30
    );
    for s in [8u64, 16, 64, 128, 1024, 1 << 20, 1 << 21] {
        assert_eq!(
            pool(&format!("a b {s} 0")).unwrap().config.extent_sectors,
            s
        );
    }
}

#[test]
fn pool_all_features() {
    let t = pool(
        "253:1 253:2 256 100 5 cache_mib:64 error_if_no_space read_only \
         no_discard_passdown skip_block_zeroing",
    )
    .unwrap();
    let f = t.config.features;
    assert!(f.skip_block_zeroing && f.read_only && f.error_if_no_space);
    assert_eq!(f.discard, Discard::NoPassdown);
    assert_eq!(f.cache_mib, Some(64));
    assert_eq!(f.count(), 5);
    // Printed back in canonical order.
    assert_eq!(
        pool_line(&t),
        "253:1 253:2 256 100 5 skip_block_zeroing no_discard_passdown read_only \
         error_if_no_space cache_mib:64"
    );
}

#[test]
fn pool_features_case_insensitive_like_dm_thin() {
    let t = pool("a b 8 0 3 SKIP_BLOCK_ZEROING Ignore_Discard CACHE_MIB:1").unwrap();
    assert!(t.config.features.skip_block_zeroing);
    assert_eq!(t.config.features.discard, Discard::Ignore);
    assert_eq!(t.config.features.cache_mib, Some(1));
    assert_eq!(
        pool_line(&t),
        "a b 8 0 3 skip_block_zeroing ignore_discard cache_mib:1"
    );
}

#[test]
fn pool_zero_feature_count() {
    let t = pool("a b 8 0 0").unwrap();
    assert_eq!(t.config.features, PoolFeatures::default());
}

#[test]
fn pool_low_water_full_range() {
    assert_eq!(
        pool("a b 8 18446744073709551615")
            .unwrap()
            .config
            .low_water_extents,
        u64::MAX
    );
}

#[test]
fn volume_ok() {
    assert_eq!(
        volume("/dev/mapper/pool 0").unwrap(),
        ("/dev/mapper/pool".into(), 0)
    );
    assert_eq!(
        volume("253:3 16777215").unwrap(),
        ("253:3".into(), 16_777_215)
    );
    let t = parse_volume_table(&words("253:3 42")).unwrap();
    let mut s = String::new();
    t.write_table(&mut s).unwrap();
    assert_eq!(s, "253:3 42");
}

#[test]
fn messages_ok() {
    assert_eq!(msg("create 0").unwrap(), Message::Create { id: 0 });
    assert_eq!(
        msg("delete 16777215").unwrap(),
        Message::Delete { id: 16_777_215 }
    );
    assert_eq!(
        msg("snapshot 1 2").unwrap(),
        Message::Snapshot { origin: 1, new: 2 }
    );
    assert_eq!(
        msg("set_transaction_id 0 18446744073709551615").unwrap(),
        Message::SetTransactionId {
            old: 0,
            new: u64::MAX
        }
    );
    assert_eq!(msg("CREATE 5").unwrap(), Message::Create { id: 5 });
}

#[test]
fn numbers() {
    assert_eq!(parse_u64(b"0"), Ok(0));
    assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
    assert_eq!(parse_u64(b"18446744073709551616"), Err(NumError::Overflow));
    assert_eq!(
        parse_u64(b"99999999999999999999x"),
        Err(NumError::NotDecimal)
    );
    assert_eq!(parse_u64(b""), Err(NumError::Empty));
    assert_eq!(parse_u64(b"+1"), Err(NumError::Sign));
    assert_eq!(parse_u64(b"-1"), Err(NumError::Sign));
    assert_eq!(parse_u64(b"01"), Err(NumError::LeadingZero));
    assert_eq!(parse_u64(b"00"), Err(NumError::LeadingZero));
    assert_eq!(parse_u64(b"0x10"), Err(NumError::NotDecimal));
    assert_eq!(parse_u64(b"1e3"), Err(NumError::NotDecimal));
    assert_eq!(parse_u64(b" 1"), Err(NumError::NotDecimal));
    assert_eq!(parse_u64("１".as_bytes()), Err(NumError::NotDecimal));
}

use Field::*;
use NumError::*;
use TableError as T;

/// Bad pool tables and the exact error each one gets.
fn bad_pools() -> Vec<(&'static str, TableError)> {
    vec![
        ("", T::PoolArgCount { got: 0 }),
        ("a b 128", T::PoolArgCount { got: 3 }),
        ("a a 128 0", T::SameDevice),
        (
            "a b x 0",
            T::Number {
                arg: 2,
                field: ExtentSectors,
                err: NotDecimal,
            },
        ),
        (
            "a b -128 0",
            T::Number {
                arg: 2,
                field: ExtentSectors,
                err: Sign,
            },
        ),
        (
            "a b +128 0",
            T::Number {
                arg: 2,
                field: ExtentSectors,
                err: Sign,
            },
        ),
        (
            "a b 0128 0",
            T::Number {
                arg: 2,
                field: ExtentSectors,
                err: LeadingZero,
            },
        ),
        (
            "a b 0x80 0",
            T::Number {
                arg: 2,
                field: ExtentSectors,
                err: NotDecimal,
            },
        ),
        (
            "a b 18446744073709551616 0",
            T::Number {
                arg: 2,
                field: ExtentSectors,
                err: Overflow,
            },
        ),
        ("a b 0 0", T::ExtentTooSmall { sectors: 0 }),
        ("a b 4 0", T::ExtentTooSmall { sectors: 4 }),
        ("a b 4194304 0", T::ExtentTooLarge { sectors: 4_194_304 }),
        ("a b 24 0", T::ExtentNotPowerOfTwo { sectors: 24 }),
        ("a b 192 0", T::ExtentNotPowerOfTwo { sectors: 192 }),
        (
            "a b 128 -1",
            T::Number {
                arg: 3,
                field: LowWater,
                err: Sign,
            },
        ),
        (
            "a b 128 1.5",
            T::Number {
                arg: 3,
                field: LowWater,
                err: NotDecimal,
            },
        ),
        (
            "a b 128 99999999999999999999",
            T::Number {
                arg: 3,
                field: LowWater,
                err: Overflow,
            },
        ),
        (
            "a b 128 0 x",
            T::Number {
                arg: 4,
                field: FeatureCount,
                err: NotDecimal,
            },
        ),
        (
            "a b 128 0 1",
            T::FeatureCountMismatch {
                declared: 1,
                given: 0,
            },
        ),
        (
            "a b 128 0 0 read_only",
            T::FeatureCountMismatch {
                declared: 0,
                given: 1,
            },
        ),
        (
            "a b 128 0 1 read_only skip_block_zeroing",
            T::FeatureCountMismatch {
                declared: 1,
                given: 2,
            },
        ),
        (
            "a b 128 0 6 a b c d e f",
            T::FeatureCountTooLarge { declared: 6 },
        ),
        ("a b 128 0 1 frobnicate", T::UnknownFeature { arg: 5 }),
        ("a b 128 0 1 read-only", T::UnknownFeature { arg: 5 }),
        (
            "a b 128 0 2 read_only read_only",
            T::DuplicateFeature {
                arg: 6,
                feature: Feature::ReadOnly,
            },
        ),
        (
            "a b 128 0 2 READ_ONLY read_only",
            T::DuplicateFeature {
                arg: 6,
                feature: Feature::ReadOnly,
            },
        ),
        (
            "a b 128 0 2 ignore_discard no_discard_passdown",
            T::ConflictingFeatures {
                arg: 6,
                first: Feature::IgnoreDiscard,
                second: Feature::NoDiscardPassdown,
            },
        ),
        (
            "a b 128 0 2 no_discard_passdown ignore_discard",
            T::ConflictingFeatures {
                arg: 6,
                first: Feature::NoDiscardPassdown,
                second: Feature::IgnoreDiscard,
            },
        ),
        (
            "a b 128 0 1 cache_mib",
            T::Number {
                arg: 5,
                field: CacheMib,
                err: Empty,
            },
        ),
        (
            "a b 128 0 1 cache_mib:",
            T::Number {
                arg: 5,
                field: CacheMib,
                err: Empty,
            },
        ),
        ("a b 128 0 1 cache_mib=4", T::UnknownFeature { arg: 5 }),
        (
            "a b 128 0 1 cache_mib:0",
            T::CacheMibRange { arg: 5, mib: 0 },
        ),
        (
            "a b 128 0 1 cache_mib:1025",
            T::CacheMibRange { arg: 5, mib: 1025 },
        ),
        (
            "a b 128 0 1 cache_mib:4294967297",
            T::CacheMibRange {
                arg: 5,
                mib: 4_294_967_297,
            },
        ),
        (
            "a b 128 0 1 cache_mib:+4",
            T::Number {
                arg: 5,
                field: CacheMib,
                err: Sign,
            },
        ),
        (
            "a b 128 0 2 cache_mib:4 cache_mib:8",
            T::DuplicateFeature {
                arg: 6,
                feature: Feature::CacheMib,
            },
        ),
    ]
}

fn bad_volumes() -> Vec<(&'static str, TableError)> {
    vec![
        ("", T::VolumeArgCount { got: 0 }),
        ("pool", T::VolumeArgCount { got: 1 }),
        ("pool 1 extra", T::VolumeArgCount { got: 3 }),
        (
            "pool x",
            T::Number {
                arg: 1,
                field: VolumeId,
                err: NotDecimal,
            },
        ),
        (
            "pool -1",
            T::Number {
                arg: 1,
                field: VolumeId,
                err: Sign,
            },
        ),
        (
            "pool 01",
            T::Number {
                arg: 1,
                field: VolumeId,
                err: LeadingZero,
            },
        ),
        (
            "pool 16777216",
            T::VolumeIdRange {
                arg: 1,
                id: 16_777_216,
            },
        ),
        (
            "pool 4294967296",
            T::VolumeIdRange {
                arg: 1,
                id: 4_294_967_296,
            },
        ),
        (
            "pool 18446744073709551616",
            T::Number {
                arg: 1,
                field: VolumeId,
                err: Overflow,
            },
        ),
    ]
}

fn bad_messages() -> Vec<(&'static str, MessageError)> {
    use MessageError as M;
    vec![
        ("", M::Empty),
        ("create_thin 1", M::UnknownCommand),
        (
            "create",
            M::ArgCount {
                command: "create",
                expected: 1,
                got: 0,
            },
        ),
        (
            "create 1 2",
            M::ArgCount {
                command: "create",
                expected: 1,
                got: 2,
            },
        ),
        (
            "delete",
            M::ArgCount {
                command: "delete",
                expected: 1,
                got: 0,
            },
        ),
        (
            "snapshot 1",
            M::ArgCount {
                command: "snapshot",
                expected: 2,
                got: 1,
            },
        ),
        (
            "set_transaction_id 1",
            M::ArgCount {
                command: "set_transaction_id",
                expected: 2,
                got: 1,
            },
        ),
        (
            "create x",
            M::Number {
                arg: 1,
                field: VolumeId,
                err: NotDecimal,
            },
        ),
        (
            "create 16777216",
            M::VolumeIdRange {
                arg: 1,
                id: 16_777_216,
            },
        ),
        (
            "delete -3",
            M::Number {
                arg: 1,
                field: VolumeId,
                err: Sign,
            },
        ),
        ("snapshot 1 1", M::SameVolume { id: 1 }),
        (
            "snapshot a 1",
            M::Number {
                arg: 1,
                field: OriginId,
                err: NotDecimal,
            },
        ),
        (
            "snapshot 1 020",
            M::Number {
                arg: 2,
                field: NewId,
                err: LeadingZero,
            },
        ),
        (
            "set_transaction_id x 1",
            M::Number {
                arg: 1,
                field: OldTransactionId,
                err: NotDecimal,
            },
        ),
        (
            "set_transaction_id 1 18446744073709551616",
            M::Number {
                arg: 2,
                field: NewTransactionId,
                err: Overflow,
            },
        ),
    ]
}

#[test]
fn bad_pool_tables() {
    let cases = bad_pools();
    assert!(cases.len() >= 25);
    for (line, want) in cases {
        assert_eq!(pool(line), Err(want), "pool table {line:?}");
        // Every error has a fixed message and a detailed text.
        assert!(!want.message().to_bytes().is_empty());
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn bad_volume_tables() {
    for (line, want) in bad_volumes() {
        assert_eq!(volume(line), Err(want), "volume table {line:?}");
    }
}

#[test]
fn bad_pool_messages() {
    for (line, want) in bad_messages() {
        assert_eq!(msg(line), Err(want), "message {line:?}");
        assert!(!want.message().to_bytes().is_empty());
    }
}

#[test]
fn bad_devices() {
    assert_eq!(
        parse_pool_table(&[b"", b"b", b"8", b"0"]),
        Err(T::EmptyDevice { arg: 0 })
    );
    assert_eq!(
        parse_pool_table(&[b"a", b"", b"8", b"0"]),
        Err(T::EmptyDevice { arg: 1 })
    );
    assert_eq!(
        parse_pool_table(&[b"a\xff", b"b", b"8", b"0"]),
        Err(T::BadDevice { arg: 0 })
    );
    assert_eq!(
        parse_pool_table(&[b"a", b"b c", b"8", b"0"]),
        Err(T::BadDevice { arg: 1 })
    );
    assert_eq!(
        parse_volume_table(&[b"p\tq", b"1"]),
        Err(T::BadDevice { arg: 0 })
    );
    assert_eq!(
        parse_volume_table(&[b"", b"1"]),
        Err(T::EmptyDevice { arg: 0 })
    );
}

#[test]
fn first_bad_argument_wins() {
    // Both the extent size and the features are bad: the extent size is
    // reported (argument order).
    assert_eq!(
        pool("a b 3 0 1 frob"),
        Err(T::ExtentTooSmall { sectors: 3 })
    );
    assert_eq!(
        pool("a b 8 x 1 frob"),
        Err(T::Number {
            arg: 3,
            field: LowWater,
            err: NotDecimal
        })
    );
}

#[test]
fn error_texts() {
    let e = pool("a b 24 0").unwrap_err();
    assert_eq!(
        e.message().to_str().unwrap(),
        "Invalid extent size: not a power of two"
    );
    assert_eq!(
        e.to_string(),
        "extent size 24 sectors is not a power of two"
    );
    assert_eq!(e.arg(), Some(2));
    let e = pool("a b 8 0 1 frob").unwrap_err();
    assert_eq!(e.message().to_str().unwrap(), "Unrecognised pool feature");
    assert_eq!(e.arg(), Some(5));
    let e = msg("snapshot 1 x").unwrap_err();
    assert_eq!(e.message().to_str().unwrap(), "Invalid new id");
    assert_eq!(e.to_string(), "argument 2 (new id): not a decimal number");
}

#[test]
fn messages_print_back() {
    for line in [
        "create 7",
        "delete 0",
        "snapshot 3 4",
        "set_transaction_id 5 6",
    ] {
        assert_eq!(msg(line).unwrap().to_string(), line);
    }
}

#[test]
fn status_lines() {
    let s = PoolStatus {
        transaction_id: 3,
        meta_used: 10,
        meta_total: 1024,
        data_used: 0,
        data_total: 16,
        mode: PoolMode::OutOfDataSpace,
        discard: Discard::Ignore,
        no_space: NoSpacePolicy::Error,
        needs_check: true,
    };
    let mut out = String::new();
    s.write(&mut out).unwrap();
    assert_eq!(
        out,
        "3 10/1024 0/16 out_of_data_space ignore_discard error_if_no_space needs_check"
    );
    assert_eq!(PoolStatus::parse(&out), Ok(s));
    assert_eq!(
        PoolStatus::parse("0 1/2 3/4 rw discard_passdown queue_if_no_space -")
            .unwrap()
            .mode,
        PoolMode::ReadWrite
    );
    assert_eq!(
        PoolStatus::parse("0 1/2 3/4 rw discard_passdown queue_if_no_space"),
        Err(StatusParseError { word: 6 })
    );
    assert_eq!(
        PoolStatus::parse("0 1-2 3/4 rw discard_passdown queue_if_no_space -"),
        Err(StatusParseError { word: 1 })
    );

    let mut out = String::new();
    VolumeStatus::Fail.write(&mut out).unwrap();
    assert_eq!(out, "Fail");
    let v = VolumeStatus::Active {
        mapped_sectors: 0,
        highest_mapped: None,
        shared_sectors: 0,
    };
    out.clear();
    v.write(&mut out).unwrap();
    assert_eq!(out, "0 - 0");
    assert_eq!(VolumeStatus::parse(&out), Ok(v));
    assert_eq!(VolumeStatus::parse("Fail"), Ok(VolumeStatus::Fail));
    assert_eq!(
        VolumeStatus::parse("Fail 1"),
        Err(StatusParseError { word: 1 })
    );
    assert_eq!(
        VolumeStatus::parse("128 127"),
        Err(StatusParseError { word: 2 })
    );
}

#[test]
fn split_words_like_dm() {
    let mut out = [&b""[..]; 4];
    assert_eq!(split_words(b"  a\tb  c ", &mut out), Some(3));
    assert_eq!(&out[..3], &[&b"a"[..], b"b", b"c"]);
    assert_eq!(split_words(b"a b c d e", &mut out), None);
}
