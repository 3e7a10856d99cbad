//! The closed plan language of federated queries: what an asking node may ask a provider to
//! compute over one of its datasets, as a typed structure rather than SQL text.
//!
//! A [`SubPlan`] is a pipeline over the dataset's one table: an optional filter, then either
//! rows (expressions per output column, an ordering, a limit) or partial aggregates per group.
//! Expressions ([`Expr`]) are columns, typed literals, operators, `CASE`, casts and calls of
//! the scalar functions in [`SCALAR_FUNCTIONS`]; aggregates call the functions in
//! [`AGGREGATE_FUNCTIONS`], with `DISTINCT`, `FILTER` and an ordering. Nothing else can be
//! said: no user-defined functions, nothing that reads files, the clock or a random source.
//!
//! [`SubPlan::check`] bounds every list, every name and literal, the nesting depth and the
//! total number of expression nodes, and refuses unknown functions, before a provider looks at
//! anything else; it walks the plan without recursion. [`PlanError::code`] is the
//! machine-readable reason a provider answers with.
//!
//! Names of functions are DataFusion's canonical names (not aliases): the language follows
//! the SQL dialect of the engine both ends run. [`PLAN_VERSION`] changes whenever a list or a
//! shape of this module changes meaning.
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

mod check;
mod functions;
#[cfg(test)]
mod tests;

pub use check::PlanError;
pub use functions::{AGGREGATE_FUNCTIONS, SCALAR_FUNCTIONS, is_aggregate, is_scalar};

/// The version of the plan language; a provider refuses a plan of another version.
pub const PLAN_VERSION: u32 = 1;
/// Deepest nesting of expressions, counted from an output column, filter or key.
pub const MAX_EXPR_DEPTH: usize = 64;
/// Most expression nodes of one plan, over all its expressions.
pub const MAX_PLAN_NODES: usize = 16_384;
/// Most output columns, grouping expressions, aggregates or ordering keys of a plan, and
/// most arguments of a call or branches of a `CASE`.
pub const MAX_PLAN_TERMS: usize = 1024;
/// Longest time-zone name of a type or literal, in bytes.
pub const MAX_TIMEZONE_BYTES: usize = 64;

/// What a provider computes over its dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubPlan {
    /// [`PLAN_VERSION`] of the asking node.
    pub version: u32,
    /// Rows of the dataset to keep (SQL `WHERE`), before anything else.
    pub filter: Option<Expr>,
    /// What to return from the kept rows.
    pub output: Output,
}

/// The shape of a provider's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// One row per kept row: the expressions, then the ordering and limit.
    Rows {
        /// The output columns, in order.
        columns: Vec<Named>,
        /// Ordering of the rows, over the dataset's columns.
        order_by: Vec<SortKey>,
        /// Most rows to return.
        limit: Option<u64>,
    },
    /// One row per group: the grouping values, then each aggregate's partial state (as the
    /// engine's partial aggregation writes it), then the group's row count. The provider
    /// suppresses groups below its minimum group size.
    Aggregate {
        /// The grouping expressions; none for one group over all kept rows.
        group_by: Vec<Named>,
        /// The aggregates.
        aggregates: Vec<AggregateCall>,
    },
}

/// An expression with the name of the column it produces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Named {
    /// The output column's name, unique in the plan's output.
    pub name: String,
    /// The expression.
    pub expr: Expr,
}

/// One key of an ordering.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    /// What to order by.
    pub expr: Expr,
    /// Ascending (`ASC`) rather than descending.
    pub ascending: bool,
    /// `NULLS FIRST` rather than `NULLS LAST`.
    pub nulls_first: bool,
}

/// One aggregate of an [`Output::Aggregate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateCall {
    /// The name of its result; the state columns are named after it.
    pub name: String,
    /// A function of [`AGGREGATE_FUNCTIONS`].
    pub function: String,
    /// Its arguments (`count(*)` is `count(1)`, as DataFusion plans it).
    pub args: Vec<Expr>,
    /// `DISTINCT`.
    pub distinct: bool,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Expr>,
    /// `ORDER BY` within the aggregate (`array_agg(x ORDER BY y)`).
    pub order_by: Vec<SortKey>,
}

/// An expression over the dataset's columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// A column of the dataset.
    Column(String),
    /// A typed literal.
    Literal(Scalar),
    /// `left op right`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// `NOT e`.
    Not(Box<Expr>),
    /// `-e`.
    Negative(Box<Expr>),
    /// `e IS NULL`, `e IS NOT TRUE`, ….
    Is {
        /// Which test.
        test: IsTest,
        /// What is tested.
        expr: Box<Expr>,
    },
    /// `e [NOT] BETWEEN low AND high`.
    Between {
        /// What is compared.
        expr: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
        /// The lower bound.
        low: Box<Expr>,
        /// The upper bound.
        high: Box<Expr>,
    },
    /// `e [NOT] IN (list)`.
    InList {
        /// What is looked up.
        expr: Box<Expr>,
        /// The values.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `e [NOT] [I]LIKE pattern [ESCAPE c]`, or `SIMILAR TO`.
    Like {
        /// What is matched.
        expr: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// The escape character.
        escape: Option<char>,
        /// `NOT LIKE`.
        negated: bool,
        /// `ILIKE`.
        case_insensitive: bool,
        /// `SIMILAR TO` rather than `LIKE`.
        similar: bool,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`.
    Case {
        /// The operand compared with each `WHEN`, if any.
        operand: Option<Box<Expr>>,
        /// The branches, in order.
        branches: Vec<When>,
        /// `ELSE`.
        otherwise: Option<Box<Expr>>,
    },
    /// `CAST(e AS type)`, or `TRY_CAST` (a null where the cast fails).
    Cast {
        /// What is cast.
        expr: Box<Expr>,
        /// The type.
        to: DataType,
        /// `TRY_CAST`.
        safe: bool,
    },
    /// A call of a function in [`SCALAR_FUNCTIONS`].
    Call {
        /// The function's name.
        function: String,
        /// Its arguments.
        args: Vec<Expr>,
    },
}

/// One `WHEN … THEN …` of a `CASE`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct When {
    /// The condition (or the value compared with the operand).
    pub when: Expr,
    /// The result.
    pub then: Expr,
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs, reason = "each is the SQL operator of its name")]
pub enum BinaryOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    IsDistinctFrom,
    IsNotDistinctFrom,
    RegexMatch,
    RegexIMatch,
    RegexNotMatch,
    RegexNotIMatch,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    BitwiseShiftLeft,
    BitwiseShiftRight,
    StringConcat,
}

/// The test of an [`Expr::Is`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs, reason = "each is the SQL test of its name")]
pub enum IsTest {
    Null,
    NotNull,
    True,
    False,
    Unknown,
    NotTrue,
    NotFalse,
    NotUnknown,
}

/// The unit of a time, timestamp or duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs, reason = "each is the unit of its name")]
pub enum TimeUnit {
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

/// A column or literal type (Arrow's types that a dataset or a SQL literal can have).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs, reason = "each is the Arrow type of its name")]
pub enum DataType {
    Null,
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    Decimal128 {
        precision: u8,
        scale: i8,
    },
    Utf8,
    LargeUtf8,
    Utf8View,
    Binary,
    Date32,
    Date64,
    Time64(TimeUnit),
    Timestamp {
        unit: TimeUnit,
        timezone: Option<String>,
    },
    Duration(TimeUnit),
    IntervalYearMonth,
    IntervalDayTime,
    IntervalMonthDayNano,
}

/// A typed literal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs, reason = "each is the Arrow value of its name")]
pub enum Scalar {
    /// A null of the type.
    Null(DataType),
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt8(u8),
    UInt16(u16),
    UInt32(u32),
    UInt64(u64),
    Float32(f32),
    Float64(f64),
    /// The unscaled value in decimal digits (with an optional `-`), its precision and scale.
    Decimal128 {
        unscaled: String,
        precision: u8,
        scale: i8,
    },
    Utf8(String),
    LargeUtf8(String),
    Utf8View(String),
    Binary(ByteBuf),
    /// Days since 1970-01-01.
    Date32(i32),
    /// Milliseconds since 1970-01-01.
    Date64(i64),
    /// Units since midnight.
    Time64 {
        value: i64,
        unit: TimeUnit,
    },
    /// Units since 1970-01-01T00:00:00Z.
    Timestamp {
        value: i64,
        unit: TimeUnit,
        timezone: Option<String>,
    },
    Duration {
        value: i64,
        unit: TimeUnit,
    },
    IntervalYearMonth(i32),
    IntervalDayTime {
        days: i32,
        milliseconds: i32,
    },
    IntervalMonthDayNano {
        months: i32,
        days: i32,
        nanoseconds: i64,
    },
}

impl SubPlan {
    /// Every top-level expression of the plan: the filter, then the output's expressions
    /// (aggregate arguments, filters and orderings included).
    pub fn roots(&self) -> Vec<&Expr> {
        let mut out: Vec<&Expr> = self.filter.iter().collect();
        match &self.output {
            Output::Rows {
                columns, order_by, ..
            } => {
                out.extend(columns.iter().map(|c| &c.expr));
                out.extend(order_by.iter().map(|k| &k.expr));
            }
            Output::Aggregate {
                group_by,
                aggregates,
            } => {
                out.extend(group_by.iter().map(|g| &g.expr));
                for a in aggregates {
                    out.extend(&a.args);
                    out.extend(&a.filter);
                    out.extend(a.order_by.iter().map(|k| &k.expr));
                }
            }
        }
        out
    }

    /// Every column of the dataset the plan reads, anywhere, sorted and without repeats.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for root in self.roots() {
            walk(root, |e, _| {
                if let Expr::Column(c) = e {
                    out.push(c.as_str());
                }
            });
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Expr {
    /// The expressions directly under this one, left to right.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Column(_) | Expr::Literal(_) => vec![],
            Expr::Binary { left, right, .. } => vec![left, right],
            Expr::Not(x) | Expr::Negative(x) | Expr::Is { expr: x, .. } => vec![x],
            Expr::Cast { expr, .. } => vec![expr],
            Expr::Between {
                expr, low, high, ..
            } => vec![expr, low, high],
            Expr::InList { expr, list, .. } => std::iter::once(&**expr).chain(list).collect(),
            Expr::Like { expr, pattern, .. } => vec![expr, pattern],
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => operand
                .iter()
                .map(|x| &**x)
                .chain(branches.iter().flat_map(|b| [&b.when, &b.then]))
                .chain(otherwise.iter().map(|x| &**x))
                .collect(),
            Expr::Call { args, .. } => args.iter().collect(),
        }
    }
}

/// Visits `root` and every expression under it with its depth (the root's is 1), without
/// recursion.
pub fn walk<'a>(root: &'a Expr, mut visit: impl FnMut(&'a Expr, usize)) {
    let mut stack = vec![(root, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        visit(e, depth);
        stack.extend(e.children().into_iter().rev().map(|c| (c, depth + 1)));
    }
}
