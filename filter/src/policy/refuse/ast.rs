//! Reading regorus's parsed Rego for the refusal checks: constants, reference chains and
//! paths, and visitors over every reference in a rule, query or expression. Pure.

use regorus::unstable::{Expr, Literal, Query, Rule, RuleHead};

use super::Seg;
use crate::policy::PolicyError;

/// Constants and comprehensions (a comprehension is never undefined), and collections of
/// them.
pub(super) fn always_defined(expr: &Expr) -> bool {
    match expr {
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => true,
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().all(|i| always_defined(i))
        }
        Expr::Object { fields, .. } => fields
            .iter()
            .all(|(_, k, v)| constant(k).is_some() && always_defined(v)),
        other => constant(other).is_some(),
    }
}

/// The constant text of an expression (scalars and collections of constants), if it is one.
pub(super) fn constant(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { value, .. }
        | Expr::RawString { value, .. }
        | Expr::Number { value, .. }
        | Expr::Bool { value, .. }
        | Expr::Null { value, .. } => value.to_json_str().ok(),
        Expr::Array { items, .. } => {
            let parts: Option<Vec<String>> = items.iter().map(|i| constant(i)).collect();
            Some(format!("[{}]", parts?.join(",")))
        }
        Expr::Set { items, .. } => {
            let mut parts: Vec<String> =
                items.iter().map(|i| constant(i)).collect::<Option<_>>()?;
            parts.sort();
            Some(format!("set({})", parts.join(",")))
        }
        Expr::Object { fields, .. } => {
            let mut parts: Vec<String> = fields
                .iter()
                .map(|(_, k, v)| Some(format!("{}:{}", constant(k)?, constant(v)?)))
                .collect::<Option<_>>()?;
            parts.sort();
            Some(format!("{{{}}}", parts.join(",")))
        }
        Expr::UnaryExpr { expr, .. } => constant(expr).map(|c| format!("-{c}")),
        _ => None,
    }
}

/// A reference chain: its root variable and the segments after it.
pub(super) fn chain(expr: &Expr) -> Option<(String, Vec<Seg>)> {
    match expr {
        Expr::Var { value, .. } => Some((value.as_string().ok()?.to_string(), Vec::new())),
        Expr::RefDot { refr, field, .. } => {
            let (root, mut segs) = chain(refr)?;
            segs.push(Seg::Key(field.1.as_string().ok()?.to_string()));
            Some((root, segs))
        }
        Expr::RefBrack { refr, index, .. } => {
            let (root, mut segs) = chain(refr)?;
            segs.push(match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    Seg::Key(value.as_string().ok()?.to_string())
                }
                Expr::Number { value, .. } => Seg::Num(value.to_json_str().ok()?),
                _ => Seg::Dyn,
            });
            Some((root, segs))
        }
        _ => None,
    }
}

/// A package or rule-head reference as a path (`t.sub` → [t, sub]).
pub(super) fn path_of(expr: &Expr) -> Option<Vec<Seg>> {
    let (root, segs) = chain(expr)?;
    let mut path = vec![Seg::Key(root)];
    path.extend(segs);
    if path.first() == Some(&Seg::Key("data".into())) {
        path.remove(0);
    }
    Some(path)
}

/// Visits every maximal reference chain (and bare variable) in a rule.
pub(super) fn walk_rule(
    rule: &Rule,
    visit: &mut dyn FnMut(&Expr) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    match rule {
        Rule::Default { value, .. } => walk_expr(value, visit),
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { refr, assign, .. } => {
                    walk_indexes(refr, visit)?;
                    if let Some(a) = assign {
                        walk_expr(&a.value, visit)?;
                    }
                }
                RuleHead::Set { refr, key, .. } => {
                    walk_indexes(refr, visit)?;
                    if let Some(k) = key {
                        walk_expr(k, visit)?;
                    }
                }
                RuleHead::Func { assign, .. } => {
                    if let Some(a) = assign {
                        walk_expr(&a.value, visit)?;
                    }
                }
            }
            for body in bodies {
                if let Some(a) = &body.assign {
                    walk_expr(&a.value, visit)?;
                }
                walk_query(&body.query, visit)?;
            }
            Ok(())
        }
    }
}

/// The index expressions of a rule head reference (`p[input.a].b`).
fn walk_indexes(
    expr: &Expr,
    visit: &mut dyn FnMut(&Expr) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    match expr {
        Expr::RefDot { refr, .. } => walk_indexes(refr, visit),
        Expr::RefBrack { refr, index, .. } => {
            walk_indexes(refr, visit)?;
            walk_expr(index, visit)
        }
        _ => Ok(()),
    }
}

fn walk_query(
    query: &Query,
    visit: &mut dyn FnMut(&Expr) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    walk_expr(k, visit)?;
                }
                walk_expr(value, visit)?;
                walk_expr(collection, visit)?;
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => walk_expr(expr, visit)?,
            Literal::Every { domain, query, .. } => {
                walk_expr(domain, visit)?;
                walk_query(query, visit)?;
            }
        }
        for with in &stmt.with_mods {
            walk_expr(&with.r#as, visit)?;
        }
    }
    Ok(())
}

pub(super) fn walk_expr(
    expr: &Expr,
    visit: &mut dyn FnMut(&Expr) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    match expr {
        Expr::Var { .. } => visit(expr),
        Expr::RefDot { .. } | Expr::RefBrack { .. } => {
            visit(expr)?;
            // The chain itself is checked as a whole; its computed indexes are not.
            walk_chain_indexes(expr, visit)
        }
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. } => Ok(()),
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().try_for_each(|i| walk_expr(i, visit))
        }
        Expr::Object { fields, .. } => fields.iter().try_for_each(|(_, k, v)| {
            walk_expr(k, visit)?;
            walk_expr(v, visit)
        }),
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            walk_expr(term, visit)?;
            walk_query(query, visit)
        }
        Expr::ObjectCompr {
            key, value, query, ..
        } => {
            visit(expr)?;
            walk_expr(key, visit)?;
            walk_expr(value, visit)?;
            walk_query(query, visit)
        }
        Expr::Call { fcn, params, .. } => {
            // The function name is a reference too (`data.lib.f(x)`, `f(x)`).
            if chain(fcn).is_none() {
                walk_expr(fcn, visit)?;
            }
            params.iter().try_for_each(|p| walk_expr(p, visit))
        }
        Expr::UnaryExpr { expr, .. } => walk_expr(expr, visit),
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            walk_expr(lhs, visit)?;
            walk_expr(rhs, visit)
        }
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => {
            if let Some(k) = key {
                walk_expr(k, visit)?;
            }
            walk_expr(value, visit)?;
            walk_expr(collection, visit)
        }
    }
}

fn walk_chain_indexes(
    expr: &Expr,
    visit: &mut dyn FnMut(&Expr) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    match expr {
        Expr::RefDot { refr, .. } => walk_chain_indexes(refr, visit),
        Expr::RefBrack { refr, index, .. } => {
            walk_chain_indexes(refr, visit)?;
            walk_expr(index, visit)
        }
        Expr::Var { .. } => Ok(()),
        other => walk_expr(other, visit),
    }
}
