//! Shared test helpers: proptest strategies over the profile (public API only).
#![allow(dead_code, reason = "each test crate uses a part of it")]
use allmende_policy::ast::RuleParties;
use allmende_policy::values::{XsdDate, XsdDateTime, XsdDuration};
use allmende_policy::{
    Action, AtomicConstraint, Constraint, Duty, DutyAction, LeftOperand, LogicalConstraint,
    LogicalOperator, Operator, Permission, Policy, PolicyKind, Principal, Prohibition, QueryShape,
    Request, RightOperand, TermsKind,
};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

pub const TARGETS: &[&str] = &["urn:ds:a", "urn:ds:b"];
pub const ORGS: &[&str] = &["did:web:a.example", "did:web:b.example"];
pub const TERMS: &[&str] = &["urn:p:1", "urn:p:2", "DE-NW", "DE-BY"];
pub const COLS: &[&str] = &["c1", "c2", "c3"];

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(items).prop_map(str::to_owned)
}

fn ordered_op() -> impl Strategy<Value = Operator> {
    proptest::sample::select(vec![
        Operator::Eq,
        Operator::Neq,
        Operator::Lt,
        Operator::Lteq,
        Operator::Gt,
        Operator::Gteq,
    ])
}

fn set_op() -> impl Strategy<Value = Operator> {
    proptest::sample::select(vec![
        Operator::IsAnyOf,
        Operator::IsNoneOf,
        Operator::IsAllOf,
        Operator::IsPartOf,
    ])
}

fn term(items: &'static [&'static str]) -> impl Strategy<Value = RightOperand> {
    (pick(items), any::<bool>()).prop_map(|(s, iri)| {
        if iri {
            RightOperand::Iri(s)
        } else {
            RightOperand::Text(s)
        }
    })
}

fn list(items: &'static [&'static str]) -> impl Strategy<Value = RightOperand> {
    proptest::collection::vec(pick(items), 1..4)
        .prop_map(|v| RightOperand::List(v.into_iter().map(RightOperand::Text).collect()))
}

fn time_value() -> impl Strategy<Value = RightOperand> {
    prop_oneof![
        (
            -10i64 * 86_400..10 * 86_400,
            prop_oneof![Just(0), Just(3600), Just(-7200)]
        )
            .prop_map(|(s, off)| {
                let t = base_time() + chrono::TimeDelta::seconds(s);
                let lex = t
                    .with_timezone(&chrono::FixedOffset::east_opt(off).unwrap())
                    .to_rfc3339();
                RightOperand::DateTime(lex.parse::<XsdDateTime>().unwrap())
            }),
        (-10i64..10).prop_map(|d| RightOperand::Date(XsdDate(
            (base_time() + chrono::TimeDelta::days(d)).date_naive()
        ))),
    ]
}

pub fn atomic() -> impl Strategy<Value = Constraint> {
    let c = prop_oneof![
        (ordered_op(), time_value()).prop_map(|(o, r)| (LeftOperand::DateTime, o, r)),
        (ordered_op(), 0u64..20 * 86_400, 0u32..2).prop_map(|(o, s, n)| (
            LeftOperand::ElapsedTime,
            o,
            RightOperand::Duration(XsdDuration::new(s, n * 500_000_000))
        )),
        (ordered_op(), 0u64..6).prop_map(|(o, n)| (
            LeftOperand::Count,
            o,
            RightOperand::Integer(n)
        )),
        (ordered_op(), 0u64..20).prop_map(|(o, n)| (
            LeftOperand::MinGroupSize,
            o,
            RightOperand::Integer(n)
        )),
        (
            proptest::sample::select(vec![
                LeftOperand::Purpose,
                LeftOperand::Spatial,
                LeftOperand::Recipient
            ]),
            prop_oneof![
                (
                    prop_oneof![Just(Operator::Eq), Just(Operator::Neq)],
                    term(TERMS)
                ),
                (set_op(), list(TERMS)),
            ]
        )
            .prop_map(|(l, (o, r))| (l, o, r)),
        (
            prop_oneof![Just(Operator::Eq), Just(Operator::Neq)],
            proptest::sample::select(vec!["row", "aggregate"])
        )
            .prop_map(|(o, s)| (LeftOperand::QueryShape, o, RightOperand::Text(s.into()))),
        (
            prop_oneof![Just(Operator::Eq), Just(Operator::Neq)],
            proptest::sample::select(vec!["offer", "agreement"])
        )
            .prop_map(|(o, s)| (LeftOperand::Terms, o, RightOperand::Text(s.into()))),
        (
            proptest::sample::select(vec![LeftOperand::AllowedColumns, LeftOperand::OrgRole]),
            set_op(),
            list(COLS)
        )
            .prop_map(|(l, o, r)| (l, o, r)),
    ];
    (c, proptest::option::of(Just("urn:c:1".to_owned()))).prop_map(
        |((left, operator, right), uid)| {
            Constraint::Atomic(AtomicConstraint {
                uid,
                left,
                operator,
                right,
            })
        },
    )
}

pub fn constraint() -> impl Strategy<Value = Constraint> {
    atomic().prop_recursive(2, 8, 3, |inner| {
        (
            proptest::sample::select(vec![
                LogicalOperator::And,
                LogicalOperator::Or,
                LogicalOperator::Xone,
            ]),
            proptest::collection::vec(inner, 1..4),
        )
            .prop_map(|(operator, operands)| {
                Constraint::Logical(LogicalConstraint {
                    uid: None,
                    operator,
                    operands,
                })
            })
    })
}

fn parties() -> impl Strategy<Value = RuleParties> {
    (
        proptest::option::of(pick(TARGETS)),
        proptest::option::of(pick(ORGS)),
    )
        .prop_map(|(target, assignee)| RuleParties {
            target,
            assigner: None,
            assignee,
        })
}

fn action() -> impl Strategy<Value = Action> {
    proptest::sample::select(Action::ALL.to_vec())
}

pub fn duty() -> impl Strategy<Value = Duty> {
    (
        proptest::sample::select(DutyAction::ALL.to_vec()),
        proptest::collection::vec(atomic(), 0..2),
        proptest::option::of(Just("urn:duty:1".to_owned())),
    )
        .prop_map(|(action, constraints, uid)| Duty {
            uid,
            action,
            parties: RuleParties::default(),
            constraints,
        })
}

pub fn policy() -> impl Strategy<Value = Policy> {
    let perm = (
        action(),
        parties(),
        proptest::collection::vec(constraint(), 0..3),
        proptest::collection::vec(duty(), 0..2),
        proptest::option::of(Just("urn:rule:p".to_owned())),
    )
        .prop_map(|(action, parties, constraints, duties, uid)| Permission {
            uid,
            action,
            parties,
            constraints,
            duties,
        });
    let prohib = (
        action(),
        parties(),
        proptest::collection::vec(constraint(), 0..2),
    )
        .prop_map(|(action, parties, constraints)| Prohibition {
            uid: None,
            action,
            parties,
            constraints,
        });
    (
        proptest::sample::select(PolicyKind::ALL.to_vec()),
        0u32..1000,
        proptest::collection::vec(perm, 0..3),
        proptest::collection::vec(prohib, 0..2),
        proptest::collection::vec(duty(), 0..2),
        pick(TARGETS),
        any::<bool>(),
        proptest::option::of(0i64..30),
        proptest::option::of(1u64..4),
    )
        .prop_map(
            |(
                kind,
                n,
                permissions,
                prohibitions,
                mut obligations,
                target,
                conflict,
                expires,
                version,
            )| {
                let mut p = Policy::new(kind, format!("urn:policy:{n}"));
                p.conflict_prohibit = conflict;
                p.target = Some(target);
                if kind != PolicyKind::Set {
                    p.assigner = Some("did:web:provider.example".into());
                }
                if kind == PolicyKind::Agreement {
                    p.assignee = Some(ORGS[0].into());
                }
                p.permissions = permissions;
                p.prohibitions = prohibitions;
                for o in &mut obligations {
                    o.parties.target = None;
                }
                p.obligations = obligations;
                p.expires = expires
                    .map(|d| XsdDateTime::from_utc(base_time() + chrono::TimeDelta::days(d - 5)));
                p.version = version;
                p
            },
        )
}

pub fn request() -> impl Strategy<Value = Request> {
    (
        action(),
        pick(TARGETS),
        -12i64 * 86_400..12 * 86_400,
        proptest::option::of(pick(ORGS)),
        proptest::option::of(pick(TERMS)),
        proptest::option::of(pick(TERMS)),
        proptest::option::of(prop_oneof![
            Just(QueryShape::Row),
            Just(QueryShape::Aggregate)
        ]),
        proptest::option::of(0u64..20),
        proptest::option::of(proptest::collection::vec(pick(COLS), 0..3)),
        proptest::collection::vec(pick(COLS), 0..3),
        proptest::option::of(prop_oneof![
            Just(TermsKind::Offer),
            Just(TermsKind::Agreement)
        ]),
    )
        .prop_map(
            |(
                action,
                target,
                secs,
                org,
                purpose,
                location,
                query_shape,
                group_size,
                columns,
                roles,
                terms,
            )| Request {
                principal: Principal {
                    peer: None,
                    org,
                    claims: Default::default(),
                    roles,
                },
                action,
                target,
                purpose,
                time: base_time() + chrono::TimeDelta::seconds(secs),
                location,
                query_shape,
                group_size,
                columns,
                terms,
            },
        )
}
