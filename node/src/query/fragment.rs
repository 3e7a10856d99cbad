//! A fragment (a transfer view's selection) as the SQL the provider runs: written by the
//! provider itself from the fragment's structure, with every identifier and literal quoted,
//! over exactly one table `t`.

use allmende_protocol::query::{AggregateFn, CompareOp, Fragment, Literal};

/// The column with each group's row count in aggregate answers.
pub const GROUP_ROWS: &str = "__n";

/// Why a fragment has no SQL.
#[derive(Debug, thiserror::Error)]
pub enum FragmentSqlError {
    /// A comparison other than `IN` with no value or several.
    #[error("condition on `{0}` needs exactly one value")]
    OneValue(String),
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Null => "NULL".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) if f.is_finite() => format!("{f:?}"),
        Literal::Float(_) => "NULL".into(),
        Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

/// The SQL a provider runs for a fragment, over the table `t`.
pub fn fragment_sql(f: &Fragment) -> Result<String, FragmentSqlError> {
    let mut conds = Vec::new();
    for c in &f.filter {
        let col = quote(&c.column);
        let one = || {
            c.values
                .first()
                .filter(|_| c.values.len() == 1)
                .map(literal)
                .ok_or_else(|| FragmentSqlError::OneValue(c.column.clone()))
        };
        conds.push(match c.op {
            CompareOp::Eq => format!("{col} = {}", one()?),
            CompareOp::Neq => format!("{col} <> {}", one()?),
            CompareOp::Lt => format!("{col} < {}", one()?),
            CompareOp::Lteq => format!("{col} <= {}", one()?),
            CompareOp::Gt => format!("{col} > {}", one()?),
            CompareOp::Gteq => format!("{col} >= {}", one()?),
            CompareOp::IsNull => format!("{col} IS NULL"),
            CompareOp::IsNotNull => format!("{col} IS NOT NULL"),
            CompareOp::In if c.values.is_empty() => "FALSE".into(),
            CompareOp::In => format!(
                "{col} IN ({})",
                c.values.iter().map(literal).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    if f.is_aggregate() {
        let mut items: Vec<String> = f.group_by.iter().map(|g| quote(g)).collect();
        for (i, a) in f.aggregates.iter().enumerate() {
            let func = match a.func {
                AggregateFn::Count => "COUNT",
                AggregateFn::Sum => "SUM",
                AggregateFn::Min => "MIN",
                AggregateFn::Max => "MAX",
            };
            items.push(format!("{func}({}) AS \"__a{i}\"", quote(&a.column)));
        }
        items.push(format!("COUNT(*) AS \"{GROUP_ROWS}\""));
        let group = if f.group_by.is_empty() {
            String::new()
        } else {
            format!(
                " GROUP BY {}",
                f.group_by
                    .iter()
                    .map(|g| quote(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(format!("SELECT {} FROM t{filter}{group}", items.join(", ")))
    } else {
        let cols = if f.columns.is_empty() {
            "*".to_owned()
        } else {
            f.columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let order = if f.order_by.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = f
                .order_by
                .iter()
                .map(|(c, asc)| format!("{} {}", quote(c), if *asc { "ASC" } else { "DESC" }))
                .collect();
            format!(" ORDER BY {}", keys.join(", "))
        };
        let limit = f.limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        Ok(format!("SELECT {cols} FROM t{filter}{order}{limit}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmende_protocol::query::{Aggregate, Condition};

    #[test]
    fn builds_quoted_sql_from_fragments() {
        let f = Fragment {
            aggregates: vec![Aggregate {
                func: AggregateFn::Sum,
                column: "no2".into(),
            }],
            group_by: vec!["station".into()],
            filter: vec![Condition {
                column: "station".into(),
                op: CompareOp::In,
                values: vec![Literal::Text("a'; DROP".into())],
            }],
            ..Fragment::default()
        };
        assert_eq!(
            fragment_sql(&f).unwrap(),
            "SELECT \"station\", SUM(\"no2\") AS \"__a0\", COUNT(*) AS \"__n\" FROM t WHERE \"station\" IN ('a''; DROP') GROUP BY \"station\""
        );
        let rows = Fragment {
            columns: vec!["x\"y".into()],
            order_by: vec![("x\"y".into(), false)],
            limit: Some(3),
            ..Fragment::default()
        };
        assert_eq!(
            fragment_sql(&rows).unwrap(),
            "SELECT \"x\"\"y\" FROM t ORDER BY \"x\"\"y\" DESC LIMIT 3"
        );
    }
}
