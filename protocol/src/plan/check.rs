//! [`SubPlan::check`]: the language's limits and lists, checked before anything is planned.
use super::*;
use crate::query::{MAX_CONDITION_VALUES, MAX_IDENTIFIER_BYTES, MAX_LITERAL_BYTES};

/// Why a plan is refused before anything is planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// The plan is of another version of the language.
    #[error("the plan is of version {got}; this node speaks version {PLAN_VERSION}")]
    Version {
        /// The plan's version.
        got: u32,
    },
    /// A list is longer than its limit.
    #[error("the plan has {len} {what}; at most {max} are allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name or literal is longer than its limit.
    #[error("a {what} of the plan is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// What is too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Expressions nest deeper than [`MAX_EXPR_DEPTH`].
    #[error("an expression of the plan nests deeper than {MAX_EXPR_DEPTH} levels")]
    TooDeep,
    /// More expression nodes than [`MAX_PLAN_NODES`].
    #[error("the plan has more than {MAX_PLAN_NODES} expression nodes")]
    TooLarge,
    /// A function outside [`SCALAR_FUNCTIONS`] or [`AGGREGATE_FUNCTIONS`].
    #[error("the function `{0}` is not part of the plan language")]
    UnknownFunction(String),
    /// An output column's name is empty or repeated.
    #[error("the output column name `{0}` is empty or not unique")]
    OutputName(String),
    /// A plan that returns nothing: rows without columns.
    #[error("the plan returns no columns")]
    NoColumns,
    /// A malformed part: a `CASE` without branches, a decimal that is not one.
    #[error("the plan has a malformed {0}")]
    Malformed(&'static str),
}

impl PlanError {
    /// The machine-readable reason, stable across releases of the same [`PLAN_VERSION`].
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::Version { .. } => "plan-version",
            PlanError::TooMany { .. } => "plan-too-many",
            PlanError::TooLong { .. } => "plan-too-long",
            PlanError::TooDeep => "plan-too-deep",
            PlanError::TooLarge => "plan-too-large",
            PlanError::UnknownFunction(_) => "plan-unknown-function",
            PlanError::OutputName(_) => "plan-output-name",
            PlanError::NoColumns => "plan-no-columns",
            PlanError::Malformed(_) => "plan-malformed",
        }
    }
}

fn count(what: &'static str, len: usize, max: usize) -> Result<(), PlanError> {
    if len > max {
        Err(PlanError::TooMany { what, len, max })
    } else {
        Ok(())
    }
}

fn length(what: &'static str, s: &str, max: usize) -> Result<(), PlanError> {
    if s.len() > max {
        Err(PlanError::TooLong {
            what,
            len: s.len(),
            max,
        })
    } else {
        Ok(())
    }
}

impl SubPlan {
    /// Checks the plan against the language's limits and lists; a provider calls it first.
    pub fn check(&self) -> Result<(), PlanError> {
        if self.version != PLAN_VERSION {
            return Err(PlanError::Version { got: self.version });
        }
        let mut names: Vec<&str> = Vec::new();
        match &self.output {
            Output::Rows {
                columns, order_by, ..
            } => {
                count("output columns", columns.len(), MAX_PLAN_TERMS)?;
                count("ordering keys", order_by.len(), MAX_PLAN_TERMS)?;
                if columns.is_empty() {
                    return Err(PlanError::NoColumns);
                }
                names.extend(columns.iter().map(|c| c.name.as_str()));
            }
            Output::Aggregate {
                group_by,
                aggregates,
            } => {
                count("grouping expressions", group_by.len(), MAX_PLAN_TERMS)?;
                count("aggregates", aggregates.len(), MAX_PLAN_TERMS)?;
                names.extend(group_by.iter().map(|g| g.name.as_str()));
                for a in aggregates {
                    names.push(&a.name);
                    length("function name", &a.function, MAX_IDENTIFIER_BYTES)?;
                    if !is_aggregate(&a.function) {
                        return Err(PlanError::UnknownFunction(a.function.clone()));
                    }
                    count("arguments of one aggregate", a.args.len(), MAX_PLAN_TERMS)?;
                    count("ordering keys", a.order_by.len(), MAX_PLAN_TERMS)?;
                }
            }
        }
        for name in &names {
            length("column name", name, MAX_IDENTIFIER_BYTES)?;
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        if let Some(n) = sorted.iter().find(|n| n.is_empty()) {
            return Err(PlanError::OutputName((*n).to_owned()));
        }
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(PlanError::OutputName(w[0].to_owned()));
        }
        let mut nodes = 0usize;
        for root in self.roots() {
            check_expr(root, &mut nodes)?;
        }
        Ok(())
    }
}

/// Checks one expression tree: depth, node count (shared by the plan), lists and literals.
fn check_expr(root: &Expr, nodes: &mut usize) -> Result<(), PlanError> {
    let mut result = Ok(());
    walk(root, |e, depth| {
        if result.is_err() {
            return;
        }
        *nodes += 1;
        result = if depth > MAX_EXPR_DEPTH {
            Err(PlanError::TooDeep)
        } else if *nodes > MAX_PLAN_NODES {
            Err(PlanError::TooLarge)
        } else {
            check_node(e)
        };
    });
    result
}

fn check_node(e: &Expr) -> Result<(), PlanError> {
    match e {
        Expr::Column(c) => length("column name", c, MAX_IDENTIFIER_BYTES),
        Expr::Literal(s) => check_scalar(s),
        Expr::InList { list, .. } => {
            count("values of one IN list", list.len(), MAX_CONDITION_VALUES)
        }
        Expr::Case { branches, .. } => {
            count("branches of one CASE", branches.len(), MAX_PLAN_TERMS)?;
            if branches.is_empty() {
                return Err(PlanError::Malformed("CASE without WHEN"));
            }
            Ok(())
        }
        Expr::Cast { to, .. } => check_type(to),
        Expr::Call { function, args } => {
            length("function name", function, MAX_IDENTIFIER_BYTES)?;
            if !is_scalar(function) {
                return Err(PlanError::UnknownFunction(function.clone()));
            }
            count("arguments of one call", args.len(), MAX_PLAN_TERMS)
        }
        Expr::Binary { .. }
        | Expr::Not(_)
        | Expr::Negative(_)
        | Expr::Is { .. }
        | Expr::Between { .. }
        | Expr::Like { .. } => Ok(()),
    }
}

fn check_type(t: &DataType) -> Result<(), PlanError> {
    match t {
        DataType::Timestamp {
            timezone: Some(tz), ..
        } => length("time zone", tz, MAX_TIMEZONE_BYTES),
        DataType::Decimal128 { precision, scale } => {
            if *precision == 0 || *precision > 38 || i16::from(*scale) > i16::from(*precision) {
                return Err(PlanError::Malformed("decimal type"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_scalar(s: &Scalar) -> Result<(), PlanError> {
    match s {
        Scalar::Null(t) => check_type(t),
        Scalar::Utf8(t) | Scalar::LargeUtf8(t) | Scalar::Utf8View(t) => {
            length("text literal", t, MAX_LITERAL_BYTES)
        }
        Scalar::Binary(b) if b.len() > MAX_LITERAL_BYTES => Err(PlanError::TooLong {
            what: "binary literal",
            len: b.len(),
            max: MAX_LITERAL_BYTES,
        }),
        Scalar::Decimal128 {
            unscaled,
            precision,
            scale,
        } => {
            check_type(&DataType::Decimal128 {
                precision: *precision,
                scale: *scale,
            })?;
            let digits = unscaled.strip_prefix('-').unwrap_or(unscaled);
            // Canonical digits only: no leading zeros, no `-0`, at most `precision` of them.
            if digits.is_empty()
                || digits.len() > usize::from(*precision)
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
                || unscaled == "-0"
            {
                return Err(PlanError::Malformed("decimal literal"));
            }
            Ok(())
        }
        Scalar::Timestamp {
            timezone: Some(tz), ..
        } => length("time zone", tz, MAX_TIMEZONE_BYTES),
        _ => Ok(()),
    }
}
