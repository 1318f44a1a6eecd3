//! Constructs regorus's RVM evaluates differently from OPA, refused before a program is
//! built, so that a policy either decides as OPA does or does not validate.
//!
//! Each refusal names the construct at `file:line:col` (regorus's `--> name:line:col`
//! format, which [`PolicyError::located`] reads) and says how to rewrite it. Found with
//! the generated differential test against OPA (`filter/tests/opa_generated.py`):
//!
//! - a `default` value that is not a constant, and `default` functions (the RVM keeps
//!   only constant defaults and ignores the rest);
//! - a complete rule or function defined more than once with values that may differ
//!   (OPA raises a conflict error when two definitions hold; the RVM answers undefined);
//! - a reference to a package or to a prefix of ref-head rules as a value (the RVM fills
//!   undefined rules in, OPA leaves them out) and lookups through ref-head rules;
//! - ref-head rules whose leaves are sets (the RVM merges them into one set);
//! - a number or a variable indexing an object of `data` with number-like keys (OPA
//!   reads `data.x[2]` as `data.x["2"]`, the RVM does not).
//!
//! Pure: works on regorus's parsed modules and the data document.

use regorus::unstable::{Expr, Literal, Module, Query, Ref, Rule, RuleBody, RuleHead};

use super::PolicyError;

mod ast;
mod loops;
mod refs;
mod table;
use ast::{always_defined, chain, constant, path_of, walk_expr, walk_rule};
use loops::{check_loop_value, iteration, may_give_key_two_values};
use refs::{check_ref, Scope};
use table::RuleTable;

/// One segment of a reference path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    /// A string key (`.a`, `["a"]`).
    Key(String),
    /// A number key (`[2]`).
    Num(String),
    /// Anything computed (`[x]`, `[input.a]`).
    Dyn,
}

/// Which engine a check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// The RVM: every check.
    Rvm,
    /// regorus's interpreter: only what it gets wrong too (ref-head rules as values,
    /// lookups through them, set leaves).
    Interpreter,
}

/// Refuses the first construct (in module order) `engine` would get wrong.
pub(crate) fn check(
    modules: &[Ref<Module>],
    data: &serde_json::Value,
    engine: Engine,
) -> Result<(), PolicyError> {
    let rules = RuleTable::of(modules);
    let rvm = engine == Engine::Rvm;
    for module in modules {
        let Some(package) = path_of(&module.package.refr) else {
            continue;
        };
        let scope = Scope::of(module, &package, &rules);
        for rule in &module.policy {
            check_set_leaf(rule)?;
            check_default_ref(rule)?;
            if let Rule::Spec { bodies, .. } = rule.as_ref() {
                for body in bodies {
                    check_with_values(&body.query, &scope)?;
                }
            }
            if rvm {
                check_rule(rule, &scope)?;
            }
            walk_rule(rule, &mut |expr| {
                if rvm {
                    check_object_comprehension(expr)?;
                }
                check_ref(expr, &scope, &rules, data, rvm)
            })?;
        }
    }
    if rvm {
        rules.check_conflicts()?;
    }
    Ok(())
}

/// A `default` value with a reference outside a comprehension (`default p := input.a`):
/// OPA refuses the module; regorus would fail at every evaluation.
fn check_default_ref(rule: &Rule) -> Result<(), PolicyError> {
    let Rule::Default { value, span, .. } = rule else {
        return Ok(());
    };
    if has_ref_outside_comprehension(value) {
        return Err(refuse(
            span,
            "a `default` value cannot contain a reference (OPA refuses it too)",
            "use a constant default, or compute the value in a rule body",
        ));
    }
    Ok(())
}

fn has_ref_outside_comprehension(expr: &Expr) -> bool {
    match expr {
        Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } | Expr::Call { .. } => true,
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().any(|i| has_ref_outside_comprehension(i))
        }
        Expr::Object { fields, .. } => fields
            .iter()
            .any(|(_, k, v)| has_ref_outside_comprehension(k) || has_ref_outside_comprehension(v)),
        Expr::UnaryExpr { expr, .. } => has_ref_outside_comprehension(expr),
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            has_ref_outside_comprehension(lhs) || has_ref_outside_comprehension(rhs)
        }
        Expr::Membership { .. } => true,
        _ => false,
    }
}

/// `with ... as v` where `v` calls a function or reads a rule (or `data`): regorus's
/// interpreter mis-evaluates those (it evaluates the rule under the replaced input).
fn check_with_values(query: &Query, scope: &Scope) -> Result<(), PolicyError> {
    for stmt in &query.stmts {
        for with in &stmt.with_mods {
            let mut bad = false;
            // The visitor never fails; it only records a hit.
            let _ = walk_expr(&with.r#as, &mut |e| {
                if let Some((root, _)) = chain(e) {
                    bad |= root == "data"
                        || scope.rule_names.contains(&root)
                        || scope.imports.contains_key(&root);
                }
                Ok(())
            });
            bad |= has_call(&with.r#as);
            if bad {
                return Err(refuse(
                    &with.span,
                    "a `with` value that calls a function or reads a rule or `data` is not run as \
                     OPA does by the filter's engines",
                    "bind the value to a local variable first, or spell it out as a constant",
                ));
            }
        }
        if let Literal::Every { query, .. } = &stmt.literal {
            check_with_values(query, scope)?;
        }
    }
    Ok(())
}

fn has_call(expr: &Expr) -> bool {
    match expr {
        Expr::Call { .. } => true,
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().any(|i| has_call(i)),
        Expr::Object { fields, .. } => fields.iter().any(|(_, k, v)| has_call(k) || has_call(v)),
        Expr::UnaryExpr { expr, .. } => has_call(expr),
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => has_call(lhs) || has_call(rhs),
        Expr::RefBrack { refr, index, .. } => has_call(refr) || has_call(index),
        Expr::RefDot { refr, .. } => has_call(refr),
        // Comprehensions may call functions too.
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => true,
        _ => false,
    }
}

/// Ref-head rules whose leaves are sets (`p.a contains x`): both engines merge the sets.
fn check_set_leaf(rule: &Rule) -> Result<(), PolicyError> {
    if let Rule::Spec {
        head: RuleHead::Set { refr, .. },
        span,
        ..
    } = rule
    {
        if path_of(refr).is_some_and(|p| p.len() > 1) {
            return Err(refuse(
                span,
                "a ref-head rule whose leaf is a set (`p.a contains x`) is not run as OPA does \
                 by the filter's engine (it merges the sets)",
                "name the set rule without a dot (`p_a contains x`)",
            ));
        }
    }
    Ok(())
}

fn refuse(span: &regorus::unstable::Span, what: &str, hint: &str) -> PolicyError {
    PolicyError::Unsupported {
        message: format!("{:#}", span.error(what)),
        hint: Some(hint.to_string()),
    }
}

fn check_rule(rule: &Rule, scope: &Scope) -> Result<(), PolicyError> {
    match rule {
        Rule::Default {
            span, args, value, ..
        } => {
            if !args.is_empty() {
                return Err(refuse(
                    span,
                    "a `default` function is not run by the filter's engine (it would ignore it)",
                    "handle the fallback inside the function, e.g. with `else`",
                ));
            }
            if constant(value).is_none() {
                return Err(refuse(
                    span,
                    "a `default` value that is not a constant is not run by the filter's engine \
                     (it would ignore it)",
                    "use a constant default, or compute the value in a helper rule",
                ));
            }
        }
        Rule::Spec { head, bodies, .. } => {
            check_else_chain(head, bodies)?;
            check_partial_object(head, bodies)?;
            check_loop_value(head, bodies, scope)?;
        }
    }
    Ok(())
}

/// An `else` chain runs as OPA's only when no branch but the last can have an undefined
/// value (OPA then tries the next branch; the RVM answers undefined) and no branch
/// iterates (`some x in xs`, `xs[i]`: the RVM does not reach the `else` when the loop
/// finds nothing).
fn check_else_chain(head: &RuleHead, bodies: &[RuleBody]) -> Result<(), PolicyError> {
    if !bodies.iter().any(|b| b.is_else) {
        return Ok(());
    }
    let head_value = match head {
        RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => assign.as_ref(),
        RuleHead::Set { .. } => None,
    };
    let last = bodies.len().saturating_sub(1);
    for (i, body) in bodies.iter().enumerate() {
        let value = if i == 0 {
            head_value
        } else {
            body.assign.as_ref()
        };
        if let Some(value) = value.filter(|_| i < last) {
            if !always_defined(&value.value) {
                return Err(refuse(
                    &value.span,
                    "an `else` chain whose branch value is computed is not run as OPA does by \
                     the filter's engine (when the value is undefined OPA tries the next branch)",
                    "give every branch but the last a constant value, and compute values in \
                     helper rules",
                ));
            }
        }
        if let Some(span) = iteration(&body.query) {
            return Err(refuse(
                span,
                "an `else` chain whose condition iterates (`some x in xs`, `xs[i]`) is not run \
                 as OPA does by the filter's engine",
                "move the iteration into a helper rule (`found if some x in xs; ...`) and test \
                 that in the chain",
            ));
        }
    }
    Ok(())
}

/// A partial object rule (`p[k] := v`) whose one definition may give a key two values
/// (OPA: conflict error; the RVM keeps one value).
fn check_partial_object(head: &RuleHead, bodies: &[RuleBody]) -> Result<(), PolicyError> {
    let RuleHead::Compr {
        refr,
        assign: Some(assign),
        span,
    } = head
    else {
        return Ok(());
    };
    let Some(index) = computed_index(refr) else {
        return Ok(());
    };
    if bodies
        .iter()
        .all(|body| !may_give_key_two_values(index, &assign.value, &body.query))
    {
        return Ok(());
    }
    Err(refuse(
        span,
        "a partial object rule (`p[k] := v`) that may give one key two values is not run as OPA \
         does by the filter's engine (OPA stops with a conflict error)",
        "iterate once with the key as the loop key (`p[k] := f(v) if some k, v in m`), or use \
         a constant value",
    ))
}

/// The first computed index of a rule head (`k` in `p[k]` or `p[k].c`), if any.
fn computed_index(refr: &Expr) -> Option<&Expr> {
    match refr {
        Expr::RefDot { refr, .. } => computed_index(refr),
        Expr::RefBrack { refr, index, .. } => computed_index(refr).or(match index.as_ref() {
            Expr::String { .. } | Expr::RawString { .. } | Expr::Number { .. } => None,
            other => Some(other),
        }),
        _ => None,
    }
}

/// `{k: v | ...}` where one key may get two values (OPA: conflict error).
fn check_object_comprehension(expr: &Expr) -> Result<(), PolicyError> {
    match expr {
        Expr::ObjectCompr {
            key,
            value,
            query,
            span,
            ..
        } if may_give_key_two_values(key, value, query) => Err(refuse(
            span,
            "an object comprehension that may give one key two values is not run as OPA does \
             by the filter's engine (OPA stops with a conflict error)",
            "iterate once with the key as the loop key (`{k: f(v) | some k, v in m}`)",
        )),
        _ => Ok(()),
    }
}
