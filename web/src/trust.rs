//! What a message says of itself that a reader should weigh: for received mail, the
//! provider's SPF/DKIM/spam verdicts and the warnings the server raised (outside mail
//! claiming our own domain, failed checks, spam); for sent mail, a status that is only
//! the last known one, and what the providers reported after sending.

use leptos::prelude::*;
use serde_json::Value;

use crate::state::Ctx;

/// Warnings first (`#origin-warnings`), then the verdicts on one line (`#verdicts`).
pub fn origin(ctx: Ctx, origin: &Value) -> impl IntoView + use<> {
    let warnings: Vec<String> = origin["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let verdicts: Vec<(String, String)> = origin["verdicts"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    view! {
        {(!warnings.is_empty()).then(|| view! {
            <div class="flash err" id="origin-warnings" role="alert">
                {warnings.into_iter().map(|w| {
                    let key: &'static str = match w.as_str() {
                        "claims_local_domain" => "warn_claims_local",
                        "failed_checks" => "warn_failed_checks",
                        "spam" => "warn_spam",
                        _ => "warn_other",
                    };
                    view! { <p data-warning=w>{ctx.text(key)}</p> }
                }).collect_view()}
            </div>
        })}
        {(!verdicts.is_empty()).then(|| {
            let line = verdicts.iter().map(|(k, v)| format!("{}: {v}", k.to_uppercase())).collect::<Vec<_>>().join(" · ");
            view! { <div class="meta hint" id="verdicts">{ctx.text("verdicts")} " " {line.clone()}</div> }
        })}
    }
}

/// The degraded note (`#status-note`) and the providers' reports (`#delivery-events`).
pub fn delivery_details(ctx: Ctx, status: &Value) -> impl IntoView + use<> {
    let degraded = status["degraded"].as_bool().unwrap_or(false);
    let events = status["events"].as_array().cloned().unwrap_or_default();
    view! {
        {degraded.then(|| view! { <p class="hint" id="status-note">{ctx.text("status_last_known")}</p> })}
        {(!events.is_empty()).then(|| view! {
            <ul class="hint" id="delivery-events">{events.into_iter().map(|e| {
                let at = e["at_ms"].as_f64().unwrap_or(0.0);
                let kind = e["kind"].as_str().unwrap_or_default().to_owned();
                let recipient = e["recipient"].as_str().unwrap_or_default().to_owned();
                let detail = e["detail"].as_str().unwrap_or_default().to_owned();
                view! {
                    <li data-kind=kind.clone()>
                        {ctx.date(at)} " · " {kind.clone()} " · " {recipient}
                        {(!detail.is_empty()).then(|| format!(" · {detail}"))}
                    </li>
                }
            }).collect_view()}</ul>
        })}
    }
}
