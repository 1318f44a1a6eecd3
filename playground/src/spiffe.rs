//! The caller's SPIFFE ID, checked as `warden policy eval --source` checks it (SPIFFE-ID.md
//! §2 plus the host-name rules Warden holds trust domains to), so the playground refuses
//! what the CLI refuses.
//!
//! TODO: use the shared SPIFFE vocabulary crate (issue #16) once it lands; this is a
//! compact copy of `warden::identity::SpiffeId`'s rules, compared with the CLI by the
//! browser test and by the unit tests below.

const SCHEME: &str = "spiffe://";

/// Why `id` is not a SPIFFE ID the CLI accepts, or `None` when it is one.
pub(crate) fn problem(id: &str) -> Option<String> {
    if id.len() > 2048 {
        return Some("ID is longer than 2048 bytes".into());
    }
    let Some(rest) = id.strip_prefix(SCHEME) else {
        return Some("scheme must be `spiffe://`".into());
    };
    let (td, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    trust_domain_problem(td).or_else(|| path_problem(path))
}

fn trust_domain_problem(td: &str) -> Option<String> {
    if td.is_empty() {
        return Some("trust domain is missing".into());
    }
    if td.len() > 253 {
        return Some("trust domain is longer than 253 bytes".into());
    }
    if let Some(c) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-'))
    {
        return Some(format!(
            "trust domain has a character that is not allowed: {c:?} (only a-z, 0-9, `.` and `-`)"
        ));
    }
    for label in td.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "trust domain label {label:?} is not a host-name label"
            ));
        }
    }
    if td
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("trust domain ends in an all-numeric label".into());
    }
    None
}

fn path_problem(path: &str) -> Option<String> {
    let path = path.strip_prefix('/')?;
    for segment in path.split('/') {
        match segment {
            "" => return Some("path has an empty segment (`//` or a trailing `/`)".into()),
            "." | ".." => return Some("path has a `.` or `..` segment".into()),
            _ => {}
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Some(format!(
                "path segment has a character that is not allowed: {c:?}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn ids_the_cli_accepts_pass() {
        for id in [
            "spiffe://example.org",
            "spiffe://example.org/ns/demo/sa/backend",
            "spiffe://a-b.c/x_y.z-1",
        ] {
            assert_eq!(problem(id), None, "{id}");
        }
    }

    #[test]
    fn ids_the_cli_refuses_are_refused() {
        for id in [
            "",
            "http://example.org/a",
            "spiffe://",
            "spiffe://Example.org/a",
            "spiffe://exa_mple.org/a",
            "spiffe://example.org/",
            "spiffe://example.org//a",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a%20b",
            "spiffe://example.org:443/a",
            "spiffe://example.org/a?b",
            "spiffe://-a.org/x",
            "spiffe://a..org/x",
            "spiffe://example.123/x",
        ] {
            assert!(problem(id).is_some(), "{id:?} accepted");
        }
        assert!(problem(&format!("spiffe://a.org/{}", "x".repeat(2050))).is_some());
    }
}
