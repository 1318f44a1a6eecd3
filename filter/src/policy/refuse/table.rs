//! The rule table of a policy: every rule path (package + head) and the definitions of
//! complete rules and functions, for the conflict and ref-head checks. Pure.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Module, Ref, Rule, RuleHead};

use super::ast::{constant, path_of};
use super::{refuse, Seg};
use crate::policy::PolicyError;

/// Every rule path (package + head), with the definitions of complete rules and functions.
pub(super) struct RuleTable<'a> {
    /// Rule paths → the length of their package part.
    pub(super) paths: BTreeMap<Vec<Seg>, usize>,
    pub(super) packages: BTreeSet<Vec<Seg>>,
    /// Complete rules and functions by path: each definition's span, value and arguments.
    pub(super) definitions: BTreeMap<Vec<Seg>, Vec<Definition<'a>>>,
}

pub(super) struct Definition<'a> {
    pub(super) span: &'a regorus::unstable::Span,
    /// The value when it is a constant (`None`: computed).
    pub(super) value: Option<String>,
    /// Function arguments, when all are constants.
    pub(super) args: Option<Vec<String>>,
    pub(super) is_function: bool,
}

impl<'a> RuleTable<'a> {
    pub(super) fn of(modules: &'a [Ref<Module>]) -> Self {
        let mut table = Self {
            paths: BTreeMap::new(),
            packages: BTreeSet::new(),
            definitions: BTreeMap::new(),
        };
        for module in modules {
            let Some(package) = path_of(&module.package.refr) else {
                continue;
            };
            for rule in &module.policy {
                table.add(&package, rule);
            }
            table.packages.insert(package);
        }
        table
    }

    pub(super) fn add(&mut self, package: &[Seg], rule: &'a Rule) {
        let (head_ref, span) = match rule {
            Rule::Default { refr, span, .. } => (refr, span),
            Rule::Spec { head, span, .. } => match head {
                RuleHead::Compr { refr, .. }
                | RuleHead::Set { refr, .. }
                | RuleHead::Func { refr, .. } => (refr, span),
            },
        };
        let Some(head) = path_of(head_ref) else {
            return;
        };
        let mut path = package.to_vec();
        // A partial object (`p[k] := v`) is the rule `p`, as a partial set is.
        let plain_object = head.len() == 2 && head.get(1) == Some(&Seg::Dyn);
        let rule_path: Vec<Seg> = match plain_object {
            true => head.iter().take(1).cloned().collect(),
            false => head.clone(),
        };
        path.extend(rule_path);
        self.paths.insert(path.clone(), package.len());
        path.extend(plain_object.then_some(Seg::Dyn));
        let Rule::Spec { head, bodies, .. } = rule else {
            return;
        };
        let (assign, args) = match head {
            // Complete rules, and partial objects (`p[k] := v`: two definitions may give
            // one key two values, where OPA stops with a conflict).
            RuleHead::Compr { assign, .. } => (assign, None),
            RuleHead::Func { assign, args, .. } => (assign, Some(args)),
            _ => return,
        };
        let head_value = assign
            .as_ref()
            .map(|a| constant(&a.value))
            .unwrap_or(Some("true".into()));
        let args = args.map(|args| args.iter().map(|a| constant(a)).collect::<Option<Vec<_>>>());
        let defs = self.definitions.entry(path).or_default();
        // Bodies not introduced by `else` are definitions of their own (`p { a } { b }`).
        let independent = bodies.iter().filter(|b| !b.is_else).count().max(1);
        // An `else` value other than the head's makes the rule's value computed.
        let else_values: Option<Vec<String>> = bodies
            .iter()
            .filter(|b| b.is_else)
            .map(|b| {
                b.assign
                    .as_ref()
                    .map_or(Some("true".into()), |a| constant(&a.value))
            })
            .collect();
        let value = match (head_value, else_values) {
            (Some(v), Some(others)) if others.iter().all(|o| *o == v) => Some(v),
            _ => None,
        };
        for _ in 0..independent {
            defs.push(Definition {
                span,
                value: value.clone(),
                args: args.clone().flatten(),
                is_function: args.is_some(),
            });
        }
    }

    /// Several definitions of one complete rule or function may give different values:
    /// OPA then fails with a conflict; the RVM answers undefined. Refused unless all give
    /// the same constant, or (functions) their constant arguments never overlap.
    pub(super) fn check_conflicts(&self) -> Result<(), PolicyError> {
        for (path, defs) in &self.definitions {
            if defs.len() < 2 {
                continue;
            }
            let same_constant = defs
                .first()
                .and_then(|d| d.value.as_ref())
                .is_some_and(|first| defs.iter().all(|d| d.value.as_ref() == Some(first)));
            let distinct_args = {
                let args: Option<BTreeSet<&Vec<String>>> =
                    defs.iter().map(|d| d.args.as_ref()).collect();
                args.is_some_and(|set| set.len() == defs.len())
            };
            if same_constant || distinct_args {
                continue;
            }
            let second = defs.get(1).map_or(defs[0].span, |d| d.span);
            let kind = if defs[0].is_function {
                "function"
            } else {
                "rule"
            };
            return Err(refuse(
                second,
                &format!(
                    "{kind} `{}` has several definitions that may give different values (OPA \
                     stops with a conflict error when two of them hold; the filter's engine \
                     would not)",
                    display(path)
                ),
                "give it one definition with an `else` chain, or the same constant value in \
                 every definition",
            ));
        }
        Ok(())
    }

    /// True when `path` is a package or a prefix of one.
    pub(super) fn is_package_prefix(&self, path: &[Seg]) -> bool {
        self.packages.iter().any(|p| p.starts_with(path))
    }

    /// True when some rule lives at `path` or below it.
    pub(super) fn has_rule_below(&self, path: &[Seg]) -> bool {
        self.paths
            .keys()
            .any(|p| p.len() > path.len() && matches_prefix(p, path))
    }

    /// The rule whose path is a prefix of `path`, if any.
    pub(super) fn rule_at_or_above(&self, path: &[Seg]) -> Option<(&Vec<Seg>, usize)> {
        self.paths
            .iter()
            .find(|(p, _)| p.len() <= path.len() && matches_prefix(path, p))
            .map(|(p, package)| (p, *package))
    }
}

/// `prefix` matches the start of `path` (a dynamic segment on either side matches any).
pub(super) fn matches_prefix(path: &[Seg], prefix: &[Seg]) -> bool {
    prefix.len() <= path.len()
        && prefix
            .iter()
            .zip(path)
            .all(|(a, b)| a == b || *a == Seg::Dyn || *b == Seg::Dyn)
}

pub(super) fn display(path: &[Seg]) -> String {
    let mut out = String::from("data");
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Num(n) => out.push_str(&format!("[{n}]")),
            Seg::Dyn => out.push_str("[_]"),
        }
    }
    out
}
