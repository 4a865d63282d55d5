//! The `Store` contract against every engine: `engine::property`, one test each.
//!
//! Adding an engine: a function answering a `Subject` (a fresh, empty store), and one
//! `store_conformance!` line. PostgreSQL runs against a throwaway real server
//! (`bitmail_tests::postgres`).

use bitmail_tests::store_conformance;
use bitmail_tests::store_engines::{embedded, memory, postgres, proxy_to_embedded};

store_conformance!(memory, memory());
store_conformance!(embedded, embedded());
store_conformance!(proxy_to_embedded, proxy_to_embedded());
store_conformance!(postgres, postgres());
