//! Which parts of the request a policy can look at, so the filter reads (host calls) and
//! builds (input values) no more than that, and whether its decisions may be cached.
//!
//! Derived from the policy's tokens as regorus's own lexer reads them (comments and
//! string contents are never mistaken for references): every reference that starts at
//! `input` is followed through its literal keys (`.name`, `["name"]`) down the input
//! document's known shape. It must end *inside* one field group (`headers`, `host`,
//! `parsed_path`, ...): that group is needed. Anything else means "build everything and
//! do not cache": a computed key above a group (`input.attributes.request.http[k]`), an
//! object above a group used as a value (`json.marshal(input.attributes.request.http)`,
//! `some x in input.attributes.request.http`, `walk(input)`, a function argument, an
//! `import input… as h` alias of such an object), `with input…`, or sources the lexer
//! rejects. References to fields Warden never provides (`input.parsed_body`) need
//! nothing: they are absent in the full input too. The control plane runs this once per
//! configuration load and ships the result in the plugin configuration; no I/O here.
//!
//! Vocabulary for `config` (shipped needs), `input` (what to build), `cache` (what may
//! be cached) and `policy` (which scans sources); it imports none of them.

use regorus::unstable::{Lexer, Source, Token, TokenKind};
use serde::{Deserialize, Serialize};

/// The request fields a policy can read. Method, path, both principals and
/// `source_principal` are always built (they are cheap and go to the decision log).
/// A field missing from the JSON counts as needed, so an older control plane's
/// configuration never makes a newer filter leave something out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputNeeds {
    /// `attributes.request.http.headers`.
    #[serde(default = "needed")]
    pub headers: bool,
    /// `attributes.request.http.host`.
    #[serde(default = "needed")]
    pub host: bool,
    /// `attributes.request.http.scheme`.
    #[serde(default = "needed")]
    pub scheme: bool,
    /// `attributes.request.http.id` (the `x-request-id` header).
    #[serde(default = "needed")]
    pub request_id: bool,
    /// `attributes.request.time`.
    #[serde(default = "needed")]
    pub time: bool,
    /// `attributes.source.address`.
    #[serde(default = "needed")]
    pub source_address: bool,
    /// `attributes.destination.address`.
    #[serde(default = "needed")]
    pub destination_address: bool,
    /// `parsed_path`.
    #[serde(default = "needed")]
    pub parsed_path: bool,
    /// `parsed_query`.
    #[serde(default = "needed")]
    pub parsed_query: bool,
}

fn needed() -> bool {
    true
}

/// One group of the input document that is built (or left out) as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Headers,
    Host,
    Scheme,
    RequestId,
    Time,
    SourceAddress,
    DestinationAddress,
    ParsedPath,
    ParsedQuery,
}

/// The input document's shape, as far as Warden builds it.
#[derive(Debug)]
enum Node {
    /// An object with these known keys (other keys are absent).
    Object(&'static [(&'static str, Node)]),
    /// A value that is always built.
    Always,
    /// A group built only when needed.
    Group(Field),
}

const SHAPE: Node = Node::Object(&[
    (
        "attributes",
        Node::Object(&[
            (
                "source",
                Node::Object(&[
                    ("principal", Node::Always),
                    ("address", Node::Group(Field::SourceAddress)),
                ]),
            ),
            (
                "destination",
                Node::Object(&[
                    ("principal", Node::Always),
                    ("address", Node::Group(Field::DestinationAddress)),
                ]),
            ),
            (
                "request",
                Node::Object(&[
                    ("time", Node::Group(Field::Time)),
                    (
                        "http",
                        Node::Object(&[
                            ("method", Node::Always),
                            ("path", Node::Always),
                            ("host", Node::Group(Field::Host)),
                            ("scheme", Node::Group(Field::Scheme)),
                            ("headers", Node::Group(Field::Headers)),
                            ("id", Node::Group(Field::RequestId)),
                        ]),
                    ),
                ]),
            ),
        ]),
    ),
    ("parsed_path", Node::Group(Field::ParsedPath)),
    ("parsed_query", Node::Group(Field::ParsedQuery)),
    ("source_principal", Node::Always),
    ("version", Node::Always),
]);

impl InputNeeds {
    /// Everything.
    pub const ALL: Self = Self {
        headers: true,
        host: true,
        scheme: true,
        request_id: true,
        time: true,
        source_address: true,
        destination_address: true,
        parsed_path: true,
        parsed_query: true,
    };

    /// Nothing beyond what is always built.
    pub const NONE: Self = Self {
        headers: false,
        host: false,
        scheme: false,
        request_id: false,
        time: false,
        source_address: false,
        destination_address: false,
        parsed_path: false,
        parsed_query: false,
    };

    /// Analyses Rego sources (all modules of one policy).
    pub fn scan<'a>(sources: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needs = Self::NONE;
        for source in sources {
            match tokens(source) {
                Some(tokens) if needs.add_references(&tokens) => {}
                _ => return Self::ALL,
            }
        }
        needs
    }

    /// True when the answer can depend on more than the peer, method and path.
    pub fn varies_per_request(&self) -> bool {
        self.headers
            || self.host
            || self.scheme
            || self.request_id
            || self.time
            || self.source_address
            || self.destination_address
    }

    fn set(&mut self, field: Field) {
        match field {
            Field::Headers => self.headers = true,
            Field::Host => self.host = true,
            Field::Scheme => self.scheme = true,
            Field::RequestId => self.request_id = true,
            Field::Time => self.time = true,
            Field::SourceAddress => self.source_address = true,
            Field::DestinationAddress => self.destination_address = true,
            Field::ParsedPath => self.parsed_path = true,
            Field::ParsedQuery => self.parsed_query = true,
        }
    }

    /// Adds what every `input` reference in `tokens` needs; `false` when one of them
    /// needs everything.
    fn add_references(&mut self, tokens: &[Tok]) -> bool {
        for at in 0..tokens.len() {
            // `x.input` is a field named input, not the input document.
            if !is_input_root(tokens, at) {
                continue;
            }
            // `with input… as v` replaces (part of) the input: keep it whole.
            if at
                .checked_sub(1)
                .and_then(|i| tokens.get(i))
                .is_some_and(|t| t.text == "with")
            {
                return false;
            }
            match resolve(&tokens[at], &tokens[at + 1..]) {
                Reference::Whole => return false,
                Reference::Group(field) => self.set(field),
                Reference::Nothing => {}
            }
        }
        true
    }
}

/// One token: kind, text, where it starts (1-based line and column) and its byte range.
#[derive(Debug)]
struct Tok {
    kind: TokenKind,
    text: String,
    line: u32,
    column: u32,
    start: u32,
    end: u32,
}

/// A reference to a request body field (Envoy does not send bodies to the filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReference {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, e.g. `input.parsed_body`.
    pub field: String,
}

/// OPA-Envoy input fields that carry the request body; never provided by Warden.
const BODY_FIELDS: [&[&str]; 4] = [
    &["parsed_body"],
    &["truncated_body"],
    &["attributes", "request", "http", "body"],
    &["attributes", "request", "http", "raw_body"],
];

/// Every reference in `source` to a body field (`input.parsed_body`,
/// `input.attributes.request.http.body`, ...). Such a policy would silently see an
/// absent field, so `warden validate` refuses it.
pub fn body_references(source: &str) -> Vec<BodyReference> {
    let Some(tokens) = tokens(source) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (at, tok) in tokens.iter().enumerate() {
        if !is_input_root(&tokens, at) {
            continue;
        }
        let mut path = Vec::new();
        let mut prev = tok;
        let mut rest = &tokens[at + 1..];
        while let Some((key, used)) = literal_key(prev, rest) {
            path.push(key);
            prev = &rest[used - 1];
            rest = &rest[used..];
            if let Some(field) = BODY_FIELDS.iter().find(|f| **f == path.as_slice()) {
                out.push(BodyReference {
                    line: tok.line as usize,
                    column: tok.column as usize,
                    field: format!("input.{}", field.join(".")),
                });
                break;
            }
        }
    }
    out
}

/// Where `source` calls the builtin or function `name` (`name(`, not `x.name(`), as
/// 1-based (line, column): for pointing at a construct the filter's engine refuses.
pub fn call_sites(source: &str, name: &str) -> Vec<(usize, usize)> {
    let Some(tokens) = tokens(source) else {
        return Vec::new();
    };
    tokens
        .windows(2)
        .enumerate()
        .filter(|(at, pair)| {
            let after_dot = at
                .checked_sub(1)
                .and_then(|i| tokens.get(i))
                .is_some_and(|t| t.text == ".");
            pair[0].kind == TokenKind::Ident
                && pair[0].text == name
                && pair[1].text == "("
                && !after_dot
        })
        .map(|(_, pair)| (pair[0].line as usize, pair[0].column as usize))
        .collect()
}

/// True when the token at `at` is the root `input` (not a field named `input`).
fn is_input_root(tokens: &[Tok], at: usize) -> bool {
    let tok = &tokens[at];
    let after_dot = at
        .checked_sub(1)
        .and_then(|i| tokens.get(i))
        .is_some_and(|t| t.text == ".");
    tok.kind == TokenKind::Ident && tok.text == "input" && !after_dot
}

/// Where one reference starting at `input` ends.
enum Reference {
    /// An object above the groups, used as a value or indexed by a computed key.
    Whole,
    /// Inside a group.
    Group(Field),
    /// An always-built value, or a key Warden never provides.
    Nothing,
}

/// Follows the reference that starts at the token `root` (`input`) through `rest`.
fn resolve(root: &Tok, rest: &[Tok]) -> Reference {
    let mut node = &SHAPE;
    let mut prev = root;
    let mut at = 0;
    loop {
        let children = match node {
            Node::Object(children) => *children,
            Node::Always => return Reference::Nothing,
            Node::Group(field) => return Reference::Group(*field),
        };
        let Some((key, used)) = literal_key(prev, &rest[at..]) else {
            return Reference::Whole;
        };
        at += used;
        prev = &rest[at - 1];
        match children.iter().find(|(name, _)| *name == key) {
            Some((_, child)) => node = child,
            None => return Reference::Nothing,
        }
    }
}

/// `.name` or `["name"]` at the start of `rest`, directly after `prev` (the reference so
/// far): the key and how many tokens it took. Only what touches `prev` continues the
/// reference: `x := input` and a next line starting with `["a"]` are two statements, and
/// reading them as `input["a"]` would miss that the whole input is used as a value.
fn literal_key(prev: &Tok, rest: &[Tok]) -> Option<(String, usize)> {
    match rest {
        [dot, name, ..]
            if dot.text == "."
                && name.kind == TokenKind::Ident
                && dot.start == prev.end
                && name.start == dot.end =>
        {
            Some((name.text.clone(), 2))
        }
        [open, key, close, ..]
            if open.text == "[" && close.text == "]" && open.start == prev.end =>
        {
            let key = match key.kind {
                TokenKind::String => serde_json::from_str(&format!("\"{}\"", key.text)).ok()?,
                TokenKind::RawString => key.text.clone(),
                _ => return None,
            };
            Some((key, 3))
        }
        _ => None,
    }
}

/// The source's tokens, or `None` when the lexer rejects it.
fn tokens(source: &str) -> Option<Vec<Tok>> {
    let source = Source::from_contents("policy.rego".into(), source.into()).ok()?;
    let mut lexer = Lexer::new(&source);
    let mut out = Vec::new();
    loop {
        let Token(kind, span) = lexer.next_token().ok()?;
        if kind == TokenKind::Eof {
            return Some(out);
        }
        out.push(Tok {
            kind,
            text: span.text().to_string(),
            line: span.line,
            column: span.col,
            start: span.start,
            end: span.end,
        });
    }
}

/// Builtins (by name or name prefix) whose result is not a function of their arguments.
const NONDETERMINISTIC: [&str; 10] = [
    "http.",
    "net.lookup",
    "opa.runtime",
    "rand.",
    "time.now",
    "uuid.rfc4122",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify",
    "print",
    "trace",
];

/// True when a builtin may answer differently for the same arguments.
pub fn is_nondeterministic(builtin: &str) -> bool {
    NONDETERMINISTIC.iter().any(|p| builtin.starts_with(p))
}

/// True when a policy that reads `needs` and calls `builtins` gives the same decision for
/// the same peer, method and path (its data being fixed).
pub fn cacheable<'a>(needs: InputNeeds, mut builtins: impl Iterator<Item = &'a str>) -> bool {
    !(needs.varies_per_request() || builtins.any(is_nondeterministic))
}

#[cfg(test)]
mod tests;
