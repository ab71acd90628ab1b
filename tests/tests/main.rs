//! The one end-to-end test binary: real binaries on 127.0.0.1. Each capability is a module.

mod adversarial;
mod chats;
mod cluster;
mod declared_jobs;
mod desired;
mod desired_watch;
mod direct_nat;
mod fleet_fanout;
mod git_network;
mod hardening_bundle;
mod hardening_files;
mod hardening_git;
mod mapreduce;
mod mcp_http;
mod mcp_surface;
mod net_rpc;
mod node;
mod plan_sandbox;
mod relay_binary;
mod relay_conformance;
mod rollout;
mod schedules;
mod tasks;
mod transfer;
