//! What a minimum group size (`minGroupSize` k > 1) lets a federated sub-plan ([`SubPlan`])
//! ask (what it reads is [`SubPlan::columns`]). Pure: the provider calls it on the plan it
//! received, before it plans anything.
//!
//! Under a minimum group size the guarantee is that every value a provider returns is
//! computed from at least k rows of its dataset, counted by the provider itself, and that no
//! filter cuts a group down. So a plan may only
//!
//! - aggregate (no rows);
//! - filter on its grouping expressions: every column the filter reads lies inside an
//!   expression the plan groups by (`date_trunc('day', ts) = …` when grouped by
//!   `date_trunc('day', ts)`; not `ts > …`), so a filter keeps or drops whole groups;
//! - aggregate plain columns (or a literal, `count(*)`; either cast to another type, as the
//!   planner casts `avg`'s integer argument), without `DISTINCT` or `FILTER`: an
//!   argument such as `CASE WHEN id = 7 THEN x END` or a `FILTER (WHERE id = 7)` would pick
//!   one row out of a group of k, and a partial state of `DISTINCT` lists the values;
//! - call aggregates whose partial states are themselves aggregates of the group ([`SUMMARIES`]):
//!   not `array_agg`, `median`, `string_agg`, `first_value` and the like, whose states hold
//!   the rows' values.
//!
//! Grouping expressions are free (a group below k rows is dropped whatever defines it).
use allmende_protocol::plan::{Expr, Output, SubPlan};

/// The aggregate functions whose partial states are summaries of a group (counts, sums,
/// extremes, moments), allowed under a minimum group size; sorted.
pub const SUMMARIES: &[&str] = &[
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "count",
    "covar_pop",
    "covar_samp",
    "max",
    "min",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "sum",
    "var",
    "var_pop",
];

/// Why a sub-plan cannot be answered under a minimum group size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupSizeRefusal {
    /// It asks for rows.
    #[error("with a minimum group size only aggregates are answered, not rows")]
    Rows,
    /// Its filter reads a column outside every grouping expression.
    #[error(
        "filters on `{0}` outside the grouping expressions: with a minimum group size only \
         whole groups may be selected"
    )]
    FilterOutsideGroups(String),
    /// An aggregate takes an expression, not a column.
    #[error(
        "aggregate `{0}` takes an expression: with a minimum group size aggregates take \
         plain columns"
    )]
    Argument(String),
    /// An aggregate is `DISTINCT` (its partial state lists the values).
    #[error("aggregate `{0}` is DISTINCT: with a minimum group size its values would leave")]
    Distinct(String),
    /// An aggregate has a `FILTER` (it may pick rows out of a group).
    #[error("aggregate `{0}` has a FILTER: with a minimum group size it may not pick rows")]
    Filter(String),
    /// An aggregate's partial state holds row values.
    #[error("aggregate `{name}` calls `{function}`, whose partial state holds the rows' values")]
    Function {
        /// The aggregate's name.
        name: String,
        /// The function.
        function: String,
    },
}

impl GroupSizeRefusal {
    /// The machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rows => "rows-under-group-size",
            Self::FilterOutsideGroups(_) => "filter-outside-groups",
            Self::Argument(_) => "aggregate-of-an-expression",
            Self::Distinct(_) => "distinct-under-group-size",
            Self::Filter(_) => "aggregate-filter-under-group-size",
            Self::Function { .. } => "aggregate-of-row-values",
        }
    }
}

/// Whether `plan` may be answered under a minimum group size of more than one row.
pub fn check_under_group_size(plan: &SubPlan) -> Result<(), GroupSizeRefusal> {
    let Output::Aggregate {
        group_by,
        aggregates,
    } = &plan.output
    else {
        return Err(GroupSizeRefusal::Rows);
    };
    if let Some(filter) = &plan.filter {
        let groups: Vec<&Expr> = group_by.iter().map(|g| &g.expr).collect();
        if let Some(column) = outside(filter, &groups) {
            return Err(GroupSizeRefusal::FilterOutsideGroups(column.to_owned()));
        }
    }
    for a in aggregates {
        if SUMMARIES.binary_search(&a.function.as_str()).is_err() {
            return Err(GroupSizeRefusal::Function {
                name: a.name.clone(),
                function: a.function.clone(),
            });
        }
        if a.distinct {
            return Err(GroupSizeRefusal::Distinct(a.name.clone()));
        }
        if a.filter.is_some() {
            return Err(GroupSizeRefusal::Filter(a.name.clone()));
        }
        if !a.args.iter().all(plain) {
            return Err(GroupSizeRefusal::Argument(a.name.clone()));
        }
    }
    Ok(())
}

/// Whether `e` is a column or a literal, or one cast to another type (the planner casts
/// `avg(int_column)`'s argument to a float): a value of one row, picking none.
fn plain(e: &Expr) -> bool {
    match e {
        Expr::Column(_) | Expr::Literal(_) => true,
        Expr::Cast { expr, .. } => matches!(**expr, Expr::Column(_) | Expr::Literal(_)),
        _ => false,
    }
}

/// A column `e` reads outside every expression of `groups`, if any.
fn outside<'a>(e: &'a Expr, groups: &[&Expr]) -> Option<&'a str> {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if groups.contains(&e) {
            continue;
        }
        if let Expr::Column(c) = e {
            return Some(c);
        }
        stack.extend(e.children());
    }
    None
}

#[cfg(test)]
mod tests;
