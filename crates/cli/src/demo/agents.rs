//! The agents: an orchestrator that plans and hands two tasks to specialists through the queue,
//! and the specialists, which retrieve from the vector index on a thread pool, ask the LLM
//! stand-in, call a tool on the MCP server, parse its output and answer.
//!
//! Every hop goes through the SDK. Where the demo breaks a hop (see [`super::Propagation`]) it
//! does what the article's systems do, and no more: the producer writes the row without the
//! envelope's context, the MCP client is rmcp's plain one, the thread-pool job is spawned
//! without the caller's context. Application data (job id, session id in the row, tool call id)
//! still travels, as it would in those systems; that is the evidence the doctor repairs from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentrace::carrier::envelope::{ContextEnvelope, Traced};
use agentrace::genai::{Agent, AgentSpan, GenAiSpan};
use agentrace::messaging::{ConsumerSpan, ProducerSpan};
use agentrace::task::Captured;
use anyhow::Context as _;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::index::VectorIndex;
use super::llm::{ChatRequest, LlmError, LlmStandIn, ToolCall};
use super::queue::{Message, Queue, Receiver};
use super::tools::ToolClient;
use super::{Hop, Plan, RequestPlan};

/// How often the orchestrator retries a rate-limited model call before giving up.
const LLM_ATTEMPTS: u32 = 3;

/// A specialist agent: its name, the queue it consumes, and the tool it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specialist {
    /// `gen_ai.agent.name` and `service.name`.
    pub name: &'static str,
    /// `app.agent.role`.
    pub role: &'static str,
    /// The MCP tool it calls.
    pub tool: &'static str,
}

/// The two specialists.
pub const SPECIALISTS: [Specialist; 2] = [
    Specialist { name: "researcher", role: "research", tool: "search_hotels" },
    Specialist { name: "budgeter", role: "budget", tool: "estimate_budget" },
];

/// The orchestrator's name (and service).
pub const ORCHESTRATOR: &str = "planner";

impl Specialist {
    /// The queue destination it consumes.
    pub fn destination(&self) -> String {
        format!("agentrace.demo.jobs.{}", self.name)
    }
}

/// A task in the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Producer-assigned id: `messaging.message.id` on both sides.
    pub id: String,
    /// The user's session; a row carries it as data, whatever happens to the trace context.
    pub session: String,
    /// The city of the trip.
    pub city: String,
    /// Number of nights.
    pub nights: u32,
    /// The queue's backlog, simulated: the consumer may not start before this (Unix ms).
    pub not_before_ms: u64,
}

/// What a specialist sends back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The answer text.
    pub text: String,
    /// Whether the specialist could use its tool's output.
    pub ok: bool,
}

/// What the agents share in one process.
pub struct Shared {
    /// Which hops carry context.
    pub plan: Plan,
    /// The queue.
    pub queue: Queue,
    /// OTLP/HTTP endpoint, passed on to the tool servers.
    pub endpoint: String,
    /// This binary, launched as the MCP server.
    pub exe: PathBuf,
    /// The vector index.
    pub index: Arc<VectorIndex>,
    /// Replies awaited by the orchestrator, by job id. The agents share a process, so replies
    /// come back on a channel: only the hand-off to the specialists is a traced hop.
    pub replies: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn edge(session: &str) -> Context {
    Context::new().with_baggage([KeyValue::new("session.id", session.to_owned())])
}

/// Calls the model, retrying a rate limit with the delay the provider asked for.
async fn chat_with_retry(
    llm: &LlmStandIn,
    tracer: &SdkTracer,
    cx: &Context,
    mut request: ChatRequest<'_>,
) -> anyhow::Result<super::llm::Completion> {
    let mut attempt = 1;
    loop {
        match llm.chat(tracer, cx, request.clone()).await {
            Ok(completion) => return Ok(completion),
            Err(LlmError::RateLimited { retry_after }) if attempt < LLM_ATTEMPTS => {
                tokio::time::sleep(retry_after).await;
                attempt += 1;
                // The limit was on that call; the retry goes through.
                request.rate_limited = false;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Handles one user request as the orchestrator, end to end; returns what became of it, in a line.
pub async fn orchestrate(
    shared: &Shared,
    tracer: &SdkTracer,
    llm: &LlmStandIn,
    request: &RequestPlan,
) -> anyhow::Result<String> {
    let session = request.session.as_str();
    let agent = AgentSpan::new(Agent::new(ORCHESTRATOR).with_role("orchestrator"))
        .with_conversation_id(session)
        .start(tracer, &edge(session));
    let prompt = format!("Plan a {}-night trip to {}: hotels and a budget.", request.nights, request.city);
    chat_with_retry(
        llm,
        tracer,
        &agent,
        ChatRequest { prompt: &prompt, conversation: session, tool_call: None, rate_limited: false },
    )
    .await?;

    let mut waiting = Vec::new();
    for specialist in SPECIALISTS {
        let job = Job {
            id: format!("{session}/{}", specialist.name),
            session: session.to_owned(),
            city: request.city.clone(),
            nights: request.nights,
            not_before_ms: if request.slow_queue_for == Some(specialist.name) {
                unix_ms() + super::SLOW_QUEUE.as_millis() as u64
            } else {
                0
            },
        };
        let destination = specialist.destination();
        let send = ProducerSpan::new(shared.queue.system(), &destination, Some(&job.id)).start(tracer, &agent);
        let (tx, rx) = oneshot::channel();
        shared.replies.lock().map_err(|_| anyhow::anyhow!("reply table poisoned"))?.insert(job.id.clone(), tx);
        waiting.push((specialist.name, rx));
        let envelope = if shared.plan.propagates(Hop::Queue) {
            Traced::with_context(job.clone(), &send)
        } else {
            // The article's hand-off: the row holds the task and nothing of the trace.
            Traced { trace_context: ContextEnvelope::default(), payload: job.clone() }
        };
        let body = serde_json::to_string(&envelope).context("cannot encode the job")?;
        let sent = shared.queue.send(&destination, &Message { id: job.id.clone(), body }).await;
        if let Err(err) = &sent {
            send.span().set_status(Status::error(err.to_string()));
        }
        send.span().end();
        sent?;
    }

    let wait = tracer.start_with_context("wait for specialists", &agent);
    let wait_cx = agent.with_span(wait);
    let mut findings = Vec::new();
    let mut unusable = Vec::new();
    for (name, rx) in waiting {
        let reply = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .with_context(|| format!("no reply from {name} in 30 s"))?
            .with_context(|| format!("{name} stopped without replying"))?;
        if !reply.ok {
            unusable.push(name);
        }
        findings.push(format!("{name}: {}", reply.text));
    }
    wait_cx.span().end();

    let prompt = format!("Write the itinerary from these notes: {}", findings.join(" | "));
    let answer = chat_with_retry(
        llm,
        tracer,
        &agent,
        ChatRequest { prompt: &prompt, conversation: session, tool_call: None, rate_limited: request.rate_limited },
    )
    .await;
    if let Err(err) = &answer {
        agent.span().set_attribute(KeyValue::new(agentrace::semconv::ERROR_TYPE, "llm_unavailable"));
        agent.span().set_status(Status::error(err.to_string()));
    }
    agent.span().end();
    answer?;
    Ok(if unusable.is_empty() {
        "itinerary written from both specialists' notes".to_owned()
    } else {
        format!("itinerary written, but {}'s tool output was unusable", unusable.join(" and "))
    })
}

/// Runs a specialist until `stop`: takes its jobs off the queue and answers each.
pub async fn serve_specialist(
    shared: Arc<Shared>,
    specialist: Specialist,
    tracer: SdkTracer,
    mut receiver: Receiver,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let llm = LlmStandIn::new("gpt-4o-mini");
    let destination = specialist.destination();
    while let Some(message) = receiver.next(&mut stop).await? {
        let Ok(traced) = serde_json::from_str::<Traced<Job>>(&message.body) else {
            tracing::warn!("demo: {} dropped a job it cannot read: {}", specialist.name, message.id);
            continue;
        };
        let (creation, job) = traced.into_parts();
        let wait = Duration::from_millis(job.not_before_ms.saturating_sub(unix_ms()));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // A row without context still names its session: the worker sets it as baggage at its
        // edge, so its spans are found with the request even though their trace is new.
        let creation = if creation.span().span_context().is_valid() { creation } else { edge(&job.session) };
        let process =
            ConsumerSpan::new(shared.queue.system(), &destination, Some(&message.id)).start(&tracer, &creation);
        let reply = work(&shared, specialist, &tracer, &llm, &process, &job).await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                process.span().set_status(Status::error(format!("{err:#}")));
                Reply { text: format!("failed: {err:#}"), ok: false }
            }
        };
        process.span().end();
        let waiting = shared.replies.lock().ok().and_then(|mut r| r.remove(&job.id));
        if let Some(tx) = waiting {
            let _ = tx.send(reply);
        }
    }
    Ok(())
}

/// Retrieval on a blocking thread pool, in a `retrieval` span started from whatever context the
/// pool thread has.
fn retrieve(tracer: &SdkTracer, index: &VectorIndex, query: &str, session: &str) -> Vec<String> {
    let cx = GenAiSpan::retrieval(index.name()).start(tracer, &Context::current());
    if Context::current().baggage().get("session.id").is_none() {
        // The context (and its baggage) did not reach this thread; the work item still knows
        // its session, and tags the span by hand, as a careful team does.
        cx.span().set_attribute(KeyValue::new("session.id", session.to_owned()));
    }
    // Embedding and scanning a real index takes a few milliseconds more than this one does.
    std::thread::sleep(Duration::from_millis(15));
    let hits = index.search(query, 2);
    cx.span().set_attribute(KeyValue::new("app.retrieval.documents", hits.len() as i64));
    cx.span().end();
    hits.into_iter().map(|(_, doc)| doc.to_owned()).collect()
}

async fn work(
    shared: &Shared,
    specialist: Specialist,
    tracer: &SdkTracer,
    llm: &LlmStandIn,
    process: &Context,
    job: &Job,
) -> anyhow::Result<Reply> {
    let agent = AgentSpan::new(Agent::new(specialist.name).with_role(specialist.role))
        .with_conversation_id(&job.session)
        .start(tracer, process);
    let outcome = work_as_agent(shared, specialist, tracer, llm, &agent, job).await;
    if let Err(err) = &outcome {
        agent.span().set_status(Status::error(format!("{err:#}")));
    }
    agent.span().end();
    outcome
}

async fn work_as_agent(
    shared: &Shared,
    specialist: Specialist,
    tracer: &SdkTracer,
    llm: &LlmStandIn,
    agent: &Context,
    job: &Job,
) -> anyhow::Result<Reply> {
    let session = job.session.as_str();
    // Retrieval runs on the blocking pool. Propagating, the job carries the agent's context;
    // not, it starts on a pool thread with none: the lost-context fault.
    let query = super::index::trip_query(&job.city);
    let job_fn = {
        let (tracer, index, query, session) =
            (tracer.clone(), Arc::clone(&shared.index), query.clone(), job.session.clone());
        move || retrieve(&tracer, &index, &query, &session)
    };
    let passages = if shared.plan.propagates(Hop::ThreadPool) {
        tokio::task::spawn_blocking(Captured::from_context(agent.clone()).wrap_once(job_fn)).await
    } else {
        tokio::task::spawn_blocking(job_fn).await
    }
    .context("the retrieval job panicked")?;

    let call_id = format!("call_{}_{}", session.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), specialist.tool);
    let mut arguments = serde_json::Map::new();
    arguments.insert("city".into(), job.city.clone().into());
    arguments.insert("nights".into(), job.nights.into());
    let prompt = format!("Trip to {} for {} nights. Context: {}", job.city, job.nights, passages.join(" "));
    let decided = chat_with_retry(
        llm,
        tracer,
        agent,
        ChatRequest {
            prompt: &prompt,
            conversation: session,
            tool_call: Some(ToolCall { id: call_id, name: specialist.tool.to_owned(), arguments }),
            rate_limited: false,
        },
    )
    .await?;
    let call = decided.tool_call.context("the model asked for no tool")?;

    // The tool server is launched for this job (a stdio MCP server per task, as agent hosts do).
    let propagate = shared.plan.propagates(Hop::Mcp);
    let connect = tracer.start_with_context("connect demo-tools", agent);
    let connect_cx = agent.with_span(connect);
    let client = ToolClient::launch(&shared.exe, &shared.endpoint, specialist.name, &connect_cx, propagate).await;
    connect_cx.span().end();
    let client = client?;
    let exec = GenAiSpan::execute_tool(&call.name, Some(&call.id)).start(tracer, agent);
    let output = client.call(tracer, &exec, &call.name, &call.id, call.arguments.clone()).await;
    if let Err(err) = &output {
        exec.span().set_attribute(KeyValue::new(agentrace::semconv::ERROR_TYPE, "tool_call_failed"));
        exec.span().set_status(Status::error(format!("{err:#}")));
    }
    exec.span().end();
    client.close().await;
    let output = output?;

    // The agent trusts the tool to answer JSON; when it does not, this is where it shows.
    let parse = tracer.start_with_context(format!("parse {} result", call.name), agent);
    let parse_cx = agent.with_span(parse);
    let parsed = serde_json::from_str::<serde_json::Value>(&output);
    let ok = match &parsed {
        Ok(_) => true,
        Err(err) => {
            parse_cx.span().set_attribute(KeyValue::new(agentrace::semconv::ERROR_TYPE, "json_parse_error"));
            parse_cx.span().set_status(Status::error(format!("malformed JSON from {}: {err}", call.name)));
            false
        }
    };
    parse_cx.span().end();

    let notes = match parsed {
        Ok(value) => value.to_string(),
        Err(_) => "the tool's answer was unreadable; going on without it".to_owned(),
    };
    let answer = chat_with_retry(
        llm,
        tracer,
        agent,
        ChatRequest {
            prompt: &format!("Summarise for the planner: {notes}"),
            conversation: session,
            tool_call: None,
            rate_limited: false,
        },
    )
    .await?;
    Ok(Reply { text: answer.text, ok })
}
