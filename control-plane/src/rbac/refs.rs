//! How the compiler resolves references: locals, `input.…` (to request attributes, or
//! the destination's own ID as a constant), `data.…` (constant data only, never rules of
//! another package), and the package's helper rules (constants or input aliases). No I/O.

use std::collections::HashMap;

use regorus::unstable::{Expr, Literal, Rule, RuleHead, Span};
use serde_json::Value as Json;

use super::compile::{name_of, Compiler};
use super::ir::{no, Attr, Term};
use super::ops::{index, is_true};
use super::NotNative;

/// Header names the filter does not show the policy as Envoy's RBAC filter sees them:
/// the identity headers the filter removes from the input, and `host` (`:authority` in
/// Envoy's header map). Pseudo-headers are refused before this.
fn header_is_comparable(name: &str) -> bool {
    !(name == "host" || name == "x-spiffe-id" || name == "x-forwarded-client-cert")
}

/// An RFC 9110 token without uppercase letters (a header name as the input has it).
fn is_lowercase_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

impl Compiler<'_> {
    /// A reference: a local, `input.…`, `data.…` or a rule of the package, then keys.
    pub(super) fn reference(
        &self,
        env: &HashMap<String, Term>,
        expr: &Expr,
    ) -> Result<Term, NotNative> {
        let (root, keys) = self.chain(env, expr)?;
        if let Some(term) = env.get(&root) {
            return index(expr.span(), term.clone(), &keys);
        }
        match root.as_str() {
            "input" => self.input(expr.span(), &keys),
            "data" => self.data_ref(expr.span(), &keys),
            name => {
                let term = self.helper(expr.span(), name)?;
                index(expr.span(), term, &keys)
            }
        }
    }

    /// The root name and constant keys of a reference (indexes may be bound locals).
    fn chain(
        &self,
        env: &HashMap<String, Term>,
        expr: &Expr,
    ) -> Result<(String, Vec<Json>), NotNative> {
        match expr {
            Expr::Var { .. } => Ok((name_of(expr).unwrap_or_default(), Vec::new())),
            Expr::RefDot { refr, field, .. } => {
                let (root, mut keys) = self.chain(env, refr)?;
                let key = field
                    .1
                    .as_string()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                keys.push(Json::String(key));
                Ok((root, keys))
            }
            Expr::RefBrack {
                refr, index, span, ..
            } => {
                let (root, mut keys) = self.chain(env, refr)?;
                match self.term(env, index)? {
                    Term::Const(k @ (Json::String(_) | Json::Number(_))) => keys.push(k),
                    _ => {
                        return Err(no(
                            span,
                            "a lookup with a computed or iterated key (`x[_]`)",
                        ))
                    }
                }
                Ok((root, keys))
            }
            other => Err(no(other.span(), "a reference on a computed value")),
        }
    }

    fn input(&self, span: &Span, keys: &[Json]) -> Result<Term, NotNative> {
        let path: Vec<&str> = keys.iter().map(|k| k.as_str().unwrap_or("\u{0}")).collect();
        let attr = match path.as_slice() {
            ["attributes", "source", "principal"] | ["source_principal"] => Attr::Principal,
            ["attributes", "destination", "principal"] => {
                return Ok(Term::Const(Json::String(self.destination.to_string())))
            }
            ["attributes", "request", "http", "method"] => Attr::Method,
            ["attributes", "request", "http", "path"] => Attr::Path,
            ["attributes", "request", "http", "headers", name] => {
                if name.starts_with(':') {
                    // The filter shows pseudo-headers as ext_authz does; RBAC could
                    // match them, but their values differ in detail (`:path`).
                    return Err(no(span, format!("the `{name}` pseudo-header")));
                }
                if !is_lowercase_token(name) {
                    // Input header names are lowercase RFC 9110 tokens: never there (and
                    // Envoy would refuse a header matcher with such a name).
                    return Ok(Term::Undefined);
                }
                if !header_is_comparable(name) {
                    return Err(no(span, format!("the `{name}` header")));
                }
                Attr::Header((*name).to_string())
            }
            _ => return Err(no(span, format!("input.{}", path.join(".")))),
        };
        Ok(Term::Attr(attr))
    }

    fn data_ref(&self, span: &Span, keys: &[Json]) -> Result<Term, NotNative> {
        let path: Vec<String> = keys
            .iter()
            .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_string))
            .collect();
        if path.starts_with(&self.package) && path.len() > self.package.len() {
            let name = &path[self.package.len()];
            let term = self.helper(span, name)?;
            return index(span, term, &keys[self.package.len() + 1..]);
        }
        let overlaps = self.packages.iter().any(|p| {
            let n = p.len().min(path.len());
            p[..n] == path[..n]
        });
        if overlaps {
            return Err(no(
                span,
                format!("data.{} (rules of another package)", path.join(".")),
            ));
        }
        index(span, Term::Const(self.data.clone()), keys)
    }

    /// A helper rule of the package: a constant, or an alias of an input field.
    pub(super) fn helper(&self, span: &Span, name: &str) -> Result<Term, NotNative> {
        if name == self.entry {
            return Err(no(span, "a reference to the decision rule itself"));
        }
        let Some(rules) = self.rules.get(name) else {
            return Err(no(
                span,
                format!("`{name}` (not a rule, local, input or data)"),
            ));
        };
        let [rule] = rules.as_slice() else {
            return Err(no(span, format!("`{name}` defined more than once")));
        };
        let Rule::Spec {
            head:
                RuleHead::Compr {
                    assign: Some(assign),
                    ..
                },
            bodies,
            span: rspan,
        } = rule.as_ref()
        else {
            return Err(no(
                rule.span(),
                format!("`{name}` is not a plain `name := value` rule"),
            ));
        };
        let plain = bodies.is_empty()
            || bodies.len() == 1
                && bodies[0].assign.is_none()
                && !bodies[0].is_else
                && bodies[0].query.stmts.iter().all(|s| {
                    s.with_mods.is_empty()
                        && matches!(&s.literal, Literal::Expr { expr, .. } if is_true(expr))
                });
        if !plain {
            return Err(no(rspan, format!("`{name}` has a body")));
        }
        // Constants and input aliases (of other helpers, at most once each on the way).
        if self.resolving.borrow().iter().any(|n| n == name) {
            return Err(no(rspan, format!("recursive rule `{name}`")));
        }
        self.resolving.borrow_mut().push(name.to_string());
        let term = self.term(&HashMap::new(), &assign.value);
        self.resolving.borrow_mut().pop();
        term
    }
}
