//! Planning a federated query on the asking node: find the one federated table the query reads
//! (`<member>.<dataset>` or `federation.<kind>`), push projection, filters and partial
//! aggregates (COUNT, SUM, MIN, MAX, and AVG as SUM + COUNT, per group) down to the providers as
//! a [`Fragment`], and rewrite the query into the local SQL that merges the partial results
//! (union, re-aggregation, HAVING, ORDER BY, LIMIT) with DataFusion.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use allmende_protocol::query::{Aggregate, AggregateFn, Fragment, Literal};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, ObjectName,
    ObjectNamePart, OrderByKind, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

mod conditions;

pub use conditions::filter_conditions;
use conditions::{conditions_of, conjuncts, ident_of, literal_of};

/// The column naming each row's member.
pub const MEMBER_COLUMN: &str = "_member";
/// The local table holding the providers' answers.
pub const MERGED_TABLE: &str = "__fed";

/// The federated table a query reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One member's dataset.
    Member {
        /// The member's name (organisation without "Stadt"/"Kreis", lower-case, e.g. `wuerzburg`).
        member: String,
        /// The dataset's name or id.
        dataset: String,
    },
    /// Every member's dataset that declares the common schema `kind`.
    Federation {
        /// The schema name, e.g. `air_quality_hourly`.
        kind: String,
    },
}

impl std::fmt::Display for Target {
    /// The table as the query names it: `federation.<kind>` or `<member>.<dataset>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Federation { kind } => write!(f, "federation.{kind}"),
            Self::Member { member, dataset } => write!(f, "{member}.{dataset}"),
        }
    }
}

/// A planned federated query.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What to read.
    pub target: Target,
    /// What each provider computes.
    pub fragment: Fragment,
    /// The SQL that merges the answers (over [`MERGED_TABLE`]).
    pub local_sql: String,
}

impl Plan {
    /// `message` (an error of the merge) with the merge's inner names replaced by what the
    /// query names: the table, the partial aggregates and the group row count.
    pub fn humanize(&self, message: &str) -> String {
        let table = self.target.to_string();
        let mut out = message
            .replace(&format!("{MERGED_TABLE}."), &format!("{table}."))
            .replace(MERGED_TABLE, &table);
        // Highest index first, so that `__a1` does not rewrite the start of `__a12`.
        for (i, a) in self.fragment.aggregates.iter().enumerate().rev() {
            let func = match a.func {
                AggregateFn::Count => "count",
                AggregateFn::Sum => "sum",
                AggregateFn::Min => "min",
                AggregateFn::Max => "max",
            };
            out = out.replace(&format!("__a{i}"), &format!("{func}({})", a.column));
        }
        out.replace(super::fragment::GROUP_ROWS, "count(*)")
    }
}

/// Why a query cannot be planned.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, PlanError> {
    Err(PlanError(m.into()))
}

fn references_only_member(e: &Expr) -> bool {
    let mut only = true;
    let mut any = false;
    let _ = visit_expressions(e, |x| {
        if let Some(i) =
            ident_of(x).filter(|_| matches!(x, Expr::Identifier(_) | Expr::CompoundIdentifier(_)))
        {
            any = true;
            only &= i == MEMBER_COLUMN;
        }
        ControlFlow::<()>::Continue(())
    });
    any && only
}

fn parse_expr(text: &str) -> Result<Expr, PlanError> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| PlanError(format!("internal rewrite failed: {e}")))
}

/// An aggregate call in the user's query: its function and plain-column argument (`None` for
/// `COUNT(*)`).
fn aggregate_call(e: &Expr) -> Option<Result<(String, Option<String>), PlanError>> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_lowercase();
    if !matches!(name.as_str(), "count" | "sum" | "min" | "max" | "avg") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return Some(err(format!("`{e}`: aggregates take one plain column")));
    };
    if list.duplicate_treatment.is_some()
        || f.filter.is_some()
        || f.over.is_some()
        || list.args.len() != 1
    {
        return Some(err(format!(
            "`{e}`: DISTINCT, FILTER and window aggregates are not pushed to providers"
        )));
    }
    Some(match &list.args[0] {
        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "count" => Ok((name, None)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => match ident_of(arg) {
            Some(c) if c != MEMBER_COLUMN => Ok((name, Some(c))),
            _ => err(format!(
                "`{e}`: federated aggregates take one plain column of the dataset"
            )),
        },
        _ => err(format!(
            "`{e}`: federated aggregates take one plain column of the dataset"
        )),
    })
}

fn target_of(name: &ObjectName) -> Result<Target, PlanError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i.value.clone()),
            _ => err(format!("`{name}` is not a table name")),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [schema, kind] if schema.eq_ignore_ascii_case("federation") => {
            Ok(Target::Federation { kind: kind.clone() })
        }
        [member, dataset] => Ok(Target::Member {
            member: member.clone(),
            dataset: dataset.clone(),
        }),
        _ => err(format!(
            "`{name}`: a federated query reads `<member>.<dataset>` or `federation.<kind>` (this node's own \
             datasets are queried with /api/v1/sql)"
        )),
    }
}

fn single_select(query: &mut Query) -> Result<&mut Select, PlanError> {
    if query.with.is_some() {
        return err("WITH is not supported in federated queries");
    }
    match query.body.as_mut() {
        SetExpr::Select(select) => Ok(select),
        _ => err("a federated query is one SELECT (no UNION, VALUES or nested set operations)"),
    }
}

/// Plans `sql`.
pub fn plan(sql: &str) -> Result<Plan, PlanError> {
    allmende_data::sql::guard::check(sql).map_err(|e| PlanError(e.to_string()))?;
    allmende_data::sql::guard::check_syntax(sql, allmende_data::sql::guard::Syntax::Statements)
        .map_err(|e| PlanError(e.to_string()))?;
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| PlanError(format!("SQL syntax error: {e}")))?;
    if statements.len() != 1 {
        return err("send exactly one statement");
    }
    let Statement::Query(mut query) = statements.remove(0) else {
        return err("only queries (SELECT) are allowed");
    };
    let limit = match &query.limit_clause {
        Some(datafusion::sql::sqlparser::ast::LimitClause::LimitOffset {
            limit: Some(l),
            offset: None,
            ..
        }) => literal_of(l).and_then(|v| {
            if let Literal::Int(n) = v {
                u64::try_from(n).ok()
            } else {
                None
            }
        }),
        _ => None,
    };
    let order_plain: Option<Vec<(String, bool)>> = match &query.order_by {
        None => Some(vec![]),
        Some(o) => match &o.kind {
            OrderByKind::Expressions(exprs) => exprs
                .iter()
                .map(|e| ident_of(&e.expr).map(|c| (c, e.options.asc.unwrap_or(true))))
                .collect(),
            OrderByKind::All(_) => None,
        },
    };
    let order_exprs: Vec<Expr> = match &query.order_by {
        Some(o) => match &o.kind {
            OrderByKind::Expressions(exprs) => exprs.iter().map(|e| e.expr.clone()).collect(),
            OrderByKind::All(_) => vec![],
        },
        None => vec![],
    };
    let select = single_select(&mut query)?;
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return err("a federated query reads one federated table (joins are not supported yet)");
    }
    let target = match &mut select.from[0].relation {
        TableFactor::Table {
            name, args: None, ..
        } => {
            let target = target_of(name)?;
            *name = ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new(
                MERGED_TABLE,
            )]);
            target
        }
        _ => return err("a federated query reads a table, not a subquery or a function"),
    };
    if select.distinct.is_some()
        && !matches!(select.group_by, GroupByExpr::Expressions(ref g, _) if g.is_empty())
    {
        return err("DISTINCT with GROUP BY is not supported in federated queries");
    }

    // Everything the query mentions, outside the aliases it defines.
    let aliases: BTreeSet<String> = select
        .projection
        .iter()
        .filter_map(|p| match p {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    let wildcard = select.projection.iter().any(|p| {
        matches!(
            p,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let mut exprs: Vec<Expr> = select
        .projection
        .iter()
        .filter_map(|p| match p {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                Some(e.clone())
            }
            _ => None,
        })
        .collect();
    let group_exprs: Vec<Expr> = match &select.group_by {
        GroupByExpr::Expressions(g, modifiers) if modifiers.is_empty() => g.clone(),
        GroupByExpr::Expressions(..) => {
            return err("ROLLUP, CUBE and GROUPING SETS are not supported in federated queries");
        }
        GroupByExpr::All(_) => return err("GROUP BY ALL is not supported in federated queries"),
    };
    exprs.extend(group_exprs.iter().cloned());
    exprs.extend(select.having.iter().cloned());
    exprs.extend(order_exprs.iter().cloned());
    let mut columns = BTreeSet::new();
    let mut aggregate = !group_exprs.is_empty();
    let mut bad = None;
    for e in exprs.iter().chain(select.selection.iter()) {
        let _ = visit_expressions(e, |x| {
            match x {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                    if let Some(c) =
                        ident_of(x).filter(|c| c != MEMBER_COLUMN && !aliases.contains(c))
                    {
                        columns.insert(c);
                    }
                }
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    bad = Some("subqueries are not supported in federated queries".to_owned());
                }
                _ => {}
            }
            if let Some(call) = aggregate_call(x) {
                aggregate = true;
                if let Err(e) = call {
                    bad = Some(e.0);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    if let Some(b) = bad {
        return err(b);
    }

    // WHERE: conditions the providers apply, and those left to the merge.
    let mut pushed = Vec::new();
    let mut local = Vec::new();
    let mut conj = Vec::new();
    if let Some(w) = select.selection.take() {
        conjuncts(w, &mut conj);
    }
    for c in conj {
        if references_only_member(&c) {
            local.push(c);
        } else if let Some(conds) = conditions_of(&c) {
            pushed.extend(conds);
            if !aggregate {
                local.push(c);
            }
        } else if aggregate {
            return err(format!(
                "`{c}` cannot be evaluated by the providers; in aggregate queries use comparisons of a \
                 column with literals (=, <>, <, <=, >, >=, IN, BETWEEN, IS NULL)"
            ));
        } else {
            local.push(c);
        }
    }
    select.selection = local.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    });

    let mut fragment = Fragment {
        filter: pushed,
        ..Fragment::default()
    };
    if aggregate {
        for g in &group_exprs {
            match ident_of(g) {
                Some(c) if c == MEMBER_COLUMN => {}
                Some(c) if !aliases.contains(&c) => fragment.group_by.push(c),
                _ => return err(format!("`{g}`: federated queries group by plain columns")),
            }
        }
        if wildcard {
            return err("`*` cannot be combined with aggregates");
        }
        // An aggregate without an alias is named as DataFusion would name it over the table
        // itself (`count(*)`, `sum(federation.air.no2)`), not after the merge's inner names.
        let table = target.to_string().to_lowercase();
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(e) = item
                && let Some(Ok((name, column))) = aggregate_call(e)
            {
                let shown = match column {
                    None => format!("{name}(*)"),
                    Some(c) => format!("{name}({table}.{})", c.to_lowercase()),
                };
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: datafusion::sql::sqlparser::ast::Ident::with_quote('"', shown),
                };
            }
        }
        let mut partial = |func: AggregateFn, column: &str| -> String {
            let a = Aggregate {
                func,
                column: column.to_owned(),
            };
            let i = match fragment.aggregates.iter().position(|x| *x == a) {
                Some(i) => i,
                None => {
                    fragment.aggregates.push(a);
                    fragment.aggregates.len() - 1
                }
            };
            format!("\"__a{i}\"")
        };
        let mut failure = None;
        let _ = visit_expressions_mut(&mut *query, |x| {
            if let Some(Ok((name, column))) = aggregate_call(x) {
                let text = match (name.as_str(), column.as_deref()) {
                    ("count", None) => format!("SUM(\"{}\")", super::fragment::GROUP_ROWS),
                    ("count", Some(c)) => format!("SUM({})", partial(AggregateFn::Count, c)),
                    ("sum", Some(c)) => format!("SUM({})", partial(AggregateFn::Sum, c)),
                    ("min", Some(c)) => format!("MIN({})", partial(AggregateFn::Min, c)),
                    ("max", Some(c)) => format!("MAX({})", partial(AggregateFn::Max, c)),
                    ("avg", Some(c)) => format!(
                        "(CAST(SUM({}) AS DOUBLE) / CAST(SUM({}) AS DOUBLE))",
                        partial(AggregateFn::Sum, c),
                        partial(AggregateFn::Count, c)
                    ),
                    _ => {
                        failure = Some(format!("`{x}` cannot be computed from partial aggregates"));
                        return ControlFlow::Break(());
                    }
                };
                match parse_expr(&text) {
                    Ok(e) => *x = e,
                    Err(e) => {
                        failure = Some(e.0);
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        });
        if let Some(f) = failure {
            return err(f);
        }
        fragment.count_only = !fragment.is_aggregate();
    } else {
        if !wildcard {
            fragment.columns = columns.into_iter().collect();
        }
        // ORDER BY … LIMIT n goes to the providers too when nothing is filtered after them.
        if let (Some(order), Some(n)) = (order_plain, limit)
            && select_has_no_local_filter(&query)
            && order
                .iter()
                .all(|(c, _)| c != MEMBER_COLUMN && !aliases.contains(c))
        {
            fragment.order_by = order;
            fragment.limit = Some(n);
        }
    }
    fragment.check().map_err(|e| PlanError(e.to_string()))?;
    Ok(Plan {
        target,
        fragment,
        local_sql: Statement::Query(query).to_string(),
    })
}

fn select_has_no_local_filter(query: &Query) -> bool {
    matches!(query.body.as_ref(), SetExpr::Select(s) if s.selection.is_none())
}

#[cfg(test)]
mod tests;
