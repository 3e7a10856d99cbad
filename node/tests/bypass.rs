//! Generated attempts to get around an aggregate-only, column-restricted policy: 4000
//! queries (aliases, expressions, joins, subqueries, set operations, grouping on a unique key,
//! narrow filters, DISTINCT) planned by DataFusion over a federated table, and 2000 sub-plans
//! a hostile asker could send directly, each answered by a real provider (its RocksDB, its
//! Parquet file, its signed policy). Every answer the provider gives is checked against the
//! policy and, where the plan is simple enough to evaluate here, against a naive reference
//! computed from the same rows: no raw rows, no value of the forbidden column, every returned
//! group counted honestly and of at least the minimum size, every returned sum, count,
//! minimum and maximum the aggregate of exactly that group.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use allmende_data::sql::{Engine, EngineConfig, Source, collect};
use allmende_protocol::plan::{
    AggregateCall, BinaryOp, Expr, IsTest, Named, Output, PLAN_VERSION, Scalar, SubPlan,
};
use allmende_protocol::query::{AnswerHeader, AnswerStatus};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use common::{ask, federated_table, plan_request, provider_with};

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

/// A value as SQL evaluates it here.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum Value {
    Null,
    Bool(bool),
    Cell(Cell),
}

/// `e` over `row`, as SQL evaluates it (three-valued logic), or `None` where `e` is more than
/// this naive evaluator knows (then the answer is checked against the policy only).
fn eval(e: &Expr, row: &Row) -> Option<Value> {
    use std::cmp::Ordering::*;
    let truth = |v: Value| match v {
        Value::Bool(b) => Some(Some(b)),
        Value::Null => Some(None),
        Value::Cell(_) => None,
    };
    Some(match e {
        Expr::Column(c) => match row.cell(c) {
            Cell::Null => Value::Null,
            c => Value::Cell(c),
        },
        Expr::Literal(Scalar::Int64(v)) => Value::Cell(Cell::Int(*v)),
        Expr::Literal(Scalar::Utf8(v)) => Value::Cell(Cell::Text(v.clone())),
        Expr::Literal(Scalar::Boolean(b)) => Value::Bool(*b),
        Expr::Literal(Scalar::Null(_)) => Value::Null,
        Expr::Binary { op, left, right } => {
            let (l, r) = (eval(left, row)?, eval(right, row)?);
            match op {
                BinaryOp::And | BinaryOp::Or => {
                    let (l, r) = (truth(l)?, truth(r)?);
                    let and = *op == BinaryOp::And;
                    match (l, r) {
                        (Some(a), Some(b)) => Value::Bool(if and { a && b } else { a || b }),
                        (Some(x), None) | (None, Some(x)) if x != and => Value::Bool(x),
                        _ => Value::Null,
                    }
                }
                _ => {
                    let (Value::Cell(l), Value::Cell(r)) = (&l, &r) else {
                        return Some(Value::Null);
                    };
                    if std::mem::discriminant(l) != std::mem::discriminant(r) {
                        return None;
                    }
                    let o = l.partial_cmp(r)?;
                    Value::Bool(match op {
                        BinaryOp::Eq => o == Equal,
                        BinaryOp::NotEq => o != Equal,
                        BinaryOp::Lt => o == Less,
                        BinaryOp::LtEq => o != Greater,
                        BinaryOp::Gt => o == Greater,
                        BinaryOp::GtEq => o != Less,
                        _ => return None,
                    })
                }
            }
        }
        Expr::Not(inner) => match truth(eval(inner, row)?)? {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        },
        Expr::Is {
            test: IsTest::Null,
            expr,
        } => Value::Bool(eval(expr, row)? == Value::Null),
        Expr::Is {
            test: IsTest::NotNull,
            expr,
        } => Value::Bool(eval(expr, row)? != Value::Null),
        _ => return None,
    })
}

/// The naive groups of `plan` over `rows` (by the values of its grouping expressions), or
/// `None` where the evaluator cannot compute them.
fn groups<'a>(
    plan: &SubPlan,
    group_by: &[Named],
    rows: &'a [Row],
) -> Option<HashMap<Vec<String>, Vec<&'a Row>>> {
    let mut groups: HashMap<Vec<String>, Vec<&Row>> = HashMap::new();
    for r in rows {
        if let Some(f) = &plan.filter
            && eval(f, r)? != Value::Bool(true)
        {
            continue;
        }
        let key = group_by
            .iter()
            .map(|g| {
                eval(&g.expr, r).map(|v| match v {
                    Value::Cell(c) => format!("{c:?}"),
                    other => format!("{other:?}"),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        groups.entry(key).or_default().push(r);
    }
    Some(groups)
}

/// The aggregate `a` of a plain column over `group`, as SQL computes it, if it is a sum, count,
/// minimum or maximum.
fn naive_aggregate(a: &AggregateCall, group: &[&Row]) -> Option<Cell> {
    let [Expr::Column(column)] = a.args.as_slice() else {
        return None;
    };
    let cells: Vec<Cell> = group
        .iter()
        .map(|r| r.cell(column))
        .filter(|c| *c != Cell::Null)
        .collect();
    Some(match a.function.as_str() {
        "count" => Cell::Int(cells.len() as i64),
        "sum" | "min" | "max" if cells.is_empty() => Cell::Null,
        "sum" => Cell::Int(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Int(i) => Some(*i),
                    _ => None,
                })
                .sum::<Option<i64>>()?,
        ),
        "min" => cells.into_iter().reduce(|a, b| if b < a { b } else { a })?,
        "max" => cells.into_iter().reduce(|a, b| if b > a { b } else { a })?,
        _ => return None,
    })
}

/// Every column `plan` reads, as the asker's side sees it (walked here, not by the provider's
/// own function).
fn columns_of(plan: &SubPlan) -> Vec<String> {
    fn walk(e: &Expr, out: &mut Vec<String>) {
        if let Expr::Column(c) = e {
            out.push(c.clone());
        }
        e.children().into_iter().for_each(|c| walk(c, out));
    }
    let mut out = Vec::new();
    plan.filter.iter().for_each(|f| walk(f, &mut out));
    match &plan.output {
        Output::Rows {
            columns, order_by, ..
        } => {
            columns.iter().for_each(|c| walk(&c.expr, &mut out));
            order_by.iter().for_each(|k| walk(&k.expr, &mut out));
        }
        Output::Aggregate {
            group_by,
            aggregates,
        } => {
            group_by.iter().for_each(|g| walk(&g.expr, &mut out));
            for a in aggregates {
                a.args.iter().for_each(|x| walk(x, &mut out));
                a.filter.iter().for_each(|x| walk(x, &mut out));
                a.order_by.iter().for_each(|k| walk(&k.expr, &mut out));
            }
        }
    }
    out
}

/// Checks one answer of the provider against the policy and the naive reference; returns
/// whether it was `ok`.
fn check(what: &str, plan: &SubPlan, header: &AnswerHeader, bytes: &[u8], rows: &[Row]) -> bool {
    if header.status != AnswerStatus::Ok {
        assert!(bytes.is_empty(), "{what}: data left with a {header:?}");
        return false;
    }
    let Output::Aggregate {
        group_by,
        aggregates,
    } = &plan.output
    else {
        panic!("{what}: rows left an aggregate-only dataset: {plan:?}");
    };
    assert!(
        !columns_of(plan).iter().any(|c| c == "secret"),
        "{what}: the forbidden column was read: {plan:?}"
    );
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None).expect("Arrow IPC");
    let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
    let naive = groups(plan, group_by, rows);
    let mut answered = 0usize;
    for batch in &batches {
        for column in batch.columns() {
            if column.data_type() == &DataType::Int64 {
                for v in column.as_primitive::<Int64Type>().iter().flatten() {
                    // No sum of the other columns reaches the markers.
                    assert!(
                        !(9_000_001..=9_000_400).contains(&v),
                        "{what}: a secret marker {v} in the answer"
                    );
                }
            }
        }
        let n = batch.column_by_name("__n[count]").expect("group count");
        for i in 0..batch.num_rows() {
            answered += 1;
            let Cell::Int(count) = cell_of(n.as_ref(), i) else {
                panic!("{what}: a group without its count");
            };
            assert!(count >= K, "{what}: a group of {count} rows left");
            let Some(naive) = &naive else { continue };
            let key: Vec<String> = group_by
                .iter()
                .map(|g| {
                    let column = batch.column_by_name(&g.name).expect("group column");
                    format!("{:?}", cell_of(column.as_ref(), i))
                })
                .collect();
            let group = naive
                .get(&key)
                .unwrap_or_else(|| panic!("{what}: a group {key:?} that has no rows"));
            assert_eq!(
                count,
                group.len() as i64,
                "{what}: group {key:?} miscounted"
            );
            for a in aggregates
                .iter()
                .filter(|a| !a.distinct && a.filter.is_none())
            {
                let state = format!("{}[{}]", a.name, a.function);
                if let (Some(column), Some(want)) =
                    (batch.column_by_name(&state), naive_aggregate(a, group))
                {
                    let got = cell_of(column.as_ref(), i);
                    assert_eq!(got, want, "{what}: {} of group {key:?}", a.name);
                }
            }
        }
    }
    if let Some(naive) = naive {
        let big = naive.values().filter(|g| g.len() as i64 >= K).count();
        assert_eq!(
            answered, big,
            "{what}: every group of at least {K} rows, and only those"
        );
    }
    true
}

fn any_column(rng: &mut Rng) -> &'static str {
    rng.pick(&["station", "kind", "hour", "value", "id", "secret"])
}

/// A random literal for `column`, mostly of its own type and often a value it holds.
fn literal_for(rng: &mut Rng, column: &str) -> Expr {
    Expr::Literal(if TEXT_COLUMNS.contains(&column) {
        let pool: &[&str] = if column == "station" {
            &STATIONS
        } else {
            &KINDS
        };
        Scalar::Utf8(if rng.chance(90) {
            rng.pick(pool).to_owned()
        } else {
            "q' OR '1'='1".into()
        })
    } else {
        Scalar::Int64(match column {
            "hour" => rng.below(26) as i64 - 1,
            "value" => rng.below(1100) as i64 - 50,
            "id" => rng.below(410) as i64,
            _ => 9_000_000 + rng.below(410) as i64,
        })
    })
}

/// A condition on `column`: a comparison with a literal, or a null test.
fn condition(rng: &mut Rng, column: &str) -> Expr {
    let c = Box::new(Expr::Column(column.into()));
    let ops = [
        BinaryOp::Eq,
        BinaryOp::NotEq,
        BinaryOp::Lt,
        BinaryOp::LtEq,
        BinaryOp::Gt,
        BinaryOp::GtEq,
    ];
    match rng.below(8) {
        0 => Expr::Is {
            test: IsTest::Null,
            expr: c,
        },
        1 => Expr::Is {
            test: IsTest::NotNull,
            expr: c,
        },
        _ => Expr::Binary {
            op: rng.pick(&ops),
            left: c,
            right: Box::new(literal_for(rng, column)),
        },
    }
}

/// A sub-plan as a hostile asker could send it, bypassing DataFusion's planner.
fn raw_plan(rng: &mut Rng) -> SubPlan {
    let mut groups: Vec<&str> = Vec::new();
    for _ in 0..rng.below(3) {
        let column = any_column(rng);
        if !groups.contains(&column) {
            groups.push(column);
        }
    }
    let mut filter: Option<Expr> = None;
    for _ in 0..rng.below(3) {
        let column = if rng.chance(60) && !groups.is_empty() {
            groups[rng.below(groups.len())]
        } else {
            any_column(rng)
        };
        let c = condition(rng, column);
        filter = Some(match filter {
            None => c,
            Some(left) => Expr::Binary {
                op: if rng.chance(80) {
                    BinaryOp::And
                } else {
                    BinaryOp::Or
                },
                left: Box::new(left),
                right: Box::new(c),
            },
        });
    }
    let output = if rng.chance(15) {
        Output::Rows {
            columns: (0..1 + rng.below(3))
                .map(|i| Named {
                    name: format!("c{i}"),
                    expr: Expr::Column(any_column(rng).into()),
                })
                .collect(),
            order_by: vec![],
            limit: rng.chance(50).then(|| rng.below(5) as u64),
        }
    } else {
        let functions = ["count", "sum", "min", "max", "avg", "array_agg", "median"];
        let aggregates = (0..1 + rng.below(3))
            .map(|i| {
                let function = rng.pick(&functions);
                let column = if function == "sum" || function == "avg" {
                    rng.pick(&INT_COLUMNS)
                } else {
                    any_column(rng)
                };
                let arg = if rng.chance(85) {
                    Expr::Column(column.into())
                } else {
                    Expr::Case {
                        operand: None,
                        branches: vec![allmende_protocol::plan::When {
                            when: condition(rng, "id"),
                            then: Expr::Column(column.into()),
                        }],
                        otherwise: None,
                    }
                };
                AggregateCall {
                    name: format!("a{i}"),
                    function: function.into(),
                    args: vec![arg],
                    distinct: rng.chance(10),
                    filter: rng.chance(10).then(|| condition(rng, "id")),
                    order_by: vec![],
                }
            })
            .collect();
        Output::Aggregate {
            group_by: groups
                .iter()
                .map(|g| Named {
                    name: (*g).into(),
                    expr: Expr::Column((*g).into()),
                })
                .collect(),
            aggregates,
        }
    };
    SubPlan {
        version: PLAN_VERSION,
        filter,
        output,
    }
}

/// How many answers were `ok`, and how many asked.
#[derive(Default)]
struct Tally {
    asked: usize,
    ok: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_queries_and_two_thousand_plans_get_nothing_the_policy_forbids() {
    let rows = Arc::new(rows());
    let p = Arc::new(provider_with(&csv(&rows), POLICY));
    let mut rng = Rng(0x5eed_1234_abcd);
    // Queries: DataFusion plans each over the federated table `m.values`; every sub-plan it
    // sends the provider is checked as it is answered.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let current = Arc::new(Mutex::new(String::new()));
    let (seen_rows, seen_tally, seen_query) = (rows.clone(), tally.clone(), current.clone());
    let table = federated_table(
        &p,
        Arc::new(move |plan: &SubPlan, header: &AnswerHeader, bytes: &[u8]| {
            let what = seen_query.lock().unwrap().clone();
            let ok = check(&what, plan, header, bytes, &seen_rows);
            let mut t = seen_tally.lock().unwrap();
            t.asked += 1;
            t.ok += usize::from(ok);
        }),
    );
    let engine = Engine::new(&EngineConfig::default()).unwrap();
    let (mut planned, mut refused) = (0, 0);
    for i in 0..4000 {
        let sql = attempt(&mut rng);
        *current.lock().unwrap() = format!("query {i}: {sql}");
        let answered = match engine
            .query(&sql, 64 << 20, &|_| Ok(Source::Table(table.clone())))
            .await
        {
            Ok(stream) => collect(stream).await.map(drop),
            Err(e) => Err(e),
        };
        match answered {
            Ok(()) => planned += 1,
            Err(_) => refused += 1,
        }
    }
    let Tally { asked, ok } = *tally.lock().unwrap();
    eprintln!(
        "{planned} queries answered, {refused} refused; {asked} sub-plans asked, {ok} answers ok"
    );
    // The generator reaches the provider and gets answers: the checks above ran on real data.
    assert!(planned > 1000, "{planned} answered");
    assert!(ok > 150, "{ok} ok");
    // Sub-plans a hostile asker sends directly, four at a time (as many as the provider runs
    // at once).
    let plans: Vec<SubPlan> = (0..2000).map(|_| raw_plan(&mut rng)).collect();
    let mut answered = 0;
    for (n, chunk) in plans.chunks(4).enumerate() {
        let runs = chunk.iter().enumerate().map(|(j, plan)| {
            let (p, rows) = (&p, &rows);
            async move {
                let (header, bytes) = ask(p, plan_request(&p.id, plan.clone())).await;
                let what = format!("plan {}: {plan:?}", 4 * n + j);
                check(&what, plan, &header, &bytes, rows)
            }
        });
        answered += futures::future::join_all(runs)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
    }
    eprintln!("2000 plans sent, {answered} answers ok");
    assert!(answered > 120, "{answered} answered");
}
