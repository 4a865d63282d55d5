//! Tenants, API keys, the one key check and quotas.

pub mod domain;
pub mod key;
pub mod model;

pub use key::{ApiKey, Scope};
pub use model::{Invalid, Quotas, Tenant, TenantState};
