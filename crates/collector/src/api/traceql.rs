//! The part of TraceQL that Grafana's Tempo search builder writes, parsed
//! and matched against stored spans (the [`super::tempo`] routes).
//!
//! Supported: spansets `{ … }` combined with `&&` (the trace has both) and
//! `||` (either); inside, conditions combined with `&&`, `||` and
//! parentheses; a condition is `field op value` with `=`, `!=`, `=~`, `!~`,
//! `>`, `>=`, `<`, `<=`. Fields: `span.x`, `resource.x`, `.x` (either),
//! and the intrinsics `name`, `status`, `statusMessage`, `kind`,
//! `duration`, `rootName`, `rootServiceName`, `traceDuration` (also with
//! the `span:`/`trace:` prefixes of newer Tempo). Values: double-quoted
//! strings, integers, floats, durations (`250ms`, `1.5s`), `true`/`false`,
//! statuses (`error`, `ok`, `unset`) and kinds (`server`, `client`, …).
//! Anything else is refused with a message that says what and where, not
//! matched loosely.

use std::time::Duration;

/// A parsed query: spansets joined by `&&` / `||`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Query {
    /// One spanset.
    Set(Expr),
    /// Both sides match (each by its own spans).
    And(Box<Query>, Box<Query>),
    /// Either side matches.
    Or(Box<Query>, Box<Query>),
}

/// A condition on one span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `{}`: every span.
    True,
    /// A comparison.
    Cmp(Field, Op, Value),
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    /// `span.x`.
    Span(String),
    /// `resource.x`.
    Resource(String),
    /// `.x`: the span's, else the resource's.
    Any(String),
    /// `name`.
    Name,
    /// `status`.
    Status,
    /// `statusMessage`.
    StatusMessage,
    /// `kind`.
    Kind,
    /// `duration`.
    Duration,
    /// `rootName`.
    RootName,
    /// `rootServiceName`.
    RootServiceName,
    /// `traceDuration`.
    TraceDuration,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A regular expression of `=~` / `!~`, compiled once when the query is
/// parsed (anchored, as Tempo's are).
#[derive(Debug, Clone)]
pub(crate) struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// The right side of `=~` / `!~`.
    Re(Pattern),
    /// A string (also statuses and kinds, lowercase).
    Str(String),
    /// A number.
    Num(f64),
    /// A duration, in nanoseconds.
    Nanos(f64),
    /// A boolean.
    Bool(bool),
}

/// What a condition can know of one span.
pub(crate) struct SpanFacts<'a> {
    pub name: &'a str,
    /// `error`, `ok` or `unset`.
    pub status: &'static str,
    pub status_message: &'a str,
    /// `server`, `client`, `producer`, `consumer`, `internal` or `unspecified`.
    pub kind: &'static str,
    pub duration_ns: u64,
    pub root_name: &'a str,
    pub root_service: &'a str,
    pub trace_duration_ns: u64,
    /// An attribute of the span's own, as a literal.
    pub span_attr: &'a dyn Fn(&str) -> Option<Value>,
    /// An attribute of the span's resource, as a literal.
    pub resource_attr: &'a dyn Fn(&str) -> Option<Value>,
}

impl Expr {
    /// Whether the span matches.
    pub(crate) fn matches(&self, s: &SpanFacts<'_>) -> bool {
        match self {
            Expr::True => true,
            Expr::And(a, b) => a.matches(s) && b.matches(s),
            Expr::Or(a, b) => a.matches(s) || b.matches(s),
            Expr::Cmp(field, op, want) => {
                let got = match field {
                    Field::Span(k) => (s.span_attr)(k),
                    Field::Resource(k) => (s.resource_attr)(k),
                    Field::Any(k) => (s.span_attr)(k).or_else(|| (s.resource_attr)(k)),
                    Field::Name => Some(Value::Str(s.name.to_owned())),
                    Field::Status => Some(Value::Str(s.status.to_owned())),
                    Field::StatusMessage => Some(Value::Str(s.status_message.to_owned())),
                    Field::Kind => Some(Value::Str(s.kind.to_owned())),
                    Field::Duration => Some(Value::Nanos(s.duration_ns as f64)),
                    Field::RootName => Some(Value::Str(s.root_name.to_owned())),
                    Field::RootServiceName => Some(Value::Str(s.root_service.to_owned())),
                    Field::TraceDuration => Some(Value::Nanos(s.trace_duration_ns as f64)),
                };
                // A missing attribute matches nothing, `!=` included, as in Tempo.
                got.is_some_and(|got| compare(&got, *op, want))
            }
        }
    }
}

fn compare(got: &Value, op: Op, want: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Num(n) | Value::Nanos(n) => Some(*n),
        Value::Str(s) => s.parse::<f64>().ok(),
        Value::Bool(_) | Value::Re(_) => None,
    };
    let text = |v: &Value| match v {
        Value::Str(s) => s.clone(),
        Value::Num(n) | Value::Nanos(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Re(p) => p.0.as_str().to_owned(),
    };
    match op {
        Op::Re | Op::NotRe => match want {
            Value::Re(Pattern(re)) => re.is_match(&text(got)) == (op == Op::Re),
            _ => false,
        },
        Op::Eq | Op::Ne => {
            let equal = match (got, want) {
                (Value::Str(a), Value::Str(b)) => a == b,
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (a, b) => match (number(a), number(b)) {
                    (Some(x), Some(y)) => x == y,
                    _ => text(a) == text(b),
                },
            };
            equal == (op == Op::Eq)
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            let (Some(x), Some(y)) = (number(got), number(want)) else { return false };
            match op {
                Op::Gt => x > y,
                Op::Ge => x >= y,
                Op::Lt => x < y,
                _ => x <= y,
            }
        }
    }
}

impl Query {
    /// Every spanset of the query, for finding the spans that matched.
    pub(crate) fn sets(&self) -> Vec<&Expr> {
        match self {
            Query::Set(e) => vec![e],
            Query::And(a, b) | Query::Or(a, b) => {
                let mut v = a.sets();
                v.extend(b.sets());
                v
            }
        }
    }

    /// Whether a trace matches, given which of its spans each spanset matches.
    pub(crate) fn matches_trace(&self, any: &dyn Fn(&Expr) -> bool) -> bool {
        match self {
            Query::Set(e) => any(e),
            Query::And(a, b) => a.matches_trace(any) && b.matches_trace(any),
            Query::Or(a, b) => a.matches_trace(any) || b.matches_trace(any),
        }
    }
}

/// Why a query could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid TraceQL at character {at}: {message}")]
pub(crate) struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    And,
    Or,
    Op(Op),
    Str(String),
    Word(String),
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, m: &str| ParseError { at, message: m.to_owned() };
    while i < bytes.len() {
        let c = bytes[i];
        let two: String = bytes[i..(i + 2).min(bytes.len())].iter().collect();
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            _ if two == "&&" => Tok::And,
            _ if two == "||" => Tok::Or,
            _ if two == "=~" => Tok::Op(Op::Re),
            _ if two == "!~" => Tok::Op(Op::NotRe),
            _ if two == "!=" => Tok::Op(Op::Ne),
            _ if two == ">=" => Tok::Op(Op::Ge),
            _ if two == "<=" => Tok::Op(Op::Le),
            '=' => Tok::Op(Op::Eq),
            '>' => Tok::Op(Op::Gt),
            '<' => Tok::Op(Op::Lt),
            '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(err(start, "a string is not closed")),
                        Some('\\') if quote == '"' => {
                            let escaped = bytes.get(i + 1).ok_or_else(|| err(i, "a string ends in a backslash"))?;
                            s.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => *other,
                            });
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
                continue;
            }
            c if c.is_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '/') => {
                let mut s = String::new();
                while let Some(ch) =
                    bytes.get(i).filter(|ch| ch.is_alphanumeric() || matches!(ch, '.' | '_' | ':' | '-' | '/'))
                {
                    s.push(*ch);
                    i += 1;
                }
                out.push((start, Tok::Word(s)));
                continue;
            }
            other => return Err(err(i, &format!("unexpected {other:?}"))),
        };
        i += match tok {
            Tok::And | Tok::Or => 2,
            Tok::Op(Op::Re | Op::NotRe | Op::Ne | Op::Ge | Op::Le) => 2,
            _ => 1,
        };
        out.push((start, tok));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    len: usize,
    /// Parentheses open now: bounded, so a sender's query cannot exhaust
    /// the stack.
    depth: usize,
    /// Conditions and spansets read so far.
    terms: usize,
}

/// Deepest nesting of parentheses accepted.
const MAX_DEPTH: usize = 32;
/// Most conditions and spansets in one query: each is a level of the tree
/// that matching walks.
const MAX_TERMS: usize = 256;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.len, |(p, _)| *p)
    }
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError { at: self.pos(), message: message.into() }
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|(_, t)| t.clone());
        self.at += 1;
        t
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        let mut left = self.query_term()?;
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.next();
                    left = Query::And(Box::new(left), Box::new(self.query_term()?));
                }
                Some(Tok::Or) => {
                    self.next();
                    left = Query::Or(Box::new(left), Box::new(self.query_term()?));
                }
                _ => return Ok(left),
            }
        }
    }

    fn query_term(&mut self) -> Result<Query, ParseError> {
        self.count()?;
        match self.next() {
            Some(Tok::LBrace) => {
                if self.peek() == Some(&Tok::RBrace) {
                    self.next();
                    return Ok(Query::Set(Expr::True));
                }
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::RBrace) => Ok(Query::Set(e)),
                    _ => {
                        self.at -= 1;
                        Err(self.err("expected } to close the spanset"))
                    }
                }
            }
            Some(Tok::LParen) => {
                self.nest()?;
                let q = self.query()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::RParen) => Ok(q),
                    _ => Err(self.err("expected )")),
                }
            }
            _ => {
                self.at = self.at.saturating_sub(1);
                Err(self.err("expected a spanset, { … }"))
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        // `&&` binds tighter than `||`.
        let mut left = self.conj()?;
        while self.peek() == Some(&Tok::Or) {
            self.next();
            left = Expr::Or(Box::new(left), Box::new(self.conj()?));
        }
        Ok(left)
    }

    fn conj(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.cond()?;
        while self.peek() == Some(&Tok::And) {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.cond()?));
        }
        Ok(left)
    }

    fn nest(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("more than {MAX_DEPTH} nested parentheses")));
        }
        Ok(())
    }

    fn count(&mut self) -> Result<(), ParseError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.err(format!("more than {MAX_TERMS} conditions")));
        }
        Ok(())
    }

    fn cond(&mut self) -> Result<Expr, ParseError> {
        self.count()?;
        if self.peek() == Some(&Tok::LParen) {
            self.next();
            self.nest()?;
            let e = self.expr()?;
            self.depth -= 1;
            return match self.next() {
                Some(Tok::RParen) => Ok(e),
                _ => Err(self.err("expected )")),
            };
        }
        let field = match self.next() {
            Some(Tok::Word(w)) => field(&w).ok_or_else(|| {
                self.at -= 1;
                self.err(format!("unknown field {w:?}: use span.NAME, resource.NAME, .NAME or an intrinsic"))
            })?,
            _ => {
                self.at = self.at.saturating_sub(1);
                return Err(self.err("expected a field"));
            }
        };
        let op = match self.next() {
            Some(Tok::Op(op)) => op,
            _ => {
                self.at = self.at.saturating_sub(1);
                return Err(self.err("expected an operator (= != =~ !~ > >= < <=)"));
            }
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::Str(s),
            Some(Tok::Word(w)) => literal(&w).ok_or_else(|| {
                self.at -= 1;
                self.err(format!("{w:?} is no value: quote strings, e.g. \"{w}\""))
            })?,
            _ => {
                self.at = self.at.saturating_sub(1);
                return Err(self.err("expected a value"));
            }
        };
        let value = match (op, value) {
            (Op::Re | Op::NotRe, Value::Str(pattern)) => {
                // Bounded: a sender's pattern may not grow past this compiled.
                let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| self.err(format!("invalid regular expression {pattern:?}: {e}")))?;
                Value::Re(Pattern(re))
            }
            (Op::Re | Op::NotRe, _) => return Err(self.err("=~ and !~ take a quoted regular expression")),
            (_, value) => value,
        };
        Ok(Expr::Cmp(field, op, value))
    }
}

fn field(word: &str) -> Option<Field> {
    let bare = word.trim_start_matches("span:").trim_start_matches("trace:");
    Some(match bare {
        "name" => Field::Name,
        "status" => Field::Status,
        "statusMessage" => Field::StatusMessage,
        "kind" => Field::Kind,
        "duration" => Field::Duration,
        "rootName" => Field::RootName,
        "rootServiceName" | "rootService" => Field::RootServiceName,
        "traceDuration" => Field::TraceDuration,
        _ => {
            if let Some(k) = word.strip_prefix("span.") {
                Field::Span(k.to_owned())
            } else if let Some(k) = word.strip_prefix("resource.") {
                Field::Resource(k.to_owned())
            } else if let Some(k) = word.strip_prefix('.') {
                Field::Any(k.to_owned())
            } else {
                return None;
            }
        }
    })
    .filter(|f| !matches!(f, Field::Span(k) | Field::Resource(k) | Field::Any(k) if k.is_empty()))
}

fn literal(word: &str) -> Option<Value> {
    match word {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "error" | "ok" | "unset" | "server" | "client" | "producer" | "consumer" | "internal" | "unspecified" => {
            return Some(Value::Str(word.to_owned()));
        }
        _ => {}
    }
    if let Ok(n) = word.parse::<f64>() {
        return Some(Value::Num(n));
    }
    let d: Duration = humantime::parse_duration(word).ok()?;
    Some(Value::Nanos(d.as_nanos() as f64))
}

/// Parses a TraceQL query (the empty query is `{}`).
pub(crate) fn parse(text: &str) -> Result<Query, ParseError> {
    if text.trim().is_empty() {
        return Ok(Query::Set(Expr::True));
    }
    let toks = lex(text)?;
    let mut p = Parser { toks, at: 0, len: text.chars().count(), depth: 0, terms: 0 };
    let q = p.query()?;
    if p.at < p.toks.len() {
        return Err(p.err("unexpected text after the query"));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        span: &'a dyn Fn(&str) -> Option<Value>,
        resource: &'a dyn Fn(&str) -> Option<Value>,
    ) -> SpanFacts<'a> {
        SpanFacts {
            name: "GET /users",
            status: "error",
            status_message: "boom",
            kind: "server",
            duration_ns: 250_000_000,
            root_name: "GET /users",
            root_service: "frontend",
            trace_duration_ns: 300_000_000,
            span_attr: span,
            resource_attr: resource,
        }
    }

    #[test]
    fn what_grafanas_search_builder_writes_is_read_and_matched() {
        let span = |k: &str| match k {
            "http.status_code" => Some(Value::Num(500.0)),
            "gen_ai.agent.name" => Some(Value::Str("planner".into())),
            _ => None,
        };
        let resource = |k: &str| (k == "service.name").then(|| Value::Str("frontend".into()));
        let f = facts(&span, &resource);
        for (q, want) in [
            ("{}", true),
            (r#"{resource.service.name="frontend"}"#, true),
            (r#"{resource.service.name="frontend" && name="GET /users" && span.http.status_code=500}"#, true),
            (r#"{ .service.name = "frontend" }"#, true),
            (r#"{span.gen_ai.agent.name=~"plan.*"}"#, true),
            (r#"{span.gen_ai.agent.name=~"plan"}"#, false),
            (r#"{span.gen_ai.agent.name!="planner"}"#, false),
            (r#"{span.missing!="x"}"#, false),
            ("{duration>100ms && status=error}", true),
            ("{duration>1s}", false),
            ("{kind=server && traceDuration<=300ms}", true),
            (r#"{rootServiceName="frontend" && rootName="GET /users"}"#, true),
            (r#"{name="x" || status=error}"#, true),
            (r#"{(name="x" || status=ok) && kind=server}"#, false),
            (r#"{span:status = error} && {span:name = "GET /users"}"#, true),
            (r#"{name="x"} || {statusMessage="boom"}"#, true),
            ("{span.http.status_code >= 500}", true),
        ] {
            let parsed = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let got = parsed.matches_trace(&|e| e.matches(&f));
            assert_eq!(got, want, "{q}");
        }
    }

    #[test]
    fn what_it_cannot_read_is_refused_with_where_and_why() {
        for (q, says) in [
            ("{name=}", "expected a value"),
            ("{name=\"a\"", "expected } to close the spanset"),
            ("name=\"a\"", "expected a spanset"),
            ("{bogus=1}", "unknown field"),
            ("{name=frontend}", "quote strings"),
            ("{name \"a\"}", "expected an operator"),
            ("{} | rate()", "unexpected '|'"),
            ("{name=~\"(\"}", "invalid regular expression"),
            ("{name=~5}", "take a quoted regular expression"),
            (&format!("{{{}name=\"a\"{}}}", "(".repeat(100_000), ")".repeat(100_000)), "nested parentheses"),
            (&format!("{}{{}}{}", "(".repeat(100_000), ")".repeat(100_000)), "nested parentheses"),
            (&format!("{{{}name=\"a\"}}", "name=\"a\" && ".repeat(100_000)), "more than 256 conditions"),
            (&"{} && ".repeat(100_000), "more than 256 conditions"),
            ("{name=\"a}", "not closed"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.to_string().contains(says), "{q}: {e}");
        }
    }
}
