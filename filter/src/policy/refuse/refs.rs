//! References: what the names of a module denote (its package's rules, its `data`
//! imports) and the checks on reference chains (package and ref-head prefixes read as
//! values, lookups through ref-head rules, number indexes into `data`).

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Module};

use super::ast::chain;
use super::table::{display, RuleTable};
use super::{refuse, PolicyError, Seg};

/// What the names of a module refer to: its package's rules and its `data` imports.
pub(super) struct Scope {
    package: Vec<Seg>,
    /// Names of rules in the package (first segment of their head).
    pub(super) rule_names: BTreeSet<String>,
    /// Import aliases → data paths.
    pub(super) imports: BTreeMap<String, Vec<Seg>>,
}

impl Scope {
    pub(super) fn of(module: &Module, package: &[Seg], rules: &RuleTable<'_>) -> Self {
        let rule_names = rules
            .paths
            .keys()
            .filter(|p| p.len() > package.len() && p.starts_with(package))
            .filter_map(|p| match p.get(package.len()) {
                Some(Seg::Key(k)) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let mut imports = BTreeMap::new();
        for import in &module.imports {
            let Some((root, segs)) = chain(&import.refr) else {
                continue;
            };
            if root != "data" || segs.is_empty() {
                continue;
            }
            let alias = match &import.r#as {
                Some(span) => span.text().to_string(),
                None => match segs.last() {
                    Some(Seg::Key(k)) => k.clone(),
                    _ => continue,
                },
            };
            imports.insert(alias, segs);
        }
        Self {
            package: package.to_vec(),
            rule_names,
            imports,
        }
    }

    /// The data path a reference chain denotes, if it reads `data` (or a local rule).
    fn resolve(&self, root: &str, segs: Vec<Seg>) -> Option<Vec<Seg>> {
        if root == "data" {
            return Some(segs);
        }
        if let Some(base) = self.imports.get(root) {
            let mut path = base.clone();
            path.extend(segs);
            return Some(path);
        }
        if self.rule_names.contains(root) {
            let mut path = self.package.clone();
            path.push(Seg::Key(root.to_string()));
            path.extend(segs);
            return Some(path);
        }
        None
    }
}

/// Checks one maximal reference chain.
pub(super) fn check_ref(
    expr: &Expr,
    scope: &Scope,
    rules: &RuleTable<'_>,
    data: &serde_json::Value,
    rvm: bool,
) -> Result<(), PolicyError> {
    let span = match expr {
        Expr::RefDot { span, .. } | Expr::RefBrack { span, .. } | Expr::Var { span, .. } => span,
        _ => return Ok(()),
    };
    let Some((root, segs)) = chain(expr) else {
        return Ok(());
    };
    let Some(path) = scope.resolve(&root, segs) else {
        return Ok(());
    };
    if path.is_empty() {
        return Ok(());
    }
    match rules.rule_at_or_above(&path) {
        Some((rule, package)) => {
            // Into a rule's value: fine for a rule named by its full constant path and for
            // a partial object or set (`p[k]`); not through ref-head rules with computed
            // parts (`p[k].c`, `p.a[k]`).
            let head = rule.get(package..).unwrap_or_default();
            let plain = head.len() == 1 || (head.len() == 2 && head.get(1) == Some(&Seg::Dyn));
            if rule.contains(&Seg::Dyn) && !plain {
                return Err(refuse(
                    span,
                    &format!(
                        "a lookup into the ref-head rules {} is not run as OPA does by the \
                         filter's engine",
                        display(rule)
                    ),
                    "read the whole rule (`p`) and index its value in a local variable, or use a \
                     partial object rule (`p[k] := v`)",
                ));
            }
            Ok(())
        }
        // A package (or a prefix of packages) as a value: the RVM keeps undefined rules in.
        None if rules.has_rule_below(&path) && rules.is_package_prefix(&path) => match rvm {
            true => Err(refuse(
                span,
                &format!(
                    "{} names a package as a value; the filter's engine does not build it \
                     as OPA does (it keeps undefined rules in)",
                    display(&path)
                ),
                "refer to the rules one by one (`data.pkg.rule`)",
            )),
            false => Ok(()),
        },
        // A prefix of ref-head rules as a value: neither engine builds it as OPA does.
        None if rules.has_rule_below(&path) => Err(refuse(
            span,
            &format!(
                "{} names a prefix of ref-head rules as a value; the filter's engine does \
                 not build it as OPA does",
                display(&path)
            ),
            "refer to the rules one by one (`p.a.b`), or build the object in one rule",
        )),
        None if rvm => check_data_index(span, &path, data),
        None => Ok(()),
    }
}

/// `data.x[2]` or `data.x[v]` into an object with number-like keys: OPA turns the number
/// into a string key when reading `data`, the RVM does not.
fn check_data_index(
    span: &regorus::unstable::Span,
    path: &[Seg],
    data: &serde_json::Value,
) -> Result<(), PolicyError> {
    let mut node = data;
    for seg in path {
        match seg {
            Seg::Key(k) => match node.get(k) {
                Some(next) => node = next,
                None => return Ok(()),
            },
            Seg::Num(_) | Seg::Dyn => {
                if has_number_like_key(node) {
                    return Err(refuse(
                        span,
                        &format!(
                            "{} indexes data whose object keys look like numbers; OPA reads a \
                             number index there as a string key, the filter's engine does not",
                            display(path)
                        ),
                        "index with a string (`data.x[\"2\"]`, `format_int(n, 10)`)",
                    ));
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

fn has_number_like_key(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| {
            serde_json::from_str::<serde_json::Number>(k).is_ok() || has_number_like_key(v)
        }),
        serde_json::Value::Array(items) => items.iter().any(has_number_like_key),
        _ => false,
    }
}
