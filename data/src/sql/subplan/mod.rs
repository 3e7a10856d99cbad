//! The plan language of federated queries ([`allmende_protocol::plan`]) in DataFusion's terms.
//!
//! A provider turns a [`SubPlan`] into a logical plan over its one table with
//! [`logical_plan`], after [`SubPlan::check`], resolving every function by its name in the
//! engine's own registry (so the bounded functions of [`super::bounded`] apply); no SQL text
//! is written. An asking node turns the expressions it would push down into the language with
//! [`expr_from_df`], which answers `None` for anything outside it (a subquery, a window, a
//! user-defined or clock-reading function, a type the language has no name for): those stay
//! on the asking node.
use std::sync::Arc;

use allmende_protocol::plan::{
    self, AggregateCall, BinaryOp, DataType as PlanType, IsTest, Output, PlanError, Scalar,
    SortKey, SubPlan, TimeUnit as PlanUnit, When, is_scalar,
};
use arrow::datatypes::{DataType, IntervalDayTime, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::{
    AggregateFunction, Between, BinaryExpr, Case, Cast, InList, Like, ScalarFunction, Sort, TryCast,
};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Operator};

#[cfg(test)]
mod tests;

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
            let aggregates = aggregates
                .iter()
                .map(|a| Ok(aggregate_to_df(a, registry)?.alias(&a.name)))
                .collect::<Result<Vec<_>, SubPlanError>>()?;
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

fn unit_to_df(u: PlanUnit) -> TimeUnit {
    match u {
        PlanUnit::Second => TimeUnit::Second,
        PlanUnit::Millisecond => TimeUnit::Millisecond,
        PlanUnit::Microsecond => TimeUnit::Microsecond,
        PlanUnit::Nanosecond => TimeUnit::Nanosecond,
    }
}

fn unit_from_df(u: &TimeUnit) -> PlanUnit {
    match u {
        TimeUnit::Second => PlanUnit::Second,
        TimeUnit::Millisecond => PlanUnit::Millisecond,
        TimeUnit::Microsecond => PlanUnit::Microsecond,
        TimeUnit::Nanosecond => PlanUnit::Nanosecond,
    }
}

/// The Arrow type of a language type.
pub fn type_to_df(t: &PlanType) -> DataType {
    match t {
        PlanType::Null => DataType::Null,
        PlanType::Boolean => DataType::Boolean,
        PlanType::Int8 => DataType::Int8,
        PlanType::Int16 => DataType::Int16,
        PlanType::Int32 => DataType::Int32,
        PlanType::Int64 => DataType::Int64,
        PlanType::UInt8 => DataType::UInt8,
        PlanType::UInt16 => DataType::UInt16,
        PlanType::UInt32 => DataType::UInt32,
        PlanType::UInt64 => DataType::UInt64,
        PlanType::Float32 => DataType::Float32,
        PlanType::Float64 => DataType::Float64,
        PlanType::Decimal128 { precision, scale } => DataType::Decimal128(*precision, *scale),
        PlanType::Utf8 => DataType::Utf8,
        PlanType::LargeUtf8 => DataType::LargeUtf8,
        PlanType::Utf8View => DataType::Utf8View,
        PlanType::Binary => DataType::Binary,
        PlanType::Date32 => DataType::Date32,
        PlanType::Date64 => DataType::Date64,
        PlanType::Time64(u) => DataType::Time64(unit_to_df(*u)),
        PlanType::Timestamp { unit, timezone } => {
            DataType::Timestamp(unit_to_df(*unit), timezone.as_deref().map(Arc::from))
        }
        PlanType::Duration(u) => DataType::Duration(unit_to_df(*u)),
        PlanType::IntervalYearMonth => DataType::Interval(IntervalUnit::YearMonth),
        PlanType::IntervalDayTime => DataType::Interval(IntervalUnit::DayTime),
        PlanType::IntervalMonthDayNano => DataType::Interval(IntervalUnit::MonthDayNano),
    }
}

/// The language type of an Arrow type, or `None` for one outside the language.
pub fn type_from_df(t: &DataType) -> Option<PlanType> {
    Some(match t {
        DataType::Null => PlanType::Null,
        DataType::Boolean => PlanType::Boolean,
        DataType::Int8 => PlanType::Int8,
        DataType::Int16 => PlanType::Int16,
        DataType::Int32 => PlanType::Int32,
        DataType::Int64 => PlanType::Int64,
        DataType::UInt8 => PlanType::UInt8,
        DataType::UInt16 => PlanType::UInt16,
        DataType::UInt32 => PlanType::UInt32,
        DataType::UInt64 => PlanType::UInt64,
        DataType::Float32 => PlanType::Float32,
        DataType::Float64 => PlanType::Float64,
        DataType::Decimal128(precision, scale) => PlanType::Decimal128 {
            precision: *precision,
            scale: *scale,
        },
        DataType::Utf8 => PlanType::Utf8,
        DataType::LargeUtf8 => PlanType::LargeUtf8,
        DataType::Utf8View => PlanType::Utf8View,
        DataType::Binary => PlanType::Binary,
        DataType::Date32 => PlanType::Date32,
        DataType::Date64 => PlanType::Date64,
        DataType::Time64(u) => PlanType::Time64(unit_from_df(u)),
        DataType::Timestamp(unit, tz) => PlanType::Timestamp {
            unit: unit_from_df(unit),
            timezone: tz.as_deref().map(str::to_owned),
        },
        DataType::Duration(u) => PlanType::Duration(unit_from_df(u)),
        DataType::Interval(IntervalUnit::YearMonth) => PlanType::IntervalYearMonth,
        DataType::Interval(IntervalUnit::DayTime) => PlanType::IntervalDayTime,
        DataType::Interval(IntervalUnit::MonthDayNano) => PlanType::IntervalMonthDayNano,
        _ => return None,
    })
}

/// The engine's value of a language literal.
pub fn scalar_to_df(s: &Scalar) -> Result<ScalarValue, SubPlanError> {
    let tz = |t: &Option<String>| t.as_deref().map(Arc::from);
    Ok(match s {
        Scalar::Null(t) => ScalarValue::try_new_null(&type_to_df(t))?,
        Scalar::Boolean(v) => ScalarValue::Boolean(Some(*v)),
        Scalar::Int8(v) => ScalarValue::Int8(Some(*v)),
        Scalar::Int16(v) => ScalarValue::Int16(Some(*v)),
        Scalar::Int32(v) => ScalarValue::Int32(Some(*v)),
        Scalar::Int64(v) => ScalarValue::Int64(Some(*v)),
        Scalar::UInt8(v) => ScalarValue::UInt8(Some(*v)),
        Scalar::UInt16(v) => ScalarValue::UInt16(Some(*v)),
        Scalar::UInt32(v) => ScalarValue::UInt32(Some(*v)),
        Scalar::UInt64(v) => ScalarValue::UInt64(Some(*v)),
        Scalar::Float32(v) => ScalarValue::Float32(Some(*v)),
        Scalar::Float64(v) => ScalarValue::Float64(Some(*v)),
        Scalar::Decimal128 {
            unscaled,
            precision,
            scale,
        } => ScalarValue::Decimal128(
            Some(
                unscaled
                    .parse()
                    .map_err(|_| SubPlanError::Unrepresentable("decimal"))?,
            ),
            *precision,
            *scale,
        ),
        Scalar::Utf8(v) => ScalarValue::Utf8(Some(v.clone())),
        Scalar::LargeUtf8(v) => ScalarValue::LargeUtf8(Some(v.clone())),
        Scalar::Utf8View(v) => ScalarValue::Utf8View(Some(v.clone())),
        Scalar::Binary(v) => ScalarValue::Binary(Some(v.to_vec())),
        Scalar::Date32(v) => ScalarValue::Date32(Some(*v)),
        Scalar::Date64(v) => ScalarValue::Date64(Some(*v)),
        Scalar::Time64 { value, unit } => match unit {
            PlanUnit::Microsecond => ScalarValue::Time64Microsecond(Some(*value)),
            PlanUnit::Nanosecond => ScalarValue::Time64Nanosecond(Some(*value)),
            PlanUnit::Second | PlanUnit::Millisecond => {
                return Err(SubPlanError::Unrepresentable(
                    "Time64 of seconds or milliseconds",
                ));
            }
        },
        Scalar::Timestamp {
            value,
            unit,
            timezone,
        } => match unit {
            PlanUnit::Second => ScalarValue::TimestampSecond(Some(*value), tz(timezone)),
            PlanUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(*value), tz(timezone)),
            PlanUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(*value), tz(timezone)),
            PlanUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(*value), tz(timezone)),
        },
        Scalar::Duration { value, unit } => match unit {
            PlanUnit::Second => ScalarValue::DurationSecond(Some(*value)),
            PlanUnit::Millisecond => ScalarValue::DurationMillisecond(Some(*value)),
            PlanUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(*value)),
            PlanUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(*value)),
        },
        Scalar::IntervalYearMonth(v) => ScalarValue::IntervalYearMonth(Some(*v)),
        Scalar::IntervalDayTime { days, milliseconds } => {
            ScalarValue::IntervalDayTime(Some(IntervalDayTime::new(*days, *milliseconds)))
        }
        Scalar::IntervalMonthDayNano {
            months,
            days,
            nanoseconds,
        } => ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
            *months,
            *days,
            *nanoseconds,
        ))),
    })
}

/// The language literal of an engine value, or `None` for one outside the language.
pub fn scalar_from_df(v: &ScalarValue) -> Option<Scalar> {
    if v.is_null() {
        return Some(Scalar::Null(type_from_df(&v.data_type())?));
    }
    let tz = |t: &Option<Arc<str>>| t.as_deref().map(str::to_owned);
    Some(match v {
        ScalarValue::Boolean(Some(v)) => Scalar::Boolean(*v),
        ScalarValue::Int8(Some(v)) => Scalar::Int8(*v),
        ScalarValue::Int16(Some(v)) => Scalar::Int16(*v),
        ScalarValue::Int32(Some(v)) => Scalar::Int32(*v),
        ScalarValue::Int64(Some(v)) => Scalar::Int64(*v),
        ScalarValue::UInt8(Some(v)) => Scalar::UInt8(*v),
        ScalarValue::UInt16(Some(v)) => Scalar::UInt16(*v),
        ScalarValue::UInt32(Some(v)) => Scalar::UInt32(*v),
        ScalarValue::UInt64(Some(v)) => Scalar::UInt64(*v),
        ScalarValue::Float32(Some(v)) => Scalar::Float32(*v),
        ScalarValue::Float64(Some(v)) => Scalar::Float64(*v),
        ScalarValue::Decimal128(Some(v), precision, scale) => Scalar::Decimal128 {
            unscaled: v.to_string(),
            precision: *precision,
            scale: *scale,
        },
        ScalarValue::Utf8(Some(v)) => Scalar::Utf8(v.clone()),
        ScalarValue::LargeUtf8(Some(v)) => Scalar::LargeUtf8(v.clone()),
        ScalarValue::Utf8View(Some(v)) => Scalar::Utf8View(v.clone()),
        ScalarValue::Binary(Some(v)) => Scalar::Binary(v.clone().into()),
        ScalarValue::Date32(Some(v)) => Scalar::Date32(*v),
        ScalarValue::Date64(Some(v)) => Scalar::Date64(*v),
        ScalarValue::Time64Microsecond(Some(v)) => Scalar::Time64 {
            value: *v,
            unit: PlanUnit::Microsecond,
        },
        ScalarValue::Time64Nanosecond(Some(v)) => Scalar::Time64 {
            value: *v,
            unit: PlanUnit::Nanosecond,
        },
        ScalarValue::TimestampSecond(Some(v), t) => timestamp(*v, PlanUnit::Second, tz(t)),
        ScalarValue::TimestampMillisecond(Some(v), t) => {
            timestamp(*v, PlanUnit::Millisecond, tz(t))
        }
        ScalarValue::TimestampMicrosecond(Some(v), t) => {
            timestamp(*v, PlanUnit::Microsecond, tz(t))
        }
        ScalarValue::TimestampNanosecond(Some(v), t) => timestamp(*v, PlanUnit::Nanosecond, tz(t)),
        ScalarValue::DurationSecond(Some(v)) => duration(*v, PlanUnit::Second),
        ScalarValue::DurationMillisecond(Some(v)) => duration(*v, PlanUnit::Millisecond),
        ScalarValue::DurationMicrosecond(Some(v)) => duration(*v, PlanUnit::Microsecond),
        ScalarValue::DurationNanosecond(Some(v)) => duration(*v, PlanUnit::Nanosecond),
        ScalarValue::IntervalYearMonth(Some(v)) => Scalar::IntervalYearMonth(*v),
        ScalarValue::IntervalDayTime(Some(v)) => Scalar::IntervalDayTime {
            days: v.days,
            milliseconds: v.milliseconds,
        },
        ScalarValue::IntervalMonthDayNano(Some(v)) => Scalar::IntervalMonthDayNano {
            months: v.months,
            days: v.days,
            nanoseconds: v.nanoseconds,
        },
        _ => return None,
    })
}

fn timestamp(value: i64, unit: PlanUnit, timezone: Option<String>) -> Scalar {
    Scalar::Timestamp {
        value,
        unit,
        timezone,
    }
}

fn duration(value: i64, unit: PlanUnit) -> Scalar {
    Scalar::Duration { value, unit }
}
