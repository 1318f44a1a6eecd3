//! The builtin calls the compiler understands: `startswith`, `endswith`, `contains`
//! with a constant, and `regex.match` with a constant pattern in the subset both
//! regex engines read alike (`ops::portable_regex`). No I/O.

use std::collections::HashMap;

use regorus::unstable::{Expr, Ref, Span};
use serde_json::Value as Json;

use super::compile::{ref_path, Compiler};
use super::ir::{no, Attr, Cond, Term, Test};
use super::ops::{attr_test, bool_cond};
use super::NotNative;

impl Compiler<'_> {
    pub(super) fn call(
        &self,
        env: &HashMap<String, Term>,
        span: &Span,
        fcn: &Expr,
        params: &[Ref<Expr>],
    ) -> Result<Cond, NotNative> {
        let name = ref_path(fcn).map(|p| p.join(".")).unwrap_or_default();
        if self.rules.contains_key(&name) {
            return Err(no(span, format!("a call to the package's own `{name}`")));
        }
        if name == "regex.match" {
            return self.regex_match(env, span, params);
        }
        let make: fn(String) -> Test = match name.as_str() {
            "startswith" => Test::Prefix,
            "endswith" => Test::Suffix,
            "contains" => Test::Contains,
            _ => return Err(no(span, format!("a call to `{name}`"))),
        };
        let [subject, needle] = params else {
            return Err(no(
                span,
                format!("`{name}` with {} arguments", params.len()),
            ));
        };
        let (s, n) = (self.term(env, subject)?, self.term(env, needle)?);
        match (s, n) {
            (Term::Undefined, _) | (_, Term::Undefined) => Ok(Cond::False),
            (Term::Set(_), _) | (_, Term::Set(_)) => Err(no(span, format!("`{name}` on a set"))),
            // A type error is undefined (OPA-Envoy's non-strict builtin errors).
            (Term::Const(Json::String(a)), Term::Const(Json::String(b))) => {
                Ok(bool_cond(make(b).matches(&a)))
            }
            (Term::Const(_), Term::Const(_)) => Ok(Cond::False),
            (Term::Attr(a), Term::Const(Json::String(b))) => attr_test(span, a, make(b)),
            (Term::Attr(_), Term::Const(_)) => Ok(Cond::False),
            (_, Term::Attr(_)) => Err(no(
                span,
                format!("`{name}` with a request field as its second argument"),
            )),
        }
    }

    /// `regex.match(<constant pattern>, <request field>)`.
    fn regex_match(
        &self,
        env: &HashMap<String, Term>,
        span: &Span,
        params: &[Ref<Expr>],
    ) -> Result<Cond, NotNative> {
        let [pattern, subject] = params else {
            return Err(no(span, "`regex.match` with other than 2 arguments"));
        };
        match (self.term(env, pattern)?, self.term(env, subject)?) {
            (Term::Undefined, _) | (_, Term::Undefined) => Ok(Cond::False),
            (Term::Const(Json::String(p)), Term::Attr(a)) if a != Attr::Principal => {
                if !super::ops::small_regex(&p) {
                    let shown: String = p.chars().take(40).collect();
                    return Err(no(
                        span,
                        format!("the regex {shown:?}... ({} bytes, {} `|`): too large to be sure Envoy's RE2 accepts it", p.len(), p.matches('|').count()),
                    ));
                }
                if !super::ops::portable_regex(&p, a == Attr::Method) {
                    return Err(no(
                        span,
                        format!("the regex {p:?} (outside the subset RE2 and regorus read alike)"),
                    ));
                }
                attr_test(span, a, Test::Regex(p))
            }
            _ => Err(no(
                span,
                "`regex.match` other than a constant pattern on the method, path or a header",
            )),
        }
    }
}
