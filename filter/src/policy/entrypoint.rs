//! Entrypoints as OPA-Envoy's `path` setting accepts them: a rule (`data.envoy.authz.allow`
//! or `envoy/authz/allow`), or a package (`envoy/authz`), whose `allow` rule then decides.
//! Pure: works on regorus's parsed modules.

use std::collections::BTreeSet;

use regorus::unstable::{Expr, Module, Ref, Rule, RuleHead};

use super::PolicyError;

/// The rule path (`data.a.b.rule`) the filter evaluates for a configured entrypoint.
pub(crate) fn resolve(modules: &[Ref<Module>], entrypoint: &str) -> Result<String, PolicyError> {
    let wanted = normalize(entrypoint);
    let rules = rule_paths(modules);
    if rules.contains(&wanted) {
        return Ok(wanted);
    }
    if packages(modules).contains(&wanted) {
        let allow = format!("{wanted}.allow");
        if rules.contains(&allow) {
            return Ok(allow);
        }
        return Err(PolicyError::Compile {
            entrypoint: entrypoint.to_string(),
            message: format!(
                "{wanted} is a package without an `allow` rule to decide with; name the \
                 decision rule (e.g. {wanted}.decision)"
            ),
        });
    }
    let below = format!("{wanted}.");
    if rules.iter().any(|r| r.starts_with(&below)) {
        return Err(PolicyError::Compile {
            entrypoint: entrypoint.to_string(),
            message: format!(
                "{wanted} is a prefix of ref-head rules (`{}.a := ...`), which the filter's \
                 engine cannot evaluate as one decision; name one rule, or build the object in \
                 one rule (`{}.decision := {{...}}`)",
                wanted.rsplit('.').next().unwrap_or("p"),
                wanted.rsplit_once('.').map_or("data.pkg", |(pkg, _)| pkg)
            ),
        });
    }
    // Not a rule we know of: the compiler says what is wrong with it.
    Ok(wanted)
}

/// `envoy/authz/allow`, `/envoy/authz/allow` and `data.envoy.authz.allow` alike.
fn normalize(entrypoint: &str) -> String {
    let trimmed = entrypoint.trim().trim_matches('/');
    if trimmed.starts_with("data.") || trimmed == "data" {
        return trimmed.to_string();
    }
    if trimmed.contains('/') || !trimmed.contains('.') {
        return format!("data.{}", trimmed.replace('/', "."));
    }
    format!("data.{trimmed}")
}

/// Dotted paths of every package and of the packages above them (`data.a`, `data.a.b`).
fn packages(modules: &[Ref<Module>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for module in modules {
        let Some(package) = names(&module.package.refr) else {
            continue;
        };
        for n in 1..=package.len() {
            out.insert(format!("data.{}", package[..n].join(".")));
        }
    }
    out
}

/// Dotted paths of every rule whose head has only name segments (`data.t.p`, `data.t.p.a`).
fn rule_paths(modules: &[Ref<Module>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for module in modules {
        let Some(package) = names(&module.package.refr) else {
            continue;
        };
        for rule in &module.policy {
            let refr = match rule.as_ref() {
                Rule::Default { refr, .. } => refr,
                Rule::Spec { head, .. } => match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => refr,
                },
            };
            // A head with a computed part (`p[k]`) still names its prefix (`p`).
            let head = names_prefix(refr);
            if !head.is_empty() {
                out.insert(format!("data.{}.{}", package.join("."), head.join(".")));
            }
        }
    }
    out
}

/// Names of a reference made of names only (`a.b.c`).
fn names(expr: &Expr) -> Option<Vec<String>> {
    let mut out = names_prefix(expr);
    let complete = out.len() == depth(expr);
    if out.first().map(String::as_str) == Some("data") {
        out.remove(0);
    }
    complete.then_some(out)
}

/// The leading names of a reference (`p.a[x].b` → [p, a]).
fn names_prefix(expr: &Expr) -> Vec<String> {
    match expr {
        Expr::Var { value, .. } => value
            .as_string()
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
        Expr::RefDot { refr, field, .. } => {
            let mut out = names_prefix(refr);
            if out.len() == depth(refr) {
                if let Ok(name) = field.1.as_string() {
                    out.push(name.to_string());
                }
            }
            out
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut out = names_prefix(refr);
            if out.len() == depth(refr) {
                if let Expr::String { value, .. } = index.as_ref() {
                    if let Ok(name) = value.as_string() {
                        out.push(name.to_string());
                    }
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

fn depth(expr: &Expr) -> usize {
    match expr {
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => depth(refr) + 1,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_and_dotted_paths_name_the_same_rule() {
        assert_eq!(normalize("envoy/authz/allow"), "data.envoy.authz.allow");
        assert_eq!(normalize("/envoy/authz"), "data.envoy.authz");
        assert_eq!(
            normalize("data.envoy.authz.allow"),
            "data.envoy.authz.allow"
        );
        assert_eq!(normalize("envoy.authz.allow"), "data.envoy.authz.allow");
    }
}
