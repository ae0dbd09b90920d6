//! Claim: when the redaction policy keeps model output, a tool span that
//! lost its context is joined to the step that asked the model for that tool
//! call: the tool call ID in `gen_ai.output.messages` (GenAI parts, or
//! OpenInference's flattened attributes) is the evidence.

use agentrace_doctor::{Config, Doctor, Evidence, FindingKind};
use agentrace_model::{Span, otlp};

fn spans(output_key: &str, output_value: &str) -> Vec<Span> {
    let body = format!(
        r#"{{"resourceSpans":[
 {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"planner"}}}}]}},
  "scopeSpans":[{{"spans":[
   {{"traceId":"11111111111111111111111111111111","spanId":"1111111111111111","name":"invoke_agent planner",
    "kind":1,"startTimeUnixNano":"1000000000","endTimeUnixNano":"2000000000",
    "attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"invoke_agent"}}}}]}},
   {{"traceId":"11111111111111111111111111111111","spanId":"2222222222222222","parentSpanId":"1111111111111111",
    "name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1100000000","endTimeUnixNano":"1300000000",
    "attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},
                  {{"key":"{output_key}","value":{{"stringValue":{output_value}}}}}]}}]}}]}},
 {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"tools"}}}}]}},
  "scopeSpans":[{{"spans":[
   {{"traceId":"22222222222222222222222222222222","spanId":"3333333333333333","name":"execute_tool search",
    "kind":2,"startTimeUnixNano":"1400000000","endTimeUnixNano":"1600000000",
    "attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"execute_tool"}}}},
                  {{"key":"gen_ai.tool.call.id","value":{{"stringValue":"call_42"}}}}]}}]}}]}}]}}"#
    );
    let decoded = otlp::decode_json(body.as_bytes(), &otlp::Limits::default()).expect("valid OTLP JSON");
    Span::from_request(&decoded.request)
}

fn check(output_key: &str, output_value: &str) {
    let d = Doctor::new(Config::default()).analyse(&spans(output_key, output_value));
    let tool_root = d.findings.iter().find(|f| f.kind == FindingKind::ToolRoot).expect("the tool root is found");
    assert_eq!(tool_root.evidence, Some(Evidence::ToolCallId), "{tool_root:?}");
    let repair = &d.repairs[0];
    assert!(repair.applied, "{repair:?}");
    assert_eq!(repair.parent_span_id.to_string(), "1111111111111111", "the step that asked the model");
    assert!(repair.detail.contains("output messages"), "{}", repair.detail);
}

#[test]
fn genai_output_parts_name_the_tool_call() {
    let parts =
        r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"call_42","name":"search","arguments":{"q":"x"}}]}]"#;
    check("gen_ai.output.messages", &serde_json::to_string(parts).unwrap());
}

#[test]
fn openinference_flattened_output_names_the_tool_call() {
    check("llm.output_messages.0.message.tool_calls.0.tool_call.id", r#""call_42""#);
}

#[test]
fn without_the_id_in_the_output_nothing_names_the_caller() {
    let d = Doctor::new(Config::default()).analyse(&spans("gen_ai.output.messages", r#""[]""#));
    assert!(d.findings.iter().any(|f| f.kind == FindingKind::ToolRoot));
    assert!(d.repairs.iter().all(|r| !r.applied), "{:?}", d.repairs);
}
