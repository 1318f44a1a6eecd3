//! YAML output that reads the same in YAML 1.1 (the parser behind `kubectl` and the API
//! server) as in YAML 1.2. A general emitter leaves `on`, `yes`, `n`, `12:30` plain,
//! which YAML 1.1 reads as booleans and a base-60 number, turning an annotation or an
//! env value into the wrong type. Here a string is plain only when it starts with a
//! letter, holds only `[A-Za-z0-9_./-]` and is none of YAML 1.1's boolean and null
//! words; every other string is double-quoted (JSON escaping, valid YAML). Block style,
//! sequences at their key's indentation, as `kubectl` writes.

use serde_yaml::Value;

/// Words YAML 1.1 resolves to booleans or null.
const RESERVED: [&str; 26] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
];

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("YAML tags (`!{0}`) are not supported in Kubernetes manifests")]
pub(super) struct TagError(String);

/// One document, ending with a newline.
pub(super) fn document(v: &Value) -> Result<String, TagError> {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(m, 0, &mut out)?,
        Value::Sequence(s) if !s.is_empty() => sequence(s, 0, &mut out)?,
        other => {
            out.push_str(&scalar(other)?);
            out.push('\n');
        }
    }
    Ok(out)
}

fn mapping(m: &serde_yaml::Mapping, indent: usize, out: &mut String) -> Result<(), TagError> {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&pad);
        out.push_str(&scalar(k)?);
        out.push(':');
        match v {
            Value::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(inner, indent + 2, out)?;
            }
            Value::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                sequence(items, indent, out)?;
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn sequence(items: &[Value], indent: usize, out: &mut String) -> Result<(), TagError> {
    let pad = " ".repeat(indent);
    for item in items {
        let nested = match item {
            Value::Mapping(m) if !m.is_empty() => {
                let mut s = String::new();
                mapping(m, indent + 2, &mut s)?;
                Some(s)
            }
            Value::Sequence(s) if !s.is_empty() => {
                let mut o = String::new();
                sequence(s, indent + 2, &mut o)?;
                Some(o)
            }
            _ => None,
        };
        match nested {
            // The first line of the nested block starts at indent + 2: put the dash there.
            Some(s) => {
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&s[indent + 2..]);
            }
            None => {
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&scalar(item)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn scalar(v: &Value) -> Result<String, TagError> {
    Ok(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Mapping(_) => "{}".into(),
        Value::Sequence(_) => "[]".into(),
        Value::Tagged(t) => return Err(TagError(t.tag.to_string())),
    })
}

fn string(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !RESERVED.contains(&s);
    if plain {
        s.to_owned()
    } else {
        serde_json::Value::from(s).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Value {
        let v: Value = serde_yaml::from_str(text).unwrap();
        let out = document(&v).unwrap();
        let back: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(back, v, "{out}");
        v
    }

    #[test]
    fn yaml_1_1_booleans_base_60_and_numbers_in_strings_are_quoted() {
        let v = round_trip(
            "a: { x: \"on\", y: \"yes\", z: \"n\", t: \"12:30\", o: \"0755\", e: \"1e3\", k: \"True\", u: \"~\", m: \"64Mi\" }",
        );
        let out = document(&v).unwrap();
        for word in [
            "on", "yes", "n", "12:30", "0755", "1e3", "True", "~", "64Mi",
        ] {
            assert!(
                out.contains(&format!("\"{word}\"")),
                "{word} unquoted in {out}"
            );
        }
    }

    #[test]
    fn nesting_empty_collections_and_odd_strings_round_trip() {
        round_trip("a:\n  - b: 1\n    c: [1, [2, 3], {}]\n  - []\n  - {}\n  - - x\n    - y\nd: \"multi\\nline: # not a comment\"\ne: null\nf: 1.5\ng: -3\n\"@type\": x\nh: \"\"\ni: \"$(POD_IP)\"\nj: \"\\u0001\\t\"\n");
        round_trip("- 1\n- a\n");
        round_trip("plain");
    }

    #[test]
    fn tags_are_refused() {
        let v: Value = serde_yaml::from_str("a: !custom 1").unwrap();
        assert!(document(&v).is_err());
    }
}
