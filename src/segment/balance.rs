//! Long chains of `AND` or `OR` rebuilt as balanced trees before planning.
//!
//! `a = 1 OR a = 2 OR ... OR a = 5000` parses as a chain 5000 levels deep, and DataFusion's
//! planner and optimiser do work per level that grows with the depth below it: planning took
//! time quadratic in the number of terms (half a minute for 5000 in a debug build). `AND` and
//! `OR` are associative (in SQL's three-valued logic too), so the same terms as a balanced
//! tree mean the same and are about log2(N) levels deep: planning becomes proportional to the
//! query's size. Short chains are left as written.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Value, VisitMut, VisitorMut};

/// Chains shorter than this are left alone.
const MIN_TERMS: usize = 32;

pub fn balance(statement: &mut Statement) {
    if let Statement::Statement(statement) = statement {
        let _ = statement.visit(&mut Balance);
    }
}

struct Balance;

impl VisitorMut for Balance {
    type Break = ();

    // Before the children: a chain is rebuilt once, from its top, and its parts visited after.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::BinaryOp { op, .. } = expr else {
            return ControlFlow::Continue(());
        };
        let op = op.clone();
        if !matches!(op, BinaryOperator::And | BinaryOperator::Or) || chain_length(expr, &op) < MIN_TERMS {
            return ControlFlow::Continue(());
        }
        let chain = std::mem::replace(expr, Expr::value(Value::Null));
        *expr = balanced(flatten(chain, &op), &op);
        ControlFlow::Continue(())
    }
}

/// Terms in the chain of `op` down the left side (how the parser builds `a OR b OR c`).
fn chain_length(mut expr: &Expr, op: &BinaryOperator) -> usize {
    let mut terms = 1;
    while let Expr::BinaryOp { left, op: o, .. } = expr
        && o == op
    {
        terms += 1;
        expr = left;
    }
    terms
}

/// The terms of a chain of `op`, left to right, without recursion.
fn flatten(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut terms = Vec::new();
    let mut pending = vec![expr];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::BinaryOp { left, op: o, right } if o == *op => {
                pending.push(*right);
                pending.push(*left);
            }
            term => terms.push(term),
        }
    }
    terms
}

/// Pairs neighbours until one tree is left: order kept, depth about log2(terms).
fn balanced(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    while terms.len() > 1 {
        let mut pairs = Vec::with_capacity(terms.len().div_ceil(2));
        let mut rest = terms.into_iter();
        while let Some(left) = rest.next() {
            pairs.push(match rest.next() {
                Some(right) => Expr::BinaryOp {
                    left: Box::new(left),
                    op: op.clone(),
                    right: Box::new(right),
                },
                None => left,
            });
        }
        terms = pairs;
    }
    terms.pop().unwrap_or_else(|| Expr::value(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn depth(expr: &Expr) -> usize {
        match expr {
            Expr::BinaryOp { left, right, .. } => 1 + depth(left).max(depth(right)),
            Expr::Nested(inner) => depth(inner),
            _ => 1,
        }
    }

    /// The terms under `OR`s, left to right.
    fn or_terms(expr: &Expr, out: &mut Vec<String>) {
        match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => {
                or_terms(left, out);
                or_terms(right, out);
            }
            Expr::Nested(inner) => or_terms(inner, out),
            term => out.push(term.to_string()),
        }
    }

    fn where_clause(statement: &Statement) -> &Expr {
        let Statement::Statement(s) = statement else { panic!() };
        let datafusion::sql::sqlparser::ast::Statement::Query(q) = s.as_ref() else {
            panic!()
        };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = q.body.as_ref() else {
            panic!()
        };
        select.selection.as_ref().unwrap()
    }

    #[test]
    fn long_chains_become_balanced_with_their_terms_in_order() {
        let terms: Vec<String> = (0..1000).map(|i| format!("a = {i}")).collect();
        let sql = format!("SELECT * FROM t WHERE b > 0 AND ({})", terms.join(" OR "));
        let mut statement = DFParser::parse_sql(&sql).unwrap().pop_front().unwrap();
        balance(&mut statement);
        // Same terms, same order; the chain of 1000 is now about 11 levels deep.
        let Expr::BinaryOp { right, .. } = where_clause(&statement) else {
            panic!()
        };
        let mut found = Vec::new();
        or_terms(right, &mut found);
        assert_eq!(found, terms);
        assert!(
            depth(where_clause(&statement)) <= 13,
            "{}",
            depth(where_clause(&statement))
        );

        let mut short = DFParser::parse_sql("SELECT * FROM t WHERE a = 1 OR a = 2 OR a = 3")
            .unwrap()
            .pop_front()
            .unwrap();
        let before = short.to_string();
        balance(&mut short);
        assert_eq!(short.to_string(), before);
    }
}
