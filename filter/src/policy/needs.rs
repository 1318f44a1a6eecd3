//! Which parts of the request a policy can look at, so the filter reads (host calls) and
//! builds (input values) no more than that. Found by scanning the Rego sources for field
//! names, comments excluded; any doubt means "everything". No I/O.

/// Which parts of the request the policy can look at, so the filter reads no more than
/// that from the host. Found by scanning the sources for the field names; any doubt
/// (a bare `input`, `input[...]`) means "read everything". Method and path are always read
/// (they go to the decision log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputNeeds {
    /// The policy may read request headers.
    pub headers: bool,
    /// The policy may read `host`.
    pub host: bool,
    /// The policy may read `scheme`.
    pub scheme: bool,
    /// The policy may read `parsed_path`.
    pub parsed_path: bool,
    /// The policy may read `parsed_query`.
    pub parsed_query: bool,
}

impl InputNeeds {
    /// Everything.
    pub const ALL: Self = Self {
        headers: true,
        host: true,
        scheme: true,
        parsed_path: true,
        parsed_query: true,
    };

    /// Scans Rego sources.
    pub fn scan<'a>(sources: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needs = Self {
            headers: false,
            host: false,
            scheme: false,
            parsed_path: false,
            parsed_query: false,
        };
        for source in sources {
            let source = &strip_comments(source);
            if uses_input_dynamically(source) {
                return Self::ALL;
            }
            needs.headers |= source.contains("headers");
            needs.host |= source.contains("host");
            needs.scheme |= source.contains("scheme");
            needs.parsed_path |= source.contains("parsed_path");
            needs.parsed_query |= source.contains("parsed_query");
        }
        needs
    }
}

/// Removes `#` comments (outside string literals), so a comment that mentions `headers`
/// does not make every request read all headers.
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars();
    let (mut in_string, mut in_raw, mut escaped) = (false, false, false);
    while let Some(c) = chars.next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if in_raw {
            in_raw = c != '`';
        } else if c == '"' {
            in_string = true;
        } else if c == '`' {
            in_raw = true;
        } else if c == '#' {
            // Skip to the end of the line, keep the newline.
            for rest in chars.by_ref() {
                if rest == '\n' {
                    out.push('\n');
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn uses_input_dynamically(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut start = 0;
    while let Some(found) = source[start..].find("input") {
        let at = start + found;
        let end = at + "input".len();
        let before_ok = at == 0 || !is_ident_byte(bytes[at - 1]);
        let after = bytes.get(end).copied();
        if before_ok && !after.is_some_and(is_ident_byte) && after != Some(b'.') {
            return true;
        }
        start = end;
    }
    false
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_scan_reads_headers_only_when_mentioned() {
        let plain = InputNeeds::scan(["allow if input.source_principal == \"a\""]);
        assert!(!plain.headers && !plain.host && !plain.scheme);
        assert!(!plain.parsed_path && !plain.parsed_query);
        assert!(InputNeeds::scan(["allow if input.parsed_path[0] == \"a\""]).parsed_path);
        let with_headers =
            InputNeeds::scan(["allow if input.attributes.request.http.headers[\"x\"] == \"1\""]);
        assert!(with_headers.headers);
        assert_eq!(InputNeeds::scan(["x := input"]), InputNeeds::ALL);
        assert_eq!(InputNeeds::scan(["x := input[k]"]), InputNeeds::ALL);
        assert!(!InputNeeds::scan(["my_input := 1"]).headers);
        let commented =
            "# reads input.attributes.request.http.headers\nallow if input.a == \"#x\"\n";
        assert!(!InputNeeds::scan([commented]).headers);
        let in_string =
            "allow if input.a == \"x#\"\nallow if input.attributes.request.http.headers.b\n";
        assert!(InputNeeds::scan([in_string]).headers);
    }
}
