//! The collector's integration tests, one module per claim, in one test binary (`[[test]]`
//! `integration` in Cargo.toml, with `autotests = false`): each file of this
//! directory was a binary of its own, and compiling the shared helpers into each and linking each
//! against the same dependencies was most of what building them cost.
//! A new file here is a module of this list, or it is never compiled:
//! `every_test_file_is_a_module_of_its_crates_test_binary` (in the CLI's) says so.

mod support;

mod auth_and_tls_protect_every_listener;
mod backend_receives_one_connected_redacted_trace;
mod bad_input_gets_a_clear_error_and_loses_nothing;
mod exports_reach_backends_over_every_otlp_protocol;
mod exports_survive_a_backend_outage_and_a_restart;
mod jaeger_query_api_answers_as_jaeger_does;
mod live_answers_equal_the_file_doctors;
mod python_sdk_spans_come_back_losslessly;
mod rust_sdk_spans_come_back_losslessly;
mod store_keeps_what_it_acknowledges;
mod tempo_clients_read_agentrace;
mod ui_api_answers_connected_traces_and_filtered_lists;
mod ui_needs_the_bearer_token_when_one_is_set;
mod ui_renders_span_values_as_text;
mod ui_shows_the_repaired_trace_and_its_diagnosis;
mod ui_works_by_keyboard_and_passes_axe;
mod zipkin_senders_reach_agentrace;
