//! The cross-service tests, one test binary: each module was its own binary once, and each
//! linked every service, so the build spent minutes and gigabytes linking the same code
//! thirty times. A module per capability; `common` starts the services in-process,
//! `webdriver` drives a real Chromium.

mod common;
mod webdriver;

mod admin_api;
mod admin_console_browser;
mod app_api;
mod bad_input;
mod cluster;
mod delivery_events;
mod fail_over;
mod groups;
mod https_edge;
mod inbound_mail;
mod lists;
mod lists_api;
mod lists_console_browser;
mod lists_crash;
mod lists_pages;
mod load_limits;
mod mailgun;
mod metrics;
mod mutual_tls;
mod provider_health;
mod provider_limits;
mod rich_content;
mod scheduling;
mod ses;
mod several_mtas;
mod smtp_relay;
mod smtp_submission;
mod standard_grpc_services;
mod store_conformance;
mod store_crash;
mod store_over_grpc;
mod store_postgres;
mod store_postgres_standby;
mod store_postgres_tls;
mod store_proxy;
mod submit_over_grpc;
mod tenants;
mod unique_keys;
mod web_assets;
mod webmail_api;
mod webmail_browser;
mod webmail_live;
mod webmail_live_browser;
mod webmail_search;
mod whole_stack_faults;
