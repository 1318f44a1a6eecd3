//! Where a decision rule is defined: `data.envoy.authz.allow` → every `file:line` of a
//! module in package `envoy.authz` whose line starts a definition of `allow` (including
//! `default allow`). Pure; a lexical scan, enough to point a reader at the rule.

/// `file:line` of each definition of `rule` (a `data.` path) in `modules` (name, source).
pub fn locations<'a>(
    modules: impl IntoIterator<Item = (&'a str, &'a str)>,
    rule: &str,
) -> Vec<String> {
    let Some(path) = rule.strip_prefix("data.") else {
        return Vec::new();
    };
    let Some((package, name)) = path.rsplit_once('.') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (file, source) in modules {
        let mut in_package = false;
        for (i, line) in source.lines().enumerate() {
            let t = line.trim_start();
            if let Some(p) = t.strip_prefix("package ") {
                in_package = p.trim() == package;
                continue;
            }
            if in_package && line.len() == t.len() && defines(t, name) {
                out.push(format!("{file}:{}", i + 1));
            }
        }
    }
    out
}

fn defines(line: &str, name: &str) -> bool {
    let rest = line
        .strip_prefix("default ")
        .map(str::trim_start)
        .unwrap_or(line);
    let Some(after) = rest.strip_prefix(name) else {
        return false;
    };
    matches!(
        after.chars().next(),
        None | Some(' ' | '\t' | ':' | '=' | '{' | '[' | '(')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n\tallowed_x\n}\n\nallowed_x := true\n";

    #[test]
    fn definitions_of_the_rule_in_its_package_are_found_and_prefixes_are_not() {
        let got = locations([("policies/authz.rego", SRC)], "data.envoy.authz.allow");
        assert_eq!(got, vec!["policies/authz.rego:5", "policies/authz.rego:7"]);
    }

    #[test]
    fn another_package_or_a_bad_rule_path_gives_nothing() {
        assert!(locations([("a.rego", SRC)], "data.other.allow").is_empty());
        assert!(locations([("a.rego", SRC)], "allow").is_empty());
    }
}
