//! Property tests: printed table lines, messages and status lines parse
//! back to the same value; arbitrary words never panic the parsers; the
//! number parser agrees with the standard library on canonical numbers.

use proptest::prelude::*;
use snapguard_dmtarget::*;

fn words(line: &str) -> Vec<&[u8]> {
    line.split_ascii_whitespace().map(str::as_bytes).collect()
}

fn discard() -> impl Strategy<Value = Discard> {
    prop_oneof![
        Just(Discard::Passdown),
        Just(Discard::NoPassdown),
        Just(Discard::Ignore)
    ]
}

fn features() -> impl Strategy<Value = PoolFeatures> {
    (
        any::<bool>(),
        discard(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(MIN_CACHE_MIB..=MAX_CACHE_MIB),
    )
        .prop_map(|(z, d, r, e, c)| PoolFeatures {
            skip_block_zeroing: z,
            discard: d,
            read_only: r,
            error_if_no_space: e,
            cache_mib: c,
        })
}

fn config() -> impl Strategy<Value = PoolConfig> {
    (3u32..=21, any::<u64>(), features()).prop_map(|(shift, lw, f)| PoolConfig {
        extent_sectors: 1 << shift,
        low_water_extents: lw,
        features: f,
    })
}

fn dev() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/:._-]{1,40}"
}

fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Words that look like the real ones, mutated.
        prop::sample::select(vec![
            "skip_block_zeroing",
            "ignore_discard",
            "no_discard_passdown",
            "read_only",
            "error_if_no_space",
            "cache_mib:64",
            "cache_mib:",
            "0",
            "1",
            "5",
            "8",
            "128",
            "create",
            "delete",
            "snapshot",
            "set_transaction_id",
            "16777215",
            "16777216",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        "[0-9]{1,22}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn status() -> impl Strategy<Value = PoolStatus> {
    (
        any::<[u64; 5]>(),
        prop::sample::select(vec![
            PoolMode::ReadWrite,
            PoolMode::ReadOnly,
            PoolMode::OutOfDataSpace,
            PoolMode::Fail,
        ]),
        discard(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(n, mode, discard, err, check)| PoolStatus {
            transaction_id: n[0],
            meta_used: n[1],
            meta_total: n[2],
            data_used: n[3],
            data_total: n[4],
            mode,
            discard,
            no_space: if err {
                NoSpacePolicy::Error
            } else {
                NoSpacePolicy::Queue
            },
            needs_check: check,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// What `dmsetup table` shows for a pool loads back as the same pool.
    #[test]
    fn pool_table_round_trip(cfg in config(), m in dev(), d in dev()) {
        prop_assume!(m != d);
        let mut line = String::new();
        cfg.write_table(&mut line, &m, &d).unwrap();
        let t = parse_pool_table(&words(&line)).unwrap();
        prop_assert_eq!(t.config, cfg);
        prop_assert_eq!(t.metadata_dev, m.as_str());
        prop_assert_eq!(t.data_dev, d.as_str());
        prop_assert_eq!(cfg.features.count() <= MAX_FEATURE_ARGS, true);
    }

    /// Features in any order and any ASCII case give the same config,
    /// printed in one canonical order.
    #[test]
    fn pool_features_any_order(f in features(), seed in any::<u64>(), upper in any::<u64>()) {
        let mut canon = String::new();
        f.write(&mut canon).unwrap();
        let mut ws: Vec<String> = canon.split(' ').skip(1).map(String::from).collect();
        // Deterministic shuffle and case change from the seeds.
        let n = ws.len();
        for i in (1..n).rev() {
            ws.swap(i, (seed.rotate_left(i as u32) as usize) % (i + 1));
        }
        for (i, w) in ws.iter_mut().enumerate() {
            if upper >> (i % 64) & 1 == 1 {
                *w = w.to_ascii_uppercase();
            }
        }
        let line = format!("m d 8 0 {} {}", n, ws.join(" "));
        let t = parse_pool_table(&words(&line)).unwrap();
        prop_assert_eq!(t.config.features, f);
    }

    /// Arbitrary words never panic; whatever parses prints back to a line
    /// that parses to the same table.
    #[test]
    fn pool_table_arbitrary(ws in prop::collection::vec(word(), 0..12)) {
        let argv: Vec<&[u8]> = ws.iter().map(Vec::as_slice).collect();
        if let Ok(t) = parse_pool_table(&argv) {
            let mut line = String::new();
            t.write_table(&mut line).unwrap();
            prop_assert_eq!(parse_pool_table(&words(&line)), Ok(t));
            prop_assert!(t.config.extent_sectors.is_power_of_two());
        }
        if let Ok(t) = parse_volume_table(&argv) {
            prop_assert!(t.volume_id <= MAX_VOLUME_ID);
        }
        if let Ok(m) = parse_message(&argv) {
            let line = m.to_string();
            prop_assert_eq!(parse_message(&words(&line)), Ok(m));
        }
        for w in &argv {
            snapguard_dmtarget::fuzz_one(w);
        }
    }

    #[test]
    fn volume_table_round_trip(p in dev(), id in 0..=MAX_VOLUME_ID) {
        let mut line = String::new();
        write_volume_table(&mut line, &p, id).unwrap();
        let t = parse_volume_table(&words(&line)).unwrap();
        prop_assert_eq!((t.pool_dev, t.volume_id), (p.as_str(), id));
    }

    #[test]
    fn volume_id_range(id in any::<u64>()) {
        let s = id.to_string();
        let r = parse_volume_table(&[b"p", s.as_bytes()]);
        if id <= u64::from(MAX_VOLUME_ID) {
            prop_assert_eq!(r.map(|t| u64::from(t.volume_id)), Ok(id));
        } else {
            prop_assert_eq!(r, Err(TableError::VolumeIdRange { arg: 1, id }));
        }
    }

    #[test]
    fn message_round_trip(a in 0..=MAX_VOLUME_ID, b in 0..=MAX_VOLUME_ID, x in any::<u64>(), y in any::<u64>()) {
        let mut ms = vec![
            Message::Create { id: a },
            Message::Delete { id: b },
            Message::SetTransactionId { old: x, new: y },
        ];
        if a != b {
            ms.push(Message::Snapshot { origin: a, new: b });
        }
        for m in ms {
            prop_assert_eq!(parse_message(&words(&m.to_string())), Ok(m));
        }
    }

    #[test]
    fn pool_status_round_trip(s in status()) {
        let mut line = String::new();
        s.write(&mut line).unwrap();
        prop_assert_eq!(PoolStatus::parse(&line), Ok(s));
    }

    #[test]
    fn volume_status_round_trip(m in any::<u64>(), h in proptest::option::of(any::<u64>()), sh in any::<u64>()) {
        let v = VolumeStatus::Active { mapped_sectors: m, highest_mapped: h, shared_sectors: sh };
        let mut line = String::new();
        v.write(&mut line).unwrap();
        prop_assert_eq!(VolumeStatus::parse(&line), Ok(v));
    }

    /// Differential: `parse_u64` accepts exactly the canonical spellings
    /// that `str::parse::<u64>` accepts.
    #[test]
    fn numbers_match_std(s in prop_oneof!["[+-]?[0-9]{0,22}", ".{0,8}"]) {
        let ours = parse_u64(s.as_bytes());
        match s.parse::<u64>() {
            Ok(v) if v.to_string() == s => prop_assert_eq!(ours, Ok(v)),
            _ => prop_assert!(ours.is_err(), "{s:?} -> {ours:?}"),
        }
    }
}
