//! mta-server's own tests, one test binary: a module per subject (the binary as a process,
//! its command line, a delivery round with fakes, kill -9 and restart, property tests of
//! the parsers, the provider check, SNS, tenants).

mod binary;
mod command_line;
mod delivery_round;
mod kill_and_restart;
mod parsers;
mod provider_check;
mod sns;
mod tenant;
