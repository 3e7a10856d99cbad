//! The plan language of federated queries ([`allmende_protocol::plan`]) in DataFusion's terms.
//!
//! A provider turns a [`SubPlan`] into a logical plan over its one table with
//! [`logical_plan`], after [`SubPlan::check`], resolving every function by its name in the
//! engine's own registry (so the bounded functions of [`super::bounded`] apply); no SQL text
//! is written. An asking node turns the expressions it would push down into the language with
//! [`expr_from_df`], which answers `None` for anything outside it (a subquery, a window, a
//! user-defined or clock-reading function, a type the language has no name for): those stay
//! on the asking node.
use allmende_protocol::plan::{
    self, AggregateCall, BinaryOp, IsTest, Output, PlanError, SortKey, SubPlan, When, is_scalar,
};
use datafusion::common::Column;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::{
    AggregateFunction, Between, BinaryExpr, Case, Cast, InList, Like, ScalarFunction, Sort, TryCast,
};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Operator};

mod run;
#[cfg(test)]
pub(crate) mod tests;
mod types;

pub use run::SUBPLAN_TABLE;
pub(crate) use run::{final_stage, partial_stage};
pub use types::{scalar_from_df, scalar_to_df, type_from_df, type_to_df};

/// The name of each group's row count, the aggregate `count(1)` a provider adds after a
/// plan's own; its state column is `__n[count]`.
pub const GROUP_ROWS: &str = "__n";

/// Why a provider cannot plan a [`SubPlan`].
#[derive(Debug, thiserror::Error)]
pub enum SubPlanError {
    /// The plan breaks the language's limits or lists.
    #[error(transparent)]
    Check(#[from] PlanError),
    /// A value the engine cannot hold as written (a decimal beyond 128 bits, a `Time64` of
    /// seconds).
    #[error("the plan has a {0} the engine cannot represent")]
    Unrepresentable(&'static str),
    /// DataFusion refused the plan: an unknown column, a type mismatch, a wrong number of
    /// arguments.
    #[error("{0}")]
    Planning(#[from] DataFusionError),
    /// The engine failed to read the dataset or to run the plan.
    #[error(transparent)]
    Engine(#[from] super::SqlError),
}

/// The logical plan of `plan` over `table` (the scan of the provider's dataset), with the
/// functions of `registry`.
pub fn logical_plan(
    plan: &SubPlan,
    table: LogicalPlanBuilder,
    registry: &dyn FunctionRegistry,
) -> Result<LogicalPlan, SubPlanError> {
    plan.check()?;
    let to_df = |e: &plan::Expr| expr_to_df(e, registry);
    let mut b = table;
    if let Some(filter) = &plan.filter {
        b = b.filter(to_df(filter)?)?;
    }
    let b = match &plan.output {
        Output::Rows {
            columns,
            order_by,
            limit,
        } => {
            if !order_by.is_empty() {
                b = b.sort(sorts_to_df(order_by, registry)?)?;
            }
            if let Some(n) = limit {
                b = b.limit(0, Some(usize::try_from(*n).unwrap_or(usize::MAX)))?;
            }
            let columns = columns
                .iter()
                .map(|c| Ok(to_df(&c.expr)?.alias(&c.name)))
                .collect::<Result<Vec<_>, SubPlanError>>()?;
            b.project(columns)?
        }
        Output::Aggregate {
            group_by,
            aggregates,
        } => {
            let groups = group_by
                .iter()
                .map(|g| Ok(to_df(&g.expr)?.alias(&g.name)))
                .collect::<Result<Vec<_>, SubPlanError>>()?;
            let mut aggregates = aggregates
                .iter()
                .map(|a| Ok(aggregate_to_df(a, registry)?.alias(&a.name)))
                .collect::<Result<Vec<_>, SubPlanError>>()?;
            aggregates.push(run::group_rows(registry)?);
            // Only the columns the aggregation reads, so that a scan reads no more.
            let mut used: Vec<Column> = groups
                .iter()
                .chain(&aggregates)
                .flat_map(|e| e.column_refs())
                .cloned()
                .collect();
            used.sort();
            used.dedup();
            if !used.is_empty() {
                b = b.project(used.into_iter().map(Expr::Column))?;
            }
            b.aggregate(groups, aggregates)?
        }
    };
    Ok(b.build()?)
}

fn sorts_to_df(
    keys: &[SortKey],
    registry: &dyn FunctionRegistry,
) -> Result<Vec<Sort>, SubPlanError> {
    keys.iter()
        .map(|k| {
            Ok(Sort::new(
                expr_to_df(&k.expr, registry)?,
                k.ascending,
                k.nulls_first,
            ))
        })
        .collect()
}

fn aggregate_to_df(
    a: &AggregateCall,
    registry: &dyn FunctionRegistry,
) -> Result<Expr, SubPlanError> {
    let func = registry.udaf(&a.function)?;
    let args = a
        .args
        .iter()
        .map(|e| expr_to_df(e, registry))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = match &a.filter {
        Some(f) => Some(Box::new(expr_to_df(f, registry)?)),
        None => None,
    };
    Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
        func,
        args,
        a.distinct,
        filter,
        sorts_to_df(&a.order_by, registry)?,
        None,
    )))
}

/// A DataFusion expression for a language expression. Recursive: call it on checked plans only,
/// whose depth [`SubPlan::check`] has bounded.
pub fn expr_to_df(e: &plan::Expr, registry: &dyn FunctionRegistry) -> Result<Expr, SubPlanError> {
    let boxed = |x: &plan::Expr| expr_to_df(x, registry).map(Box::new);
    Ok(match e {
        plan::Expr::Column(c) => Expr::Column(Column::new_unqualified(c)),
        plan::Expr::Literal(s) => Expr::Literal(scalar_to_df(s)?, None),
        plan::Expr::Binary { op, left, right } => {
            Expr::BinaryExpr(BinaryExpr::new(boxed(left)?, op_to_df(*op), boxed(right)?))
        }
        plan::Expr::Not(x) => Expr::Not(boxed(x)?),
        plan::Expr::Negative(x) => Expr::Negative(boxed(x)?),
        plan::Expr::Is { test, expr } => {
            let x = boxed(expr)?;
            match test {
                IsTest::Null => Expr::IsNull(x),
                IsTest::NotNull => Expr::IsNotNull(x),
                IsTest::True => Expr::IsTrue(x),
                IsTest::False => Expr::IsFalse(x),
                IsTest::Unknown => Expr::IsUnknown(x),
                IsTest::NotTrue => Expr::IsNotTrue(x),
                IsTest::NotFalse => Expr::IsNotFalse(x),
                IsTest::NotUnknown => Expr::IsNotUnknown(x),
            }
        }
        plan::Expr::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between(Between::new(
            boxed(expr)?,
            *negated,
            boxed(low)?,
            boxed(high)?,
        )),
        plan::Expr::InList {
            expr,
            list,
            negated,
        } => Expr::InList(InList::new(
            boxed(expr)?,
            list.iter()
                .map(|x| expr_to_df(x, registry))
                .collect::<Result<_, _>>()?,
            *negated,
        )),
        plan::Expr::Like {
            expr,
            pattern,
            escape,
            negated,
            case_insensitive,
            similar,
        } => {
            let like = Like::new(
                *negated,
                boxed(expr)?,
                boxed(pattern)?,
                *escape,
                *case_insensitive,
            );
            if *similar {
                Expr::SimilarTo(like)
            } else {
                Expr::Like(like)
            }
        }
        plan::Expr::Case {
            operand,
            branches,
            otherwise,
        } => Expr::Case(Case::new(
            operand.as_deref().map(boxed).transpose()?,
            branches
                .iter()
                .map(|w| Ok((boxed(&w.when)?, boxed(&w.then)?)))
                .collect::<Result<_, SubPlanError>>()?,
            otherwise.as_deref().map(boxed).transpose()?,
        )),
        plan::Expr::Cast { expr, to, safe } => {
            let to = type_to_df(to);
            if *safe {
                Expr::TryCast(TryCast::new(boxed(expr)?, to))
            } else {
                Expr::Cast(Cast::new(boxed(expr)?, to))
            }
        }
        plan::Expr::Call { function, args } => Expr::ScalarFunction(ScalarFunction::new_udf(
            registry.udf(function)?,
            args.iter()
                .map(|x| expr_to_df(x, registry))
                .collect::<Result<_, _>>()?,
        )),
    })
}

/// The language expression for a DataFusion expression over one table's columns, or `None`
/// when it is outside the language. Column qualifiers are dropped.
pub fn expr_from_df(e: &Expr) -> Option<plan::Expr> {
    let boxed = |x: &Expr| expr_from_df(x).map(Box::new);
    let is = |test, x: &Expr| {
        Some(plan::Expr::Is {
            test,
            expr: boxed(x)?,
        })
    };
    Some(match e {
        Expr::Column(c) => plan::Expr::Column(c.name.clone()),
        Expr::Literal(v, None) => plan::Expr::Literal(scalar_from_df(v)?),
        Expr::BinaryExpr(b) => plan::Expr::Binary {
            op: op_from_df(b.op)?,
            left: boxed(&b.left)?,
            right: boxed(&b.right)?,
        },
        Expr::Not(x) => plan::Expr::Not(boxed(x)?),
        Expr::Negative(x) => plan::Expr::Negative(boxed(x)?),
        Expr::IsNull(x) => return is(IsTest::Null, x),
        Expr::IsNotNull(x) => return is(IsTest::NotNull, x),
        Expr::IsTrue(x) => return is(IsTest::True, x),
        Expr::IsFalse(x) => return is(IsTest::False, x),
        Expr::IsUnknown(x) => return is(IsTest::Unknown, x),
        Expr::IsNotTrue(x) => return is(IsTest::NotTrue, x),
        Expr::IsNotFalse(x) => return is(IsTest::NotFalse, x),
        Expr::IsNotUnknown(x) => return is(IsTest::NotUnknown, x),
        Expr::Between(b) => plan::Expr::Between {
            expr: boxed(&b.expr)?,
            negated: b.negated,
            low: boxed(&b.low)?,
            high: boxed(&b.high)?,
        },
        Expr::InList(l) => plan::Expr::InList {
            expr: boxed(&l.expr)?,
            list: l.list.iter().map(expr_from_df).collect::<Option<_>>()?,
            negated: l.negated,
        },
        Expr::Like(l) | Expr::SimilarTo(l) => plan::Expr::Like {
            expr: boxed(&l.expr)?,
            pattern: boxed(&l.pattern)?,
            escape: l.escape_char,
            negated: l.negated,
            case_insensitive: l.case_insensitive,
            similar: matches!(e, Expr::SimilarTo(_)),
        },
        Expr::Case(c) => plan::Expr::Case {
            operand: match &c.expr {
                Some(x) => Some(boxed(x)?),
                None => None,
            },
            branches: c
                .when_then_expr
                .iter()
                .map(|(w, t)| {
                    Some(When {
                        when: expr_from_df(w)?,
                        then: expr_from_df(t)?,
                    })
                })
                .collect::<Option<_>>()?,
            otherwise: match &c.else_expr {
                Some(x) => Some(boxed(x)?),
                None => None,
            },
        },
        Expr::Cast(c) => plan::Expr::Cast {
            expr: boxed(&c.expr)?,
            to: type_from_df(c.field.data_type())?,
            safe: false,
        },
        Expr::TryCast(c) => plan::Expr::Cast {
            expr: boxed(&c.expr)?,
            to: type_from_df(c.field.data_type())?,
            safe: true,
        },
        Expr::ScalarFunction(f) if is_scalar(f.func.name()) => plan::Expr::Call {
            function: f.func.name().to_owned(),
            args: f.args.iter().map(expr_from_df).collect::<Option<_>>()?,
        },
        _ => return None,
    })
}

fn op_to_df(op: BinaryOp) -> Operator {
    match op {
        BinaryOp::Eq => Operator::Eq,
        BinaryOp::NotEq => Operator::NotEq,
        BinaryOp::Lt => Operator::Lt,
        BinaryOp::LtEq => Operator::LtEq,
        BinaryOp::Gt => Operator::Gt,
        BinaryOp::GtEq => Operator::GtEq,
        BinaryOp::And => Operator::And,
        BinaryOp::Or => Operator::Or,
        BinaryOp::Plus => Operator::Plus,
        BinaryOp::Minus => Operator::Minus,
        BinaryOp::Multiply => Operator::Multiply,
        BinaryOp::Divide => Operator::Divide,
        BinaryOp::Modulo => Operator::Modulo,
        BinaryOp::IsDistinctFrom => Operator::IsDistinctFrom,
        BinaryOp::IsNotDistinctFrom => Operator::IsNotDistinctFrom,
        BinaryOp::RegexMatch => Operator::RegexMatch,
        BinaryOp::RegexIMatch => Operator::RegexIMatch,
        BinaryOp::RegexNotMatch => Operator::RegexNotMatch,
        BinaryOp::RegexNotIMatch => Operator::RegexNotIMatch,
        BinaryOp::BitwiseAnd => Operator::BitwiseAnd,
        BinaryOp::BitwiseOr => Operator::BitwiseOr,
        BinaryOp::BitwiseXor => Operator::BitwiseXor,
        BinaryOp::BitwiseShiftLeft => Operator::BitwiseShiftLeft,
        BinaryOp::BitwiseShiftRight => Operator::BitwiseShiftRight,
        BinaryOp::StringConcat => Operator::StringConcat,
    }
}

fn op_from_df(op: Operator) -> Option<BinaryOp> {
    Some(match op {
        Operator::Eq => BinaryOp::Eq,
        Operator::NotEq => BinaryOp::NotEq,
        Operator::Lt => BinaryOp::Lt,
        Operator::LtEq => BinaryOp::LtEq,
        Operator::Gt => BinaryOp::Gt,
        Operator::GtEq => BinaryOp::GtEq,
        Operator::And => BinaryOp::And,
        Operator::Or => BinaryOp::Or,
        Operator::Plus => BinaryOp::Plus,
        Operator::Minus => BinaryOp::Minus,
        Operator::Multiply => BinaryOp::Multiply,
        Operator::Divide => BinaryOp::Divide,
        Operator::Modulo => BinaryOp::Modulo,
        Operator::IsDistinctFrom => BinaryOp::IsDistinctFrom,
        Operator::IsNotDistinctFrom => BinaryOp::IsNotDistinctFrom,
        Operator::RegexMatch => BinaryOp::RegexMatch,
        Operator::RegexIMatch => BinaryOp::RegexIMatch,
        Operator::RegexNotMatch => BinaryOp::RegexNotMatch,
        Operator::RegexNotIMatch => BinaryOp::RegexNotIMatch,
        Operator::BitwiseAnd => BinaryOp::BitwiseAnd,
        Operator::BitwiseOr => BinaryOp::BitwiseOr,
        Operator::BitwiseXor => BinaryOp::BitwiseXor,
        Operator::BitwiseShiftLeft => BinaryOp::BitwiseShiftLeft,
        Operator::BitwiseShiftRight => BinaryOp::BitwiseShiftRight,
        Operator::StringConcat => BinaryOp::StringConcat,
        _ => return None,
    })
}
