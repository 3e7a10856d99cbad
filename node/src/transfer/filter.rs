//! A transfer's row filter: and-ed comparisons of one column with literals, read from an SQL
//! expression (`year >= 2024 AND station = 'a'`), as the provider's view conditions.

use allmende_protocol::query::{CompareOp, Condition, Literal};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Why a row filter is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

fn err<T>(m: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(m.into()))
}

fn ident_of(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Nested(inner) => ident_of(inner),
        _ => None,
    }
}

fn literal_of(e: &Expr) -> Option<Literal> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => Some(Literal::Null),
            Value::Boolean(b) => Some(Literal::Bool(*b)),
            Value::Number(n, _) => n
                .parse::<i64>()
                .map(Literal::Int)
                .ok()
                .or_else(|| n.parse::<f64>().ok().map(Literal::Float)),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Some(Literal::Text(s.clone()))
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal_of(expr)? {
            Literal::Int(i) => Some(Literal::Int(-i)),
            Literal::Float(f) => Some(Literal::Float(-f)),
            _ => None,
        },
        Expr::Nested(inner) => literal_of(inner),
        _ => None,
    }
}

fn flip(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::Lteq => CompareOp::Gteq,
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::Gteq => CompareOp::Lteq,
        other => other,
    }
}

/// Converts one conjunct into provider conditions, if it can be.
fn conditions_of(e: &Expr) -> Option<Vec<Condition>> {
    let cond = |column: String, op, values| Condition { column, op, values };
    match e {
        Expr::Nested(inner) => conditions_of(inner),
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Eq => CompareOp::Eq,
                BinaryOperator::NotEq => CompareOp::Neq,
                BinaryOperator::Lt => CompareOp::Lt,
                BinaryOperator::LtEq => CompareOp::Lteq,
                BinaryOperator::Gt => CompareOp::Gt,
                BinaryOperator::GtEq => CompareOp::Gteq,
                _ => return None,
            };
            if let (Some(c), Some(v)) = (ident_of(left), literal_of(right)) {
                Some(vec![cond(c, op, vec![v])])
            } else if let (Some(v), Some(c)) = (literal_of(left), ident_of(right)) {
                Some(vec![cond(c, flip(op), vec![v])])
            } else {
                None
            }
        }
        Expr::IsNull(inner) => Some(vec![cond(ident_of(inner)?, CompareOp::IsNull, vec![])]),
        Expr::IsNotNull(inner) => Some(vec![cond(ident_of(inner)?, CompareOp::IsNotNull, vec![])]),
        Expr::InList {
            expr,
            list,
            negated: false,
        } => {
            let values = list.iter().map(literal_of).collect::<Option<Vec<_>>>()?;
            Some(vec![cond(ident_of(expr)?, CompareOp::In, values)])
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let c = ident_of(expr)?;
            Some(vec![
                cond(c.clone(), CompareOp::Gteq, vec![literal_of(low)?]),
                cond(c, CompareOp::Lteq, vec![literal_of(high)?]),
            ])
        }
        _ => None,
    }
}

/// The provider conditions of a row filter written as SQL (`year >= 2024 AND station = 'a'`):
/// and-ed comparisons of a column with literals, `IN`, `BETWEEN` and null checks.
pub fn filter_conditions(text: &str) -> Result<Vec<Condition>, FilterError> {
    allmende_data::sql::guard::check(text).map_err(|e| FilterError(e.to_string()))?;
    allmende_data::sql::guard::check_syntax(text, allmende_data::sql::guard::Syntax::Expression)
        .map_err(|e| FilterError(format!("the row filter is not an SQL expression: {e}")))?;
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| FilterError(format!("the row filter is not an SQL expression: {e}")))?;
    let mut parts = Vec::new();
    conjuncts(expr, &mut parts);
    let mut out = Vec::new();
    for part in parts {
        match conditions_of(&part) {
            Some(c) => out.extend(c),
            None => {
                return err(format!(
                    "`{part}` is not a comparison of a column with literals; a row filter is \
                     and-ed comparisons (=, <>, <, <=, >, >=, IN, BETWEEN, IS [NOT] NULL)"
                ));
            }
        }
    }
    Ok(out)
}

/// The and-ed parts of `e`, in order; without recursion, so that a long chain of `AND`s
/// cannot exhaust the stack.
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    let mut todo = vec![e];
    while let Some(e) = todo.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                todo.push(*right);
                todo.push(*left);
            }
            Expr::Nested(inner)
                if matches!(
                    *inner,
                    Expr::BinaryOp {
                        op: BinaryOperator::And,
                        ..
                    }
                ) =>
            {
                todo.push(*inner)
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
