//! The planner against the queries researchers write, and the ones it must refuse.

use super::*;
use allmende_protocol::query::CompareOp;

#[test]
fn pushes_partial_aggregates_and_rewrites_the_merge() {
    let p = plan(
        "SELECT _member, station, AVG(no2) AS mean, COUNT(*) AS n FROM federation.air_quality_hourly \
         WHERE station IN ('a', 'b') AND no2 > 10 GROUP BY _member, station ORDER BY mean DESC LIMIT 5",
    )
    .unwrap();
    assert_eq!(
        p.target,
        Target::Federation {
            kind: "air_quality_hourly".into()
        }
    );
    assert_eq!(p.fragment.group_by, vec!["station"]);
    assert_eq!(
        p.fragment.aggregates,
        vec![
            Aggregate {
                func: AggregateFn::Sum,
                column: "no2".into()
            },
            Aggregate {
                func: AggregateFn::Count,
                column: "no2".into()
            },
        ]
    );
    assert_eq!(p.fragment.filter.len(), 2);
    assert!(p.local_sql.contains("FROM __fed"), "{}", p.local_sql);
    assert!(p.local_sql.contains("SUM(\"__n\")"), "{}", p.local_sql);
    assert!(!p.local_sql.contains("WHERE"), "{}", p.local_sql);
}

#[test]
fn count_star_alone_is_an_aggregate_fragment() {
    for sql in [
        "SELECT COUNT(*) AS n FROM federation.air",
        "SELECT _member, COUNT(*) FROM federation.air GROUP BY _member",
    ] {
        let p = plan(sql).unwrap();
        assert!(p.fragment.is_aggregate(), "{sql}");
        assert!(p.fragment.count_only, "{sql}");
        assert!(p.local_sql.contains("SUM(\"__n\")"), "{}", p.local_sql);
    }
    assert!(
        !plan("SELECT COUNT(no2) FROM federation.air")
            .unwrap()
            .fragment
            .count_only
    );
}

#[test]
fn row_filters_become_conditions_or_clear_errors() {
    let c = filter_conditions("jahr BETWEEN 2020 AND 2024 AND station IN ('a', 'b')").unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c[2].op, CompareOp::In);
    let e = filter_conditions("no2 + 1 > 3").unwrap_err().to_string();
    assert!(e.contains("not a comparison"), "{e}");
    assert!(filter_conditions("a = 1 OR b = 2").is_err());
    assert!(filter_conditions("'; DROP").is_err());
}

#[test]
fn row_queries_push_projection_filters_and_top_n() {
    let p =
        plan("SELECT station, no2 FROM wuerzburg.air WHERE no2 >= 40 ORDER BY no2 DESC LIMIT 3")
            .unwrap();
    assert_eq!(
        p.target,
        Target::Member {
            member: "wuerzburg".into(),
            dataset: "air".into()
        }
    );
    assert_eq!(p.fragment.columns, vec!["no2", "station"]);
    assert_eq!(p.fragment.filter[0].op, CompareOp::Gteq);
    // The filter stays in the local SQL too, so no top-n is pushed.
    assert_eq!(p.fragment.limit, None);
    let q = plan("SELECT * FROM wuerzburg.air ORDER BY no2 DESC LIMIT 3").unwrap();
    assert_eq!(q.fragment.limit, Some(3));
    assert!(q.fragment.columns.is_empty());
}

#[test]
fn refuses_what_cannot_be_pushed() {
    for sql in [
        "SELECT a FROM local_table",
        "SELECT * FROM x.a JOIN x.b ON a.id = b.id",
        "SELECT AVG(no2 * 2) FROM federation.air",
        "SELECT COUNT(DISTINCT station) FROM federation.air",
        "SELECT SUM(no2) FROM federation.air WHERE lower(station) = 'a'",
        "SELECT * FROM w.air WHERE station IN (SELECT station FROM w.other)",
        "DELETE FROM w.air",
        "SELEC 1",
    ] {
        assert!(plan(sql).is_err(), "{sql}");
    }
}
