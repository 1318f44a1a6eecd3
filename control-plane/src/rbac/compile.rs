//! Rego (regorus's parsed modules) to [`Cond`]s, one per `allow` rule body, for one
//! destination workload. Conservative by construction: every expression form is matched
//! explicitly, and anything else stops with [`NotNative`] naming the construct and its
//! `file:line`. What is understood: `default allow := false`; `allow` rules whose value
//! is `true`; constant helper rules and aliases of the input fields below; in bodies,
//! `==`/`!=` between those fields and constants, `in` over constant collections,
//! `startswith`/`endswith`/`contains` with a constant, a field alone (presence),
//! `some x in <constant data>`, local `:=` of constants or fields, and `not` of those.
//! Fields: `attributes.source.principal` (and `source_principal`),
//! `attributes.destination.principal` (a constant here: the workload's own ID),
//! `attributes.request.http.method`, `.path` and `.headers[<constant name>]`. No I/O.

use std::collections::HashMap;

use regorus::unstable::{
    AssignOp, BoolOp, Expr, Literal, Module, Query, Ref, Rule, RuleHead, Span,
};
use serde_json::Value as Json;

use super::ir::{loc, no, Cond, Term, Test};
use super::ops::{compare, defined, is_true, membership};
use super::{Loc, NotNative};

/// Most alternatives one rule body may expand to through `some x in ...`.
const MAX_BRANCHES: usize = 256;

/// One `allow` rule body, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CompiledRule {
    /// Where the rule (body) is.
    pub at: Loc,
    /// When it allows.
    pub cond: Cond,
}

/// Compiler state for one policy and one destination.
pub(super) struct Compiler<'a> {
    /// Rules of the entrypoint's package by name.
    pub(super) rules: HashMap<String, Vec<&'a Ref<Rule>>>,
    /// Package paths of all modules (to keep `data.` lookups off rules).
    pub(super) packages: Vec<Vec<String>>,
    pub(super) package: Vec<String>,
    pub(super) data: &'a Json,
    pub(super) destination: &'a str,
    pub(super) entry: String,
    /// Helper rules being resolved (`a := b` / `b := a` is a cycle, not a stack overflow).
    pub(super) resolving: std::cell::RefCell<Vec<String>>,
}

/// The text of a `Var`, or of a string index.
pub(super) fn name_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Var { value, .. } | Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|s| s.to_string())
        }
        _ => None,
    }
}

/// A dotted/bracketed reference with constant keys: `a.b["c"]` → [a, b, c].
pub(super) fn ref_path(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Var { .. } => Some(vec![name_of(expr)?]),
        Expr::RefDot { refr, field, .. } => {
            let mut p = ref_path(refr)?;
            p.push(field.1.as_string().ok()?.to_string());
            Some(p)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut p = ref_path(refr)?;
            match index.as_ref() {
                Expr::String { .. } | Expr::RawString { .. } => p.push(name_of(index)?),
                _ => return None,
            }
            Some(p)
        }
        _ => None,
    }
}

pub(super) fn regorus_to_json(value: &regorus::Value) -> Option<Json> {
    serde_json::from_str(&value.to_json_str().ok()?).ok()
}

/// Splits `data.envoy.authz.allow` or `envoy/authz/allow` into package path and rule.
fn split_entrypoint(entrypoint: &str) -> Option<(Vec<String>, String)> {
    let path = entrypoint.strip_prefix("data.").unwrap_or(entrypoint);
    let mut parts: Vec<String> = path
        .split(['.', '/'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let rule = parts.pop()?;
    (!parts.is_empty()).then_some((parts, rule))
}

/// Compiles the entrypoint rule of `modules` for `destination`.
pub(super) fn compile(
    modules: &[Ref<Module>],
    data: &Json,
    entrypoint: &str,
    destination: &str,
) -> Result<Vec<CompiledRule>, NotNative> {
    let (package, entry) = split_entrypoint(entrypoint).ok_or_else(|| NotNative {
        what: format!("entrypoint `{entrypoint}` is not a rule path"),
        at: None,
    })?;
    let mut c = Compiler {
        rules: HashMap::new(),
        packages: Vec::new(),
        package,
        data,
        destination,
        entry,
        resolving: std::cell::RefCell::new(Vec::new()),
    };
    for module in modules {
        let Some(mut path) = ref_path(&module.package.refr) else {
            return Err(no(
                &module.package.span,
                "a package path with computed parts",
            ));
        };
        if path.first().map(String::as_str) == Some("data") {
            path.remove(0);
        }
        c.packages.push(path.clone());
        if path != c.package {
            // A parent package can define the decision with a ref head (`authz.allow
            // if ...` in `package envoy`), a child package can shadow it.
            let parent = c.package.starts_with(&path);
            let child = path.starts_with(&c.package) && path.get(c.package.len()) == Some(&c.entry);
            if parent || child {
                return Err(no(
                    &module.package.span,
                    format!(
                        "package `{}` next to the decision's package",
                        path.join(".")
                    ),
                ));
            }
            continue;
        }
        for import in &module.imports {
            let p = ref_path(&import.refr).unwrap_or_default();
            let ok = matches!(p.first().map(String::as_str), Some("rego" | "future"));
            if !ok {
                return Err(no(&import.span, "an import of input or data"));
            }
        }
        for rule in &module.policy {
            let name = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => ref_path(refr),
                },
                Rule::Default { refr, .. } => ref_path(refr),
            };
            let Some(name) = name else {
                return Err(no(rule.span(), "a rule head with a computed key"));
            };
            if name.len() > 1 {
                return Err(no(rule.span(), "a ref-head rule (`a.b := ...`)"));
            }
            let key = name.into_iter().next().unwrap_or_default();
            c.rules.entry(key).or_default().push(rule);
        }
    }
    c.data_overlap()?;
    c.entry_rules()
}

impl<'a> Compiler<'a> {
    /// Data that defines a rule path of the decision's package (or a non-object on the
    /// way to it) makes Rego fail with a conflict, where RBAC would decide: refused.
    fn data_overlap(&self) -> Result<(), NotNative> {
        let mut at = self.data;
        for (i, key) in self.package.iter().enumerate() {
            match at {
                Json::Object(map) => match map.get(key) {
                    Some(next) => at = next,
                    None => return Ok(()),
                },
                _ if i == 0 => return Ok(()),
                _ => break,
            }
        }
        let clash = match at {
            Json::Object(map) => {
                let mut names: Vec<&String> = self.rules.keys().collect();
                names.sort();
                names
                    .into_iter()
                    .find(|n| map.contains_key(n.as_str()))
                    .cloned()
            }
            _ => Some(String::new()),
        };
        match clash {
            None => Ok(()),
            Some(name) => {
                let mut path = self.package.clone();
                path.extend((!name.is_empty()).then_some(name));
                Err(NotNative {
                    what: format!("data also defines rule path {}", path.join(".")),
                    at: None,
                })
            }
        }
    }

    fn entry_rules(&self) -> Result<Vec<CompiledRule>, NotNative> {
        let Some(rules) = self.rules.get(&self.entry) else {
            // No rule at all: always undefined, always denied.
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for rule in rules {
            match rule.as_ref() {
                Rule::Default {
                    value, span, args, ..
                } => {
                    let is_false = matches!(value.as_ref(), Expr::Bool { value, .. }
                        if value.as_bool().ok() == Some(&false));
                    if !args.is_empty() || !is_false {
                        return Err(no(span, "a `default` decision other than `false`"));
                    }
                }
                Rule::Spec { span, head, bodies } => {
                    let RuleHead::Compr { assign, .. } = head else {
                        return Err(no(span, "a decision rule that is a set or a function"));
                    };
                    let head_true = assign.as_ref().is_none_or(|a| is_true(&a.value));
                    if !head_true {
                        return Err(no(
                            span,
                            "a decision value other than `true` (e.g. the object form)",
                        ));
                    }
                    if bodies.is_empty() {
                        out.push(CompiledRule {
                            at: loc(span),
                            cond: Cond::True,
                        });
                    }
                    for body in bodies {
                        if body.is_else {
                            return Err(no(&body.span, "an `else` branch"));
                        }
                        if body.assign.as_ref().is_some_and(|a| !is_true(&a.value)) {
                            return Err(no(&body.span, "a decision value other than `true`"));
                        }
                        let cond = self.query(&body.query)?;
                        out.push(CompiledRule {
                            at: loc(span),
                            cond,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// A rule body: the disjunction of its `some ... in` expansions.
    fn query(&self, query: &Query) -> Result<Cond, NotNative> {
        let mut branches = vec![(HashMap::<String, Term>::new(), Vec::<Cond>::new())];
        for stmt in &query.stmts {
            if let Some(w) = stmt.with_mods.first() {
                return Err(no(&w.span, "`with`"));
            }
            let mut next = Vec::new();
            for (env, conds) in branches {
                match &stmt.literal {
                    Literal::SomeIn {
                        span,
                        key,
                        value,
                        collection,
                    } => {
                        let items =
                            self.some_in_items(&env, span, key.as_ref(), value, collection)?;
                        for bindings in items {
                            let mut env = env.clone();
                            env.extend(bindings);
                            next.push((env, conds.clone()));
                        }
                    }
                    Literal::Expr { expr, .. } => {
                        let mut env = env;
                        let mut conds = conds;
                        let cond = self.literal(&mut env, expr)?;
                        conds.push(cond);
                        next.push((env, conds));
                    }
                    Literal::NotExpr { expr, .. } => {
                        let mut scratch = env.clone();
                        let cond = self.literal(&mut scratch, expr)?;
                        if scratch.len() != env.len() {
                            return Err(no(expr.span(), "an assignment under `not`"));
                        }
                        let mut conds = conds;
                        conds.push(cond.negate());
                        next.push((env, conds));
                    }
                    Literal::SomeVars { span, .. } => {
                        return Err(no(span, "`some x` without `in`"));
                    }
                    Literal::Every { span, .. } => return Err(no(span, "`every`")),
                }
            }
            if next.len() > MAX_BRANCHES {
                return Err(no(&stmt.span, "a `some ... in` over too many values"));
            }
            branches = next;
        }
        Ok(Cond::any(
            branches
                .into_iter()
                .map(|(_, conds)| Cond::all(conds))
                .collect(),
        ))
    }

    /// The bindings of each `some [k,] v in collection` iteration (constant collections).
    fn some_in_items(
        &self,
        env: &HashMap<String, Term>,
        span: &Span,
        key: Option<&Ref<Expr>>,
        value: &Ref<Expr>,
        collection: &Ref<Expr>,
    ) -> Result<Vec<Vec<(String, Term)>>, NotNative> {
        let fresh = |e: &Expr| {
            name_of(e).filter(|n| {
                matches!(e, Expr::Var { .. })
                    && !env.contains_key(n)
                    && !self.rules.contains_key(n)
                    && n != "input"
                    && n != "data"
            })
        };
        let Some(vname) = fresh(value) else {
            return Err(no(span, "`some ... in` with a pattern or a bound variable"));
        };
        let kname = match key {
            Some(k) => Some(fresh(k).ok_or_else(|| no(span, "`some k, v in` with a pattern key"))?),
            None => None,
        };
        let pairs: Vec<(Json, Json)> = match self.term(env, collection)? {
            Term::Const(Json::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Json::from(i), v))
                .collect(),
            Term::Const(Json::Object(map)) => {
                map.into_iter().map(|(k, v)| (Json::String(k), v)).collect()
            }
            // A set has no keys: in Rego `some k, v in s` binds k to the element too.
            Term::Set(_) if kname.is_some() => return Err(no(span, "`some k, v in` over a set")),
            Term::Set(items) => items.into_iter().map(|v| (Json::Null, v)).collect(),
            Term::Const(_) | Term::Undefined => Vec::new(),
            Term::Attr(_) => return Err(no(span, "`some ... in` over a request field")),
        };
        if pairs.len() > MAX_BRANCHES {
            return Err(no(span, "a `some ... in` over too many values"));
        }
        Ok(pairs
            .into_iter()
            .map(|(k, v)| {
                let mut b = vec![(vname.clone(), Term::Const(v))];
                if let Some(kn) = &kname {
                    if kn != "_" {
                        b.push((kn.clone(), Term::Const(k)));
                    }
                }
                if vname == "_" {
                    b.retain(|(n, _)| n != "_");
                }
                b
            })
            .collect())
    }

    /// One body expression as a condition (assignments bind into `env`).
    fn literal(&self, env: &mut HashMap<String, Term>, expr: &Expr) -> Result<Cond, NotNative> {
        match expr {
            Expr::AssignExpr {
                span, op, lhs, rhs, ..
            } => {
                // `input = "x"` would bind a local named `input` (allow-all); Rego unifies
                // with the document instead.
                let root = name_of(lhs).filter(|_| matches!(lhs.as_ref(), Expr::Var { .. }));
                if let Some(n) = root.filter(|n| n == "input" || n == "data") {
                    return Err(no(span, format!("`=` or `:=` whose target is `{n}`")));
                }
                let target = name_of(lhs).filter(|n| {
                    matches!(lhs.as_ref(), Expr::Var { .. })
                        && !env.contains_key(n)
                        && !self.rules.contains_key(n)
                        && n != "_"
                });
                match (op, target) {
                    (_, Some(var)) => {
                        let term = self.term(env, rhs)?;
                        let cond = defined(&term);
                        env.insert(var, term);
                        Ok(cond)
                    }
                    (AssignOp::Eq, None) => {
                        let (l, r) = (self.term(env, lhs)?, self.term(env, rhs)?);
                        compare(span, &l, &r, true)
                    }
                    (AssignOp::ColEq, None) => Err(no(span, "`:=` to a bound name")),
                }
            }
            Expr::BoolExpr {
                span, op, lhs, rhs, ..
            } => {
                let (l, r) = (self.term(env, lhs)?, self.term(env, rhs)?);
                match op {
                    BoolOp::Eq => compare(span, &l, &r, true),
                    BoolOp::Ne => compare(span, &l, &r, false),
                    _ => Err(no(span, "an ordering comparison (`<`, `>=`, ...)")),
                }
            }
            Expr::Membership {
                span,
                key,
                value,
                collection,
                ..
            } => {
                if key.is_some() {
                    return Err(no(span, "`k, v in` as an expression"));
                }
                let v = self.term(env, value)?;
                let coll = self.term(env, collection)?;
                membership(span, &v, &coll)
            }
            Expr::Call {
                span, fcn, params, ..
            } => self.call(env, span, fcn, params),
            Expr::Bool { value, .. } => Ok(if value.as_bool().ok() == Some(&false) {
                Cond::False
            } else {
                Cond::True
            }),
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                Ok(match self.term(env, expr)? {
                    Term::Undefined | Term::Const(Json::Bool(false)) => Cond::False,
                    Term::Const(_) | Term::Set(_) => Cond::True,
                    Term::Attr(a) => Cond::Match(a, Test::Present),
                })
            }
            other => Err(no(
                other.span(),
                "an expression form the RBAC compiler does not read",
            )),
        }
    }

    /// What a term stands for.
    pub(super) fn term(&self, env: &HashMap<String, Term>, expr: &Expr) -> Result<Term, NotNative> {
        match expr {
            Expr::String { value, .. }
            | Expr::RawString { value, .. }
            | Expr::Number { value, .. }
            | Expr::Bool { value, .. }
            | Expr::Null { value, .. } => regorus_to_json(value)
                .map(Term::Const)
                .ok_or_else(|| no(expr.span(), "a constant that is not JSON")),
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                let mut out = Vec::new();
                for item in items {
                    match self.term(env, item)? {
                        Term::Const(v) => out.push(v),
                        _ => return Err(no(item.span(), "a collection with non-constant items")),
                    }
                }
                if matches!(expr, Expr::Set { .. }) {
                    out.sort_by_key(|v| v.to_string());
                    out.dedup();
                    return Ok(Term::Set(out));
                }
                Ok(Term::Const(Json::Array(out)))
            }
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                self.reference(env, expr)
            }
            other => Err(no(
                other.span(),
                "an expression form the RBAC compiler does not read",
            )),
        }
    }
}
