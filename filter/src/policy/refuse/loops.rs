//! Values that come out of a loop: a complete rule, function or object key that may
//! get two values from one query (OPA raises a conflict error; the RVM keeps the first).

use std::collections::BTreeSet;

use regorus::unstable::{Expr, Literal, Query, RuleBody, RuleHead};

use super::ast::{chain, constant, walk_expr};
use super::refs::Scope;
use super::{computed_index, refuse, PolicyError};

/// A complete rule or function whose computed value comes out of a loop may have several
/// values (OPA: conflict error; the RVM keeps the first).
/// A value that reads only `input`, `data`, rules, imports and the function's arguments
/// is the same on every iteration, so it is kept.
pub(super) fn check_loop_value(
    head: &RuleHead,
    bodies: &[RuleBody],
    scope: &Scope,
) -> Result<(), PolicyError> {
    let (assign, span, args) = match head {
        RuleHead::Compr {
            refr,
            assign: Some(assign),
            span,
        } if computed_index(refr).is_none() => (assign, span, &[][..]),
        RuleHead::Func {
            assign: Some(assign),
            span,
            args,
            ..
        } => (assign, span, args.as_slice()),
        _ => return Ok(()),
    };
    let mut fixed: BTreeSet<String> = scope.rule_names.clone();
    fixed.extend(scope.imports.keys().cloned());
    fixed.extend(["input".to_string(), "data".to_string()]);
    for arg in args {
        if let Some((root, _)) = chain(arg) {
            fixed.insert(root);
        }
    }
    for body in bodies {
        let value = body.assign.as_ref().unwrap_or(assign);
        if reads_local(&value.value, &fixed) && iteration(&body.query).is_some() {
            return Err(refuse(
                span,
                "a rule whose computed value comes out of a loop (`p := x if some x in xs`) may \
                 have several values; OPA then stops with a conflict error, the filter's engine \
                 would keep one",
                "collect the values (`p := [x | some x in xs]`) or pick one explicitly",
            ));
        }
    }
    Ok(())
}

/// One key (`key`) may get two values (`value`) from `query`: unless the value is a
/// constant, or the query iterates exactly once and the key is what it iterates over
/// (`some k, v in m` with key `k`, or `some x in xs` with key `x`), so that the value
/// follows from the key.
pub(super) fn may_give_key_two_values(key: &Expr, value: &Expr, query: &Query) -> bool {
    if constant(value).is_some() {
        return false;
    }
    let key_name = match key {
        Expr::Var { value, .. } => value.as_string().ok().map(|s| s.to_string()),
        _ => None,
    };
    let loops: Vec<&Literal> = query
        .stmts
        .iter()
        .map(|s| &s.literal)
        .filter(|l| match l {
            Literal::SomeVars { .. } | Literal::SomeIn { .. } => true,
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => has_var_index(expr),
            Literal::Every { .. } => false,
        })
        .collect();
    match loops.as_slice() {
        [Literal::SomeIn {
            key: iter_key,
            value: iter_value,
            ..
        }] => {
            let iterated = iter_key.as_ref().unwrap_or(iter_value);
            !matches!(iterated.as_ref(), Expr::Var { value, .. }
                if key_name.is_some() && value.as_string().ok().map(|s| s.to_string()) == key_name)
        }
        _ => true,
    }
}

/// The expression reads a variable other than `fixed` ones (a local, maybe a loop's).
fn reads_local(expr: &Expr, fixed: &BTreeSet<String>) -> bool {
    let mut hit = false;
    // The visitor never fails; it only records a hit.
    let _ = walk_expr(expr, &mut |e| {
        if let Some((root, _)) = chain(e) {
            hit |= !fixed.contains(&root);
        }
        Ok(())
    });
    hit
}

fn has_var_index(expr: &Expr) -> bool {
    let mut hit = false;
    // The visitor never fails; it only records a hit.
    let _ = walk_expr(expr, &mut |e| {
        hit |= var_index(e);
        Ok(())
    });
    hit
}

/// Where a query iterates (`some`, or a variable index), if it does.
pub(super) fn iteration(query: &Query) -> Option<&regorus::unstable::Span> {
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { span, .. } | Literal::SomeIn { span, .. } => return Some(span),
            Literal::Expr { expr, span } | Literal::NotExpr { expr, span } => {
                if has_var_index(expr) {
                    return Some(span);
                }
            }
            Literal::Every { .. } => {}
        }
    }
    None
}

/// A reference indexed by a variable somewhere (`xs[i]`, `m[k].c`).
fn var_index(expr: &Expr) -> bool {
    match expr {
        Expr::RefDot { refr, .. } => var_index(refr),
        Expr::RefBrack { refr, index, .. } => {
            matches!(index.as_ref(), Expr::Var { .. }) || var_index(refr)
        }
        _ => false,
    }
}
