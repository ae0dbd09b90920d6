//! The one vocabulary of join keys, session keys and repair marks.
//!
//! Every path that groups spans into sessions or follows one span to
//! another by an ID reads the attribute names from here: the doctor's
//! reading of a span, the live pipeline's gathering of a closing trace's
//! relatives, the store's key index, and the API's search and session
//! views. A new convention (another framework's session attribute, another
//! instrumentation's request ID) is added to [`slot_of`] once and reaches
//! all of them.
//!
//! On the data's road this sits with the span model, before anything
//! else: it only names attributes and never reads a network or a file.

use std::borrow::Cow;

/// What an attribute says about the span, for joining and grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Slot {
    /// A user's session: `session.id`, Traceloop's association property,
    /// Langfuse's session.
    Session = 0,
    /// `gen_ai.conversation.id`: a conversation, which some frameworks
    /// start afresh for every run.
    Conversation = 1,
    /// `user.id`.
    User = 2,
    /// The ID of a message through a queue: `messaging.message.id`, or
    /// Celery's task id in `messaging.conversation_id`.
    Message = 3,
    /// A model's tool call: `gen_ai.tool.call.id`, OpenInference's
    /// `tool_call.id`.
    ToolCall = 4,
    /// `mcp.session.id`.
    McpSession = 5,
    /// A JSON-RPC request's ID (`jsonrpc.request.id`, OpenLLMetry's
    /// `mcp.request.id`); it repeats across sessions, so it joins only with
    /// the MCP session or with time.
    RpcId = 6,
}

const SLOTS: usize = 7;

/// The slot an attribute fills, and its rank among the attributes that
/// fill the same slot (0 for the current convention, higher for legacy and
/// vendor names; the lowest rank on a span wins).
pub fn slot_of(key: &str) -> Option<(Slot, u8)> {
    slot_of_bytes(key.as_bytes())
}

/// [`slot_of`] for a key still in its protobuf bytes: every key of a slot
/// is ASCII, so bytes that name one are its text, and a reader need not
/// check the UTF-8 of every other key to find them.
pub fn slot_of_bytes(key: &[u8]) -> Option<(Slot, u8)> {
    Some(match key {
        b"session.id" => (Slot::Session, 0),
        b"traceloop.association.properties.session_id" => (Slot::Session, 1),
        b"langfuse.session.id" => (Slot::Session, 2),
        b"gen_ai.conversation.id" => (Slot::Conversation, 0),
        b"user.id" => (Slot::User, 0),
        b"messaging.message.id" => (Slot::Message, 0),
        b"messaging.conversation_id" => (Slot::Message, 1),
        b"gen_ai.tool.call.id" => (Slot::ToolCall, 0),
        b"tool_call.id" => (Slot::ToolCall, 1),
        b"mcp.session.id" => (Slot::McpSession, 0),
        b"jsonrpc.request.id" => (Slot::RpcId, 0),
        b"mcp.request.id" => (Slot::RpcId, 1),
        _ => return None,
    })
}

/// The attribute names of a slot, best rank first: for a reader that
/// looks one slot up on a span, and for error messages that list what can
/// be searched.
pub fn attributes_of(slot: Slot) -> &'static [&'static str] {
    match slot {
        Slot::Session => &["session.id", "traceloop.association.properties.session_id", "langfuse.session.id"],
        Slot::Conversation => &["gen_ai.conversation.id"],
        Slot::User => &["user.id"],
        Slot::Message => &["messaging.message.id", "messaging.conversation_id"],
        Slot::ToolCall => &["gen_ai.tool.call.id", "tool_call.id"],
        Slot::McpSession => &["mcp.session.id"],
        Slot::RpcId => &["jsonrpc.request.id", "mcp.request.id"],
    }
}

/// An indexed key of a span: what the store indexes, what the pipeline
/// follows between traces, what the API searches by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum KeyKind {
    /// A user's session (see [`Slot::Session`]).
    Session = 1,
    /// `gen_ai.conversation.id`.
    Conversation = 2,
    /// `user.id`.
    User = 3,
    /// A queue message (see [`Slot::Message`]).
    Message = 4,
    /// An MCP request: the MCP session and the JSON-RPC ID together.
    McpRequest = 5,
    /// A model's tool call.
    ToolCall = 6,
    /// A JSON-RPC request ID without an MCP session: a weak key (it repeats
    /// across sessions) that only time makes a join.
    RpcId = 7,
    /// A span link's trace (lowercase hex), on the linking span: a consumer
    /// that links to its producer names the other side of its hop. Not an
    /// attribute: the store indexes it from the span's links, so that a
    /// collector sharing the store finds a hand-off's other side whichever
    /// side it holds.
    Link = 8,
}

impl KeyKind {
    /// Every kind, in code order.
    pub const ALL: [KeyKind; 8] = [
        KeyKind::Session,
        KeyKind::Conversation,
        KeyKind::User,
        KeyKind::Message,
        KeyKind::McpRequest,
        KeyKind::ToolCall,
        KeyKind::RpcId,
        KeyKind::Link,
    ];

    /// The kinds that name a session, the user's first.
    pub const SESSIONS: [KeyKind; 2] = [KeyKind::Session, KeyKind::Conversation];

    /// The stable code the store keeps.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind with this code.
    pub fn from_code(code: u8) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Whether spans sharing this key are in one session rather than at
    /// the two ends of one hop.
    pub fn is_session(self) -> bool {
        matches!(self, KeyKind::Session | KeyKind::Conversation | KeyKind::User)
    }

    /// The kind an attribute is searched under, for a search by attribute
    /// name (`query.attributes[session.id]=…`).
    pub fn searched_by(attribute: &str) -> Option<KeyKind> {
        KeyKind::of_slot(slot_of(attribute)?.0)
    }

    /// The key a slot's value is indexed under by itself (an MCP session
    /// is a key only together with a request ID).
    fn of_slot(slot: Slot) -> Option<KeyKind> {
        Some(match slot {
            Slot::Session => KeyKind::Session,
            Slot::Conversation => KeyKind::Conversation,
            Slot::User => KeyKind::User,
            Slot::Message => KeyKind::Message,
            Slot::ToolCall => KeyKind::ToolCall,
            Slot::RpcId => KeyKind::RpcId,
            Slot::McpSession => return None,
        })
    }
}

/// A key's value: [`KeyKind::McpRequest`] joins the session and the
/// request ID with a unit separator, since a request ID alone repeats
/// across sessions.
pub fn mcp_request_value(session: &str, request_id: &str) -> String {
    format!("{session}\u{1f}{request_id}")
}

/// The attribute that carries a message's correlation ID: Celery's task
/// id, AMQP's `correlation_id` (pika and aio-pika instrumentations). It
/// fills [`Slot::Message`] when a span has no `messaging.message.id`, and
/// is a key of its own when it has one that differs (see
/// [`KeySet::correlation`]).
pub const CORRELATION_ID: &str = "messaging.conversation_id";

/// Collects a span's keyed attributes, in any order, keeping the best
/// ranked value of each slot.
#[derive(Debug, Default, Clone)]
pub struct KeySet<'a> {
    slots: [Option<(u8, Cow<'a, str>)>; SLOTS],
    /// `messaging.conversation_id`, whatever the slot kept.
    correlation: Option<Cow<'a, str>>,
}

impl<'a> KeySet<'a> {
    /// An empty set.
    pub fn new() -> KeySet<'a> {
        KeySet::default()
    }

    /// Offers one attribute; `value` is asked for only when the key is one
    /// of ours (empty values are no key).
    pub fn offer(&mut self, key: &str, value: impl FnOnce() -> Option<Cow<'a, str>>) {
        let Some((slot, rank)) = slot_of(key) else { return };
        if key == CORRELATION_ID {
            let Some(v) = value().filter(|v| !v.is_empty()) else { return };
            let current = &mut self.slots[slot as usize];
            if current.as_ref().is_none_or(|(r, _)| *r > rank) {
                *current = Some((rank, v.clone()));
            }
            self.correlation = Some(v);
            return;
        }
        let current = &mut self.slots[slot as usize];
        if current.as_ref().is_some_and(|(r, _)| *r <= rank) {
            return;
        }
        if let Some(v) = value().filter(|v| !v.is_empty()) {
            *current = Some((rank, v));
        }
    }

    /// A message's correlation ID when the span also carries a message ID
    /// that differs: an RPC over AMQP sends the request and its reply
    /// under one correlation ID, each message under an ID of its own (one
    /// the client library makes up when the application sets none), so
    /// only the correlation ID ties a reply to the request it answers.
    /// `None` when it is the span's message key already.
    pub fn correlation(&self) -> Option<&str> {
        let c = self.correlation.as_deref()?;
        (self.get(Slot::Message).map(|(_, m)| m) != Some(c)).then_some(c)
    }

    /// The keys of a decoded span: text and integer values count (IDs
    /// sometimes arrive as numbers).
    pub fn of_span(span: &'a crate::Span) -> KeySet<'a> {
        let mut set = KeySet::new();
        for (key, value) in span.attributes.iter() {
            set.offer(key, || match value {
                crate::Value::Str(s) => Some(Cow::Borrowed(s.as_str())),
                crate::Value::Int(i) => Some(Cow::Owned(i.to_string())),
                _ => None,
            });
        }
        set
    }

    /// The value of a slot, with its rank.
    pub fn get(&self, slot: Slot) -> Option<(u8, &str)> {
        self.slots[slot as usize].as_ref().map(|(r, v)| (*r, v.as_ref()))
    }

    /// The value of a slot, taken out.
    pub fn take(&mut self, slot: Slot) -> Option<Cow<'a, str>> {
        self.slots[slot as usize].take().map(|(_, v)| v)
    }

    /// The session a span belongs to: the user's session, else the
    /// conversation. The flag says it is only a conversation.
    pub fn session(&self) -> Option<(&str, bool)> {
        self.get(Slot::Session)
            .map(|(_, s)| (s, false))
            .or_else(|| self.get(Slot::Conversation).map(|(_, c)| (c, true)))
    }

    /// The indexed keys, each once.
    pub fn keys(&self) -> Vec<(KeyKind, String)> {
        let mut out = Vec::new();
        for slot in [Slot::Session, Slot::Conversation, Slot::User, Slot::Message, Slot::ToolCall] {
            if let (Some(kind), Some((_, v))) = (KeyKind::of_slot(slot), self.get(slot)) {
                out.push((kind, v.to_owned()));
            }
        }
        if let Some(c) = self.correlation() {
            out.push((KeyKind::Message, c.to_owned()));
        }
        match (self.get(Slot::McpSession), self.get(Slot::RpcId)) {
            (Some((_, s)), Some((_, r))) => out.push((KeyKind::McpRequest, mcp_request_value(s, r))),
            (None, Some((_, r))) => out.push((KeyKind::RpcId, r.to_owned())),
            _ => {}
        }
        out
    }
}

/// The marks the doctor leaves on the spans it repairs or makes, which
/// exporters and the UI read.
pub mod marks {
    /// Every repair mark starts with this.
    pub const REPAIR_PREFIX: &str = "agentrace.repair.";
    /// How sure the join is, 0 to 1.
    pub const CONFIDENCE: &str = "agentrace.repair.confidence";
    /// The evidence the join rests on.
    pub const EVIDENCE: &str = "agentrace.repair.evidence";
    /// The trace the span arrived in, before it was joined into another.
    pub const ORIGINAL_TRACE_ID: &str = "agentrace.repair.original_trace_id";
    /// The parent the span arrived with, if any.
    pub const ORIGINAL_PARENT_SPAN_ID: &str = "agentrace.repair.original_parent_span_id";
    /// A span the doctor made (true), not one that arrived.
    pub const SYNTHETIC: &str = "agentrace.synthetic";
    /// What kind of span the doctor made.
    pub const SYNTHETIC_KIND: &str = "agentrace.synthetic.kind";
    /// The consumer span a synthetic span stands for.
    pub const SYNTHETIC_CONSUMER_SPAN_ID: &str = "agentrace.synthetic.consumer_span_id";
    /// The prefix of the agent rollups the doctor writes on agent spans.
    pub const ROLLUP_PREFIX: &str = "app.agent.";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(attrs: &[(&str, &str)]) -> Vec<(KeyKind, String)> {
        let mut set = KeySet::new();
        for (k, v) in attrs {
            set.offer(k, || Some(Cow::Owned((*v).to_owned())));
        }
        set.keys()
    }

    #[test]
    fn every_attribute_of_a_slot_is_read_as_that_slot_in_rank_order() {
        for slot in [
            Slot::Session,
            Slot::Conversation,
            Slot::User,
            Slot::Message,
            Slot::ToolCall,
            Slot::McpSession,
            Slot::RpcId,
        ] {
            for (rank, name) in attributes_of(slot).iter().enumerate() {
                assert_eq!(slot_of(name), Some((slot, rank as u8)), "{name}");
            }
        }
    }

    #[test]
    fn a_vendor_session_is_a_session_and_the_standard_name_wins() {
        assert_eq!(keys(&[("langfuse.session.id", "l")]), vec![(KeyKind::Session, "l".to_owned())]);
        assert_eq!(
            keys(&[("traceloop.association.properties.session_id", "t"), ("session.id", "s")]),
            vec![(KeyKind::Session, "s".to_owned())]
        );
        let mut set = KeySet::new();
        set.offer("gen_ai.conversation.id", || Some("c".into()));
        assert_eq!(set.session(), Some(("c", true)));
        set.offer("langfuse.session.id", || Some("l".into()));
        assert_eq!(set.session(), Some(("l", false)));
    }

    #[test]
    fn a_request_id_joins_with_its_mcp_session_or_stands_alone_as_a_weak_key() {
        assert_eq!(
            keys(&[("jsonrpc.request.id", "7"), ("mcp.session.id", "m")]),
            vec![(KeyKind::McpRequest, "m\u{1f}7".to_owned())]
        );
        assert_eq!(keys(&[("mcp.request.id", "7")]), vec![(KeyKind::RpcId, "7".to_owned())]);
        assert_eq!(keys(&[("messaging.conversation_id", "task-1")]), vec![(KeyKind::Message, "task-1".to_owned())]);
        // Celery's task id in both: one key.
        assert_eq!(
            keys(&[("messaging.conversation_id", "task-1"), ("messaging.message.id", "task-1")]),
            vec![(KeyKind::Message, "task-1".to_owned())]
        );
        // An AMQP reply: its own message ID, and its request's correlation ID.
        for attrs in [
            [("messaging.conversation_id", "rpc-7"), ("messaging.message.id", "m-2")],
            [("messaging.message.id", "m-2"), ("messaging.conversation_id", "rpc-7")],
        ] {
            assert_eq!(
                keys(&attrs),
                vec![(KeyKind::Message, "m-2".to_owned()), (KeyKind::Message, "rpc-7".to_owned())]
            );
        }
        assert!(keys(&[("session.id", "")]).is_empty());
    }

    #[test]
    fn codes_round_trip() {
        for k in KeyKind::ALL {
            assert_eq!(KeyKind::from_code(k.code()), Some(k));
        }
    }
}
