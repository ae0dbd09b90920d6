//! The doctor's integration tests, one module per claim, in one test binary (`[[test]]`
//! `integration` in Cargo.toml, with `autotests = false`): each file of this
//! directory was a binary of its own, and compiling the shared helpers into each and linking each
//! against the same dependencies was most of what building them cost.
//! A new file here is a module of this list, or it is never compiled:
//! `every_test_file_is_a_module_of_its_crates_test_binary` (in the CLI's) says so.

mod common;

mod agent_frameworks_are_read_as_they_record;
mod agent_graph_rolls_up_tokens_and_cost;
mod busy_systems_tie_nothing_by_time_alone;
mod cut_agent_trees_come_back_whole_after_repair;
mod every_evidence_tier_finds_and_joins_its_break;
mod failures_are_blamed_where_they_started;
mod golden_outputs_match_for_every_fixture;
mod healthy_traces_give_no_findings;
mod orphan_consumer_is_joined_to_its_producer;
mod real_libraries_are_diagnosed_truthfully;
mod tool_call_ids_in_model_output_join_a_tool_root;
mod traces_left_out_make_no_answer_surer;
