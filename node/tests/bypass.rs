//! Generated attempts to get around an aggregate-only, column-restricted policy: 10 000
//! queries (aliases, expressions, joins, subqueries, set operations, grouping on a unique key,
//! narrow filters, DISTINCT) planned by the asker's planner, and 5 000 fragments a
//! hostile asker could send directly, each answered by a real provider (its RocksDB, its
//! Parquet file, its signed policy). Every answer the provider gives is checked against a naive
//! reference computed here from the same rows: no raw rows, no value of the forbidden column,
//! every returned group counted honestly and of at least the minimum size, every returned
//! value the aggregate of exactly that group.

mod common;

use std::collections::HashMap;

use allmende_node::query::plan::{self, Target};
use allmende_protocol::query::{
    Aggregate, AggregateFn, AnswerStatus, CompareOp, Condition, Fragment, Literal,
};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use common::{Provider, ask, provider_with, request};

/// The minimum group size of the policy.
const K: i64 = 5;

/// Aggregates only, groups of at least 5, every column but `secret`.
const POLICY: &str = r#"{"@context": ["http://www.w3.org/ns/odrl.jsonld", {"allm": "urn:allmende:odrl:"}],
  "@type": "Offer", "uid": "urn:t:bypass", "permission": [{"action": "aggregate", "constraint": [
  {"leftOperand": "allm:minGroupSize", "operator": "gteq", "rightOperand": 5},
  {"leftOperand": "allm:allowedColumns", "operator": "isPartOf",
   "rightOperand": ["station", "kind", "hour", "value", "id"]}]}]}"#;

const STATIONS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const KINDS: [&str; 3] = ["x", "y", "z"];
const TEXT_COLUMNS: [&str; 2] = ["station", "kind"];
const INT_COLUMNS: [&str; 4] = ["hour", "value", "id", "secret"];

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One row of the dataset; `value` is null in some rows.
#[derive(Clone, Debug)]
struct Row {
    station: &'static str,
    kind: &'static str,
    hour: i64,
    value: Option<i64>,
    id: i64,
    secret: i64,
}

/// A cell of a row.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Row {
    fn cell(&self, column: &str) -> Cell {
        match column {
            "station" => Cell::Text(self.station.into()),
            "kind" => Cell::Text(self.kind.into()),
            "hour" => Cell::Int(self.hour),
            "value" => self.value.map_or(Cell::Null, Cell::Int),
            "id" => Cell::Int(self.id),
            "secret" => Cell::Int(self.secret),
            other => panic!("no column {other}"),
        }
    }
}

/// 400 rows; `secret` holds markers (9 000 000 + id) that must never leave the provider.
fn rows() -> Vec<Row> {
    let mut rng = Rng(7);
    (1..=400)
        .map(|id| Row {
            station: rng.pick(&STATIONS),
            kind: rng.pick(&KINDS),
            hour: rng.below(24) as i64,
            value: (!rng.chance(10)).then(|| rng.below(1000) as i64),
            id,
            secret: 9_000_000 + id,
        })
        .collect()
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from("station,kind,hour,value,id,secret\n");
    for r in rows {
        let value = r.value.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{value},{},{}\n",
            r.station, r.kind, r.hour, r.id, r.secret
        ));
    }
    out
}

fn literal_cell(l: &Literal) -> Cell {
    match l {
        Literal::Null => Cell::Null,
        Literal::Int(i) => Cell::Int(*i),
        Literal::Text(t) => Cell::Text(t.clone()),
        other => panic!("the generator makes no {other:?}"),
    }
}

/// Whether `row` passes `c`, as SQL evaluates it (a comparison with null is not true).
fn passes(row: &Row, c: &Condition) -> bool {
    let cell = row.cell(&c.column);
    let compare = |want: &dyn Fn(std::cmp::Ordering) -> bool| {
        let v = literal_cell(&c.values[0]);
        if cell == Cell::Null || v == Cell::Null {
            return false;
        }
        cell.partial_cmp(&v).is_some_and(want)
    };
    use std::cmp::Ordering::*;
    match c.op {
        CompareOp::Eq => compare(&|o| o == Equal),
        CompareOp::Neq => compare(&|o| o != Equal),
        CompareOp::Lt => compare(&|o| o == Less),
        CompareOp::Lteq => compare(&|o| o != Greater),
        CompareOp::Gt => compare(&|o| o == Greater),
        CompareOp::Gteq => compare(&|o| o != Less),
        CompareOp::IsNull => cell == Cell::Null,
        CompareOp::IsNotNull => cell != Cell::Null,
        CompareOp::In => cell != Cell::Null && c.values.iter().any(|v| literal_cell(v) == cell),
    }
}

/// The aggregate `a` over `group`, as SQL computes it.
fn aggregate(a: &Aggregate, group: &[&Row]) -> Cell {
    let cells: Vec<Cell> = group
        .iter()
        .map(|r| r.cell(&a.column))
        .filter(|c| *c != Cell::Null)
        .collect();
    match a.func {
        AggregateFn::Count => Cell::Int(cells.len() as i64),
        _ if cells.is_empty() => Cell::Null,
        AggregateFn::Sum => Cell::Int(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Int(i) => *i,
                    other => panic!("sum of {other:?}"),
                })
                .sum(),
        ),
        AggregateFn::Min => cells
            .into_iter()
            .reduce(|a, b| if b < a { b } else { a })
            .unwrap(),
        AggregateFn::Max => cells
            .into_iter()
            .reduce(|a, b| if b > a { b } else { a })
            .unwrap(),
    }
}

fn cell_of(column: &dyn Array, i: usize) -> Cell {
    if column.is_null(i) {
        return Cell::Null;
    }
    match column.data_type() {
        DataType::Int64 => Cell::Int(column.as_primitive::<Int64Type>().value(i)),
        DataType::Utf8 => Cell::Text(column.as_string::<i32>().value(i).to_owned()),
        DataType::Utf8View => Cell::Text(column.as_string_view().value(i).to_owned()),
        other => panic!("unexpected column type {other}"),
    }
}

/// Checks one answer of the provider against the policy and the naive reference; returns
/// whether it was `ok`.
fn check(
    what: &str,
    fragment: &Fragment,
    status: AnswerStatus,
    bytes: &[u8],
    rows: &[Row],
) -> bool {
    if status != AnswerStatus::Ok {
        assert!(
            bytes.is_empty(),
            "{what}: data left with a {status:?} answer"
        );
        return false;
    }
    let used: Vec<&String> = fragment
        .columns
        .iter()
        .chain(fragment.aggregates.iter().map(|a| &a.column))
        .chain(&fragment.group_by)
        .chain(fragment.filter.iter().map(|c| &c.column))
        .chain(fragment.order_by.iter().map(|(c, _)| c))
        .collect();
    assert!(
        fragment.is_aggregate(),
        "{what}: rows left an aggregate-only dataset"
    );
    assert!(
        !used.iter().any(|c| *c == "secret"),
        "{what}: the forbidden column was read: {fragment:?}"
    );
    assert!(
        fragment
            .filter
            .iter()
            .all(|c| fragment.group_by.contains(&c.column)),
        "{what}: a filter on a non-grouping column was answered: {fragment:?}"
    );
    // The naive reference: the filtered rows, grouped.
    let kept: Vec<&Row> = rows
        .iter()
        .filter(|r| fragment.filter.iter().all(|c| passes(r, c)))
        .collect();
    let mut groups: HashMap<Vec<String>, Vec<&Row>> = HashMap::new();
    for r in kept {
        let key = fragment
            .group_by
            .iter()
            .map(|g| format!("{:?}", r.cell(g)))
            .collect();
        groups.entry(key).or_default().push(r);
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None).expect("Arrow IPC");
    let mut answered = 0usize;
    for batch in reader {
        let batch = batch.expect("batch");
        for i in 0..batch.num_rows() {
            answered += 1;
            let key: Vec<String> = fragment
                .group_by
                .iter()
                .map(|g| {
                    format!(
                        "{:?}",
                        cell_of(batch.column_by_name(g).expect("group column"), i)
                    )
                })
                .collect();
            let group = groups
                .get(&key)
                .unwrap_or_else(|| panic!("{what}: a group {key:?} that has no rows"));
            let n = cell_of(batch.column_by_name("__n").expect("group count"), i);
            assert_eq!(
                n,
                Cell::Int(group.len() as i64),
                "{what}: group {key:?} miscounted"
            );
            assert!(
                group.len() as i64 >= K,
                "{what}: group {key:?} of {} rows left",
                group.len()
            );
            for (j, a) in fragment.aggregates.iter().enumerate() {
                let got = cell_of(
                    batch.column_by_name(&format!("__a{j}")).expect("aggregate"),
                    i,
                );
                assert_eq!(got, aggregate(a, group), "{what}: {a:?} of group {key:?}");
            }
            for column in batch.columns() {
                if let Cell::Int(v) = cell_of(column.as_ref(), i) {
                    // No sum of the other columns reaches the markers.
                    assert!(
                        !(9_000_001..=9_000_400).contains(&v),
                        "{what}: a secret marker {v} in the answer"
                    );
                }
            }
        }
    }
    let big = groups.values().filter(|g| g.len() as i64 >= K).count();
    assert_eq!(
        answered, big,
        "{what}: every group of at least {K} rows, and only those"
    );
    true
}

/// A random literal for `column`, mostly of its own type and often a value it holds.
fn literal_for(rng: &mut Rng, column: &str) -> Literal {
    if TEXT_COLUMNS.contains(&column) {
        let pool: &[&str] = if column == "station" {
            &STATIONS
        } else {
            &KINDS
        };
        Literal::Text(if rng.chance(90) {
            rng.pick(pool).to_owned()
        } else {
            "q' OR '1'='1".into()
        })
    } else {
        Literal::Int(match column {
            "hour" => rng.below(26) as i64 - 1,
            "value" => rng.below(1100) as i64 - 50,
            "id" => rng.below(410) as i64,
            _ => 9_000_000 + rng.below(410) as i64,
        })
    }
}

fn any_column(rng: &mut Rng) -> &'static str {
    rng.pick(&["station", "kind", "hour", "value", "id", "secret"])
}

fn condition(rng: &mut Rng, column: &str) -> Condition {
    let ops = [
        CompareOp::Eq,
        CompareOp::Neq,
        CompareOp::Lt,
        CompareOp::Lteq,
        CompareOp::Gt,
        CompareOp::Gteq,
        CompareOp::IsNull,
        CompareOp::IsNotNull,
        CompareOp::In,
    ];
    let op = rng.pick(&ops);
    let values = match op {
        CompareOp::IsNull | CompareOp::IsNotNull => vec![],
        CompareOp::In => (0..1 + rng.below(4))
            .map(|_| literal_for(rng, column))
            .collect(),
        _ => vec![literal_for(rng, column)],
    };
    Condition {
        column: column.into(),
        op,
        values,
    }
}

/// A fragment as a hostile asker could send it, bypassing the planner.
fn raw_fragment(rng: &mut Rng) -> Fragment {
    let mut f = Fragment::default();
    for _ in 0..rng.below(3) {
        let column = any_column(rng);
        if !f.group_by.iter().any(|g| g == column) {
            f.group_by.push(column.into());
        }
    }
    let funcs = [
        AggregateFn::Count,
        AggregateFn::Sum,
        AggregateFn::Min,
        AggregateFn::Max,
    ];
    for _ in 0..rng.below(4) {
        let func = rng.pick(&funcs);
        let pool: &[&str] = if matches!(func, AggregateFn::Sum) {
            &INT_COLUMNS
        } else {
            &["station", "kind", "hour", "value", "id", "secret"]
        };
        f.aggregates.push(Aggregate {
            func,
            column: rng.pick(pool).into(),
        });
    }
    for _ in 0..rng.below(3) {
        let column = if rng.chance(60) && !f.group_by.is_empty() {
            f.group_by[rng.below(f.group_by.len())].clone()
        } else {
            any_column(rng).to_owned()
        };
        f.filter.push(condition(rng, &column));
    }
    if rng.chance(15) {
        f.columns = (0..1 + rng.below(3))
            .map(|_| any_column(rng).to_owned())
            .collect();
    }
    if rng.chance(10) {
        f.order_by
            .push((any_column(rng).to_owned(), rng.chance(50)));
        f.limit = Some(rng.below(5) as u64);
    }
    f.count_only =
        f.aggregates.is_empty() && f.group_by.is_empty() && f.columns.is_empty() && rng.chance(50);
    f
}

/// A query a researcher could write to get around the policy.
fn attempt(rng: &mut Rng) -> String {
    let table = rng.pick(&["m.values", "m.values AS v", "m.values v"]);
    let column = || {
        [
            "station", "kind", "hour", "value", "id", "secret", "v.secret", "v.id",
        ]
    };
    let item = |rng: &mut Rng| -> String {
        let c = rng.pick(&column());
        match rng.below(12) {
            0 => c.to_owned(),
            1 => format!("{c} AS s"),
            2 => format!("COUNT({c})"),
            3 => format!("SUM({c}) AS total"),
            4 => format!("MIN({c})"),
            5 => format!("MAX({c}) AS m"),
            6 => format!("AVG({c})"),
            7 => "COUNT(*)".to_owned(),
            8 => format!("SUM({c} * 2)"),
            9 => format!("COUNT(DISTINCT {c})"),
            10 => format!("MAX({c}) - MIN({c})"),
            _ => format!("lower({c})"),
        }
    };
    let items: Vec<String> = (0..1 + rng.below(3)).map(|_| item(rng)).collect();
    let mut sql = format!("SELECT {} FROM {table}", items.join(", "));
    match rng.below(10) {
        0 => sql.push_str(" JOIN m.values w ON v.id = w.id"),
        1 => sql = format!("SELECT * FROM ({sql}) t"),
        2 => sql.push_str(", m.values w"),
        _ => {}
    }
    let conds: Vec<String> = (0..rng.below(3))
        .map(|_| {
            let c = rng.pick(&column());
            match rng.below(8) {
                0 => format!("{c} = {}", rng.below(401)),
                1 => format!("{c} > {}", rng.below(1000)),
                2 => format!(
                    "{c} BETWEEN {} AND {}",
                    rng.below(200),
                    200 + rng.below(200)
                ),
                3 => format!("{c} IN ({}, {})", rng.below(401), rng.below(401)),
                4 => format!("station = '{}'", rng.pick(&STATIONS)),
                5 => format!("{c} IS NOT NULL"),
                6 => format!("{c} IN (SELECT id FROM m.values)"),
                _ => format!("({c} = 1 OR {c} = 2)"),
            }
        })
        .collect();
    if !conds.is_empty() {
        sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
    }
    if rng.chance(70) {
        let groups: &[&str] = &[
            "id",
            "station",
            "station, kind",
            "station, kind, hour",
            "hour",
            "secret",
            "value",
            "lower(station)",
            "id, station",
        ];
        sql.push_str(&format!(" GROUP BY {}", rng.pick(groups)));
    }
    if rng.chance(15) {
        sql.push_str(" HAVING COUNT(*) < 5");
    }
    if rng.chance(10) {
        sql.push_str(" UNION SELECT secret FROM m.values");
    }
    if rng.chance(10) {
        sql.push_str(" ORDER BY 1 LIMIT 3");
    }
    sql
}

async fn run(p: &Provider, rows: &[Row], what: String, fragment: Fragment) -> bool {
    let (header, bytes) = ask(p, request(&p.id, fragment.clone())).await;
    check(&what, &fragment, header.status, &bytes, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_queries_and_five_thousand_fragments_get_nothing_the_policy_forbids() {
    let rows = rows();
    let p = provider_with(&csv(&rows), POLICY);
    let mut rng = Rng(0x5eed_1234_abcd);
    let (mut planned, mut refused) = (0, 0);
    let mut asks = Vec::new();
    for i in 0..10_000 {
        let sql = attempt(&mut rng);
        match plan::plan(&sql) {
            Ok(planned_query) => {
                assert_eq!(
                    planned_query.target,
                    Target::Member {
                        member: "m".into(),
                        dataset: "values".into()
                    },
                    "{sql}"
                );
                planned += 1;
                asks.push((format!("query {i}: {sql}"), planned_query.fragment));
            }
            Err(_) => refused += 1,
        }
    }
    for i in 0..5000 {
        let fragment = raw_fragment(&mut rng);
        asks.push((format!("fragment {i}: {fragment:?}"), fragment));
    }
    // Four at a time, as many as the provider runs at once.
    let mut answered = 0;
    for chunk in asks.chunks(4) {
        let runs = chunk
            .iter()
            .map(|(what, fragment)| run(&p, &rows, what.clone(), fragment.clone()));
        answered += futures::future::join_all(runs)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
    }
    eprintln!("{planned} queries planned, {refused} refused by the planner, {answered} answers ok");
    // The generators reach the provider and get answers: the checks above ran on real data.
    assert!(planned > 2000, "{planned} planned");
    assert!(answered > 1000, "{answered} answered");
}
