//! Unit tests of the DNS record codec and zone rules.
use super::*;

fn ep(last: u8, weight: u32) -> Endpoint {
    Endpoint {
        address: vec![10, 0, 0, last],
        weight,
    }
}

fn set(lasts: &[u8]) -> Vec<Endpoint> {
    lasts.iter().map(|&l| ep(l, 10)).collect()
}

fn plan(m: &ManagedName, endpoints: Vec<Endpoint>, evidence: u64) -> Plan {
    Plan {
        generation: m.current.number + 1,
        base_generation: m.current.number,
        endpoints,
        evidence_height: evidence,
        reason: String::new(),
    }
}

const P: AccountId = [7; 32];

#[test]
fn compare_and_set_rejects_stale_and_skipping_plans() {
    let mut m = ManagedName::create(set(&[1, 2, 3, 4]), 0, P).unwrap();
    let stale = plan(&m, set(&[1, 2, 3, 4, 5]), 20);
    m.apply_plan(&plan(&m, set(&[1, 2, 3, 4, 6]), 20), 20, P, |_| true, false)
        .unwrap();
    assert_eq!(
        m.apply_plan(&stale, 40, P, |_| true, false),
        Err(PlanError::StaleBase {
            base: 1,
            current: 2
        })
    );
    let mut skip = plan(&m, set(&[1, 2, 3, 4]), 40);
    skip.generation += 1;
    assert_eq!(
        m.apply_plan(&skip, 40, P, |_| true, false),
        Err(PlanError::BadGeneration { got: 4, want: 3 })
    );
    assert_eq!(m.current.number, 2);
    assert_eq!(m.current.endpoints, set(&[1, 2, 3, 4, 6]));
}

#[test]
fn never_empty_even_with_an_override() {
    let mut m = ManagedName::create(set(&[1]), 0, P).unwrap();
    for overridden in [false, true] {
        assert_eq!(
            m.apply_plan(&plan(&m, vec![], 50), 50, P, |_| false, overridden),
            Err(PlanError::Empty)
        );
    }
    assert_eq!(
        m.check_health(|_| false),
        Some(DnsEvent::AllUnhealthy { generation: 1 })
    );
    assert_eq!(m.check_health(|_| true), None);
}

#[test]
fn velocity_and_pacing_hold_unless_overridden() {
    let mut m = ManagedName::create(set(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 0, P).unwrap();
    // 4 of 10 equal endpoints is 40% > 30%.
    let big = plan(&m, set(&[1, 2, 3, 4, 5, 6]), 20);
    assert_eq!(
        m.apply_plan(&big, 20, P, |_| true, false),
        Err(PlanError::Velocity {
            removed_percent: 40
        })
    );
    // 3 of 10 is allowed; halving one weight counts as half its capacity.
    let mut three = set(&[1, 2, 3, 4, 5, 6, 7]);
    three[0].weight = 5;
    assert_eq!(
        m.apply_plan(&plan(&m, three.clone(), 20), 20, P, |_| true, false),
        Err(PlanError::Velocity {
            removed_percent: 35
        })
    );
    m.apply_plan(
        &plan(&m, set(&[1, 2, 3, 4, 5, 6, 7]), 20),
        20,
        P,
        |_| true,
        false,
    )
    .unwrap();
    assert_eq!(
        m.apply_plan(
            &plan(&m, set(&[1, 2, 3, 4, 5, 6, 7, 8]), 25),
            25,
            P,
            |_| true,
            false
        ),
        Err(PlanError::TooSoon {
            height: 25,
            previous: 20
        })
    );
    // A committee override may go further and sooner, and says so.
    let ev = m
        .apply_plan(&plan(&m, set(&[1]), 25), 25, P, |_| true, true)
        .unwrap();
    assert_eq!(
        ev,
        DnsEvent::Planned {
            generation: 3,
            overridden: true
        }
    );
    assert!(m.current.overridden);
}

#[test]
fn evidence_must_be_recent_and_not_from_the_future() {
    let mut m = ManagedName::create(set(&[1, 2]), 0, P).unwrap();
    for (evidence, height) in [(300, 200), (10, 10 + MAX_EVIDENCE_AGE_BLOCKS + 1)] {
        assert_eq!(
            m.apply_plan(
                &plan(&m, set(&[1, 2]), evidence),
                height,
                P,
                |_| true,
                false
            ),
            Err(PlanError::Evidence { evidence, height })
        );
    }
}

#[test]
fn pruning_keeps_current_and_last_known_good() {
    let mut m = ManagedName::create(set(&[1, 2, 3, 4]), 0, P).unwrap();
    // Generation 1 is the last known good; every later one has an unhealthy endpoint.
    let mut h = 0;
    for i in 0..(MAX_HISTORY_GENERATIONS as u8 + 20) {
        h += MIN_PLAN_INTERVAL_BLOCKS;
        let eps = if i % 2 == 0 {
            set(&[1, 2, 3, 4, 9])
        } else {
            set(&[1, 2, 3, 4])
        };
        m.apply_plan(
            &plan(&m, eps, h),
            h,
            P,
            |e| e.address[3] != 9 && e.address[3] != 4,
            false,
        )
        .unwrap();
    }
    assert_eq!(m.last_known_good, 1);
    assert!(m.generation(1).is_some(), "last known good pruned");
    assert!(m.history.len() <= MAX_HISTORY_GENERATIONS);
    assert!(m.generation(m.current.number).is_some());
}

#[test]
fn endpoints_are_validated() {
    let bad = [
        vec![Endpoint {
            address: vec![1, 2, 3],
            weight: 1,
        }],
        vec![ep(1, 0)],
        vec![ep(1, MAX_WEIGHT + 1)],
        vec![ep(2, 1), ep(1, 1)],
        vec![ep(1, 1), ep(1, 2)],
        (0..=MAX_ENDPOINTS as u8).map(|i| ep(i, 1)).collect(),
    ];
    for b in bad {
        assert!(matches!(
            ManagedName::create(b, 0, P),
            Err(PlanError::InvalidEndpoints(_))
        ));
    }
}

fn soa() -> RecordSet {
    RecordSet {
        name: "example.test".into(),
        ttl_secs: 3600,
        records: vec![RData::Soa {
            mname: "ns1.example.test".into(),
            rname: "hostmaster.example.test".into(),
            refresh: 3600,
            retry: 600,
            expire: 86_400,
            minimum: 60,
        }],
    }
}

fn rs(name: &str, records: Vec<RData>) -> RecordSet {
    RecordSet {
        name: name.into(),
        ttl_secs: 300,
        records,
    }
}

fn base_zone() -> Vec<RecordSet> {
    vec![
        soa(),
        rs("example.test", vec![RData::Ns("ns1.example.test".into())]),
        rs("ns1.example.test", vec![RData::A([192, 0, 2, 1])]),
    ]
}

#[test]
fn names_follow_ldh_rules() {
    for ok in [
        "a",
        "example.test",
        "*.example.test",
        "_sip._tcp.example.test",
        "x-1.b2",
    ] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    let long_label = format!("{}.test", "a".repeat(64));
    let long_name = vec!["abcdefghi"; 26].join(".");
    for bad in [
        "",
        "example.test.",
        "Example.test",
        "a..b",
        "-a.test",
        "a-.test",
        "a.*.test",
        "a b.test",
        "_.test",
        &long_label,
        &long_name,
    ] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn zones_need_soa_and_ns_at_the_apex() {
    assert_eq!(validate_zone("example.test", &base_zone()), Ok(()));
    let mut z = base_zone();
    z.remove(1);
    assert!(validate_zone("example.test", &z)
        .unwrap_err()
        .to_string()
        .contains("NS"));
    let mut z = base_zone();
    z.remove(0);
    assert!(validate_zone("example.test", &z)
        .unwrap_err()
        .to_string()
        .contains("SOA"));
    let mut z = base_zone();
    let mut misplaced = soa();
    misplaced.name = "www.example.test".into();
    z.push(misplaced);
    assert!(validate_zone("example.test", &z)
        .unwrap_err()
        .to_string()
        .contains("apex"));
}

#[test]
fn cname_is_exclusive_and_not_at_the_apex() {
    let mut z = base_zone();
    z.push(rs(
        "www.example.test",
        vec![RData::Cname("web.example.test".into())],
    ));
    assert_eq!(validate_zone("example.test", &z), Ok(()));
    z.push(rs("www.example.test", vec![RData::Txt(vec!["hi".into()])]));
    assert!(validate_zone("example.test", &z)
        .unwrap_err()
        .to_string()
        .contains("CNAME must be alone"));
    let mut z = base_zone();
    z.push(rs(
        "example.test",
        vec![RData::Cname("elsewhere.test".into())],
    ));
    assert!(validate_zone("example.test", &z)
        .unwrap_err()
        .to_string()
        .contains("apex"));
    let two = rs(
        "a.example.test",
        vec![
            RData::Cname("b.example.test".into()),
            RData::Cname("c.example.test".into()),
        ],
    );
    assert!(validate_set("example.test", &two).is_err());
}

#[test]
fn sets_are_bounded_typed_and_inside_the_zone() {
    let a = |n: u8| RData::A([192, 0, 2, n]);
    assert!(validate_set("example.test", &rs("x.example.test", vec![a(1), a(2)])).is_ok());
    let cases = [
        rs("x.other.test", vec![a(1)]),
        rs("xexample.test", vec![a(1)]),
        RecordSet {
            ttl_secs: 1,
            ..rs("x.example.test", vec![a(1)])
        },
        RecordSet {
            ttl_secs: MAX_TTL_SECS + 1,
            ..rs("x.example.test", vec![a(1)])
        },
        rs("x.example.test", vec![]),
        rs(
            "x.example.test",
            (0..=MAX_RECORDS_PER_SET as u8).map(a).collect(),
        ),
        rs("x.example.test", vec![a(1), a(1)]),
        rs("x.example.test", vec![a(1), RData::Aaaa([0; 16])]),
        rs("x.example.test", vec![RData::Txt(vec!["a".repeat(256)])]),
        rs("x.example.test", vec![RData::Txt(vec![])]),
        rs(
            "x.example.test",
            vec![RData::Mx {
                preference: 10,
                exchange: "Bad Host".into(),
            }],
        ),
        rs(
            "x.example.test",
            vec![RData::Caa {
                flags: 1,
                tag: "issue".into(),
                value: "ca.test".into(),
            }],
        ),
        rs(
            "x.example.test",
            vec![RData::Caa {
                flags: 0,
                tag: "is-sue".into(),
                value: "ca.test".into(),
            }],
        ),
    ];
    for c in cases {
        assert!(validate_set("example.test", &c).is_err(), "{c:?}");
    }
    let mut z = base_zone();
    z.push(rs("x.example.test", vec![a(1)]));
    z.push(rs("x.example.test", vec![a(2)]));
    assert!(validate_zone("example.test", &z)
        .unwrap_err()
        .to_string()
        .contains("two A sets"));
}
