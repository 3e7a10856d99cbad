//! Bounds on a query text, checked on its tokens before it is parsed: its length and the number
//! of operators it holds. Every parser and planner entry (local SQL, federated SQL, transfer
//! filters, the SQL a provider writes for a fragment) goes through [`check`] first.
//!
//! Why operators: the parser builds a chain such as `1+1+…+1` or `a=1 AND b=2 AND …` (also
//! `UNION` chains, joins and casts) in a loop, as a tree as deep as the chain is long; planning,
//! optimizing and dropping such a tree recurse once per level. Nesting (parentheses,
//! subqueries, `NOT NOT …`) is bounded separately by the parser's recursion limit
//! ([`MAX_NESTING`]). So a tree is at most about `MAX_OPERATORS + MAX_NESTING` deep, whatever
//! the text.
//!
//! Why the syntax is checked first ([`check_syntax`]): DataFusion 55's parser (sqlparser 0.62)
//! speculates and backtracks, and on some invalid texts of a few hundred bytes its time doubles
//! with each repetition of a pattern (a chain `a.b.c[` before an unclosed subscript,
//! `x-not-b.` or `if(current_time(` repeated; the `sql` fuzz target found the first). sqlparser
//! 0.64 remembers where a speculation failed and parses those in linear time, so a text is
//! parsed by DataFusion only once 0.64 has accepted it.
//!
//! After parsing, [`check_statement`] refuses the shapes DataFusion's planner cannot take: a
//! `SELECT` with an empty list (a PostgreSQL extension; standard SQL needs at least one item)
//! makes a relation of no columns, and a subquery of no columns used as a value panics while
//! planning (DataFusion 55.2 reads its first column's type).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::SqlError;

/// Longest query text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 128 << 10;

/// Most operators in one query text: binary and unary operators, `AND`/`OR`/`NOT`, `IS`,
/// `LIKE`, `BETWEEN`, `IN`, casts (`::`), subscripts, set operators and joins.
pub const MAX_OPERATORS: usize = 500;

/// Deepest nesting of parentheses, subqueries and prefix operators (the parser's recursion
/// limit, DataFusion's `sql_parser.recursion_limit`).
pub const MAX_NESTING: usize = 50;

/// Checks the length and the operator count of `sql` (a statement or an expression); returns
/// the count.
pub fn check(sql: &str) -> Result<usize, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::TooComplex(format!(
            "the query text is {} bytes long; the limit is {MAX_SQL_BYTES} bytes",
            sql.len()
        )));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| SqlError::Invalid(format!("SQL syntax error: {e}")))?;
    let operators = tokens.iter().filter(|t| is_operator(t)).count();
    if operators > MAX_OPERATORS {
        return Err(SqlError::TooComplex(format!(
            "the query holds {operators} operators (binary and set operators, AND/OR/NOT, \
             comparisons, casts, joins); the limit is {MAX_OPERATORS}"
        )));
    }
    Ok(operators)
}

/// What a text must parse as.
#[derive(Clone, Copy, Debug)]
pub enum Syntax {
    /// One or more statements.
    Statements,
    /// One expression (a filter).
    Expression,
}

/// Checks that `sql` parses as `syntax` (in the generic dialect, nested at most
/// [`MAX_NESTING`] deep) with a parser that takes linear time on it; its syntax error, with
/// the position, otherwise.
pub fn check_syntax(sql: &str, syntax: Syntax) -> Result<(), SqlError> {
    use sqlparser_linear::dialect::GenericDialect as Generic;
    use sqlparser_linear::parser::Parser;
    let refused = |e: sqlparser_linear::parser::ParserError| {
        SqlError::Invalid(format!("SQL syntax error: {e}"))
    };
    let mut parser = Parser::new(&Generic {})
        .with_recursion_limit(MAX_NESTING)
        .try_with_sql(sql)
        .map_err(refused)?;
    match syntax {
        Syntax::Statements => {
            // Statements only DataFusion's parser knows (`CREATE EXTERNAL TABLE`, its `COPY`)
            // are no syntax errors but writes: refused as such, by their first word.
            if !starts_a_query(&parser.peek_token().token) {
                return Err(SqlError::NotAllowed(NOT_A_QUERY.into()));
            }
            let statements = parser.parse_statements().map_err(refused)?;
            if statements
                .iter()
                .any(|s| !matches!(s, sqlparser_linear::ast::Statement::Query(_)))
            {
                return Err(SqlError::NotAllowed(NOT_A_QUERY.into()));
            }
            Ok(())
        }
        Syntax::Expression => parser.parse_expr().map(drop).map_err(refused),
    }
}

/// Why a statement that is not a query is refused.
pub(crate) const NOT_A_QUERY: &str = "the statement is not a query (SELECT, WITH or VALUES)";

/// Whether a statement that begins with `token` may be a query: a query's first word or
/// parenthesis, or a word that is no keyword at all (a typo, left to the parser to report).
fn starts_a_query(token: &sqlparser_linear::tokenizer::Token) -> bool {
    use sqlparser_linear::keywords::Keyword as K;
    use sqlparser_linear::tokenizer::Token as T;
    match token {
        T::Word(w) => matches!(
            w.keyword,
            K::SELECT | K::WITH | K::VALUES | K::TABLE | K::NoKeyword
        ),
        _ => true,
    }
}

/// Refuses a parsed `statement` that holds a `SELECT` with an empty list, anywhere.
pub fn check_statement(statement: &Statement) -> Result<(), SqlError> {
    struct EmptyList;
    impl Visitor for EmptyList {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if has_empty_list(&query.body) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    match statement.visit(&mut EmptyList) {
        ControlFlow::Break(()) => Err(SqlError::Invalid(
            "a SELECT list needs at least one column or expression".into(),
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether a `SELECT` of `body` (not of the queries nested in it) has an empty list.
fn has_empty_list(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.projection.is_empty(),
        SetExpr::SetOperation { left, right, .. } => has_empty_list(left) || has_empty_list(right),
        _ => false,
    }
}

/// Whether `token` may add a level to a chain the parser builds in a loop.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::RLIKE
                | Keyword::REGEXP
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::OVERLAPS
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::MINUS
                | Keyword::JOIN
        ),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_chains_are_refused_before_parsing() {
        let chain = |op: &str, n: usize| {
            let terms = vec!["1"; n];
            format!("SELECT {}", terms.join(op))
        };
        assert!(check(&chain("+", 400)).is_ok());
        for op in ["+", " OR ", " AND ", " || ", "::int::"] {
            let err = check(&chain(op, MAX_OPERATORS + 2)).unwrap_err();
            assert!(matches!(err, SqlError::TooComplex(_)), "{op}: {err}");
            assert!(err.to_string().contains("limit is 500"), "{err}");
        }
        let unions = vec!["SELECT 1"; MAX_OPERATORS + 2].join(" UNION ALL ");
        assert!(check(&unions).is_err());
    }

    #[test]
    fn long_lists_of_values_are_not_operators() {
        let list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let sql = format!("SELECT * FROM t WHERE a IN ({})", list.join(", "));
        assert!(check(&sql).is_ok());
    }

    #[test]
    fn texts_that_take_exponential_time_to_parse_are_refused_in_linear_time() {
        // Each took seconds to minutes in DataFusion's parser (debug build); the first is the
        // `sql` fuzz target's, in fuzz/regressions/sql/.
        let shapes = [
            format!("SELECT c,{}", "a.tN.u.D[".repeat(10)),
            format!("SELECT c,{}", "a.b.c[x:y.z".repeat(10)),
            format!("SELECT {}", "x-not-b.".repeat(40)),
            format!("SELECT {}", "case\t-".repeat(40)),
            format!("SELECT {}x", "if(current_time(".repeat(40)),
        ];
        for sql in shapes {
            let started = std::time::Instant::now();
            let err = check_syntax(&sql, Syntax::Statements).unwrap_err();
            assert!(err.to_string().starts_with("SQL syntax error"), "{err}");
            assert!(
                started.elapsed().as_millis() < 500,
                "{sql}: {:?}",
                started.elapsed()
            );
        }
        assert!(check_syntax("SELECT a.b.c[1] FROM t WHERE x[2] > 1", Syntax::Statements).is_ok());
        assert!(check_syntax("jahr >= 2024 AND station = 'A1'", Syntax::Expression).is_ok());
        let err = check_syntax("jahr >= ) AND x", Syntax::Expression).unwrap_err();
        assert!(err.to_string().contains("Column: 9"), "{err}");
    }

    #[test]
    fn statements_other_than_queries_are_refused_as_writes_not_as_syntax() {
        for sql in [
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "COPY t TO '/tmp/x.csv' STORED AS CSV",
            "INSERT INTO t VALUES (1)",
            "SET datafusion.execution.batch_size = 1",
            "SELECT 1; DROP TABLE t",
        ] {
            let err = check_syntax(sql, Syntax::Statements).unwrap_err();
            assert!(matches!(err, SqlError::NotAllowed(_)), "{sql}: {err}");
        }
        for sql in [
            "(SELECT 1)",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "VALUES (1)",
        ] {
            assert!(check_syntax(sql, Syntax::Statements).is_ok(), "{sql}");
        }
        let err = check_syntax("SELEC 1", Syntax::Statements).unwrap_err();
        assert!(matches!(err, SqlError::Invalid(_)), "{err}");
    }

    #[test]
    fn long_texts_are_refused() {
        let sql = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert!(matches!(check(&sql), Err(SqlError::TooComplex(_))));
    }
}
