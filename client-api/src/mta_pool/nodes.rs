//! The mta-servers of the configuration: `mta_url` (one) or `mta_urls` (several), each a
//! URL or a table naming its certificate name and node id; resolved into [`MtaNode`]s and
//! checked, every problem named by its key (`mta_urls[1]`).

use bitmail_runtime::grpc_tls::ClientTls;
use serde::Deserialize;

/// mta-server's address when neither `mta_url` nor `mta_urls` is set.
pub const DEFAULT_MTA_URL: &str = "http://127.0.0.1:50051";

/// One entry of `mta_urls`: a URL, or a table with its certificate name and node id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MtaNodeEntry {
    Url(String),
    Table(MtaNodeTable),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtaNodeTable {
    pub url: String,
    /// The name in this node's certificate; default: the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// This node's `[tenants] node_id`; default: the host's first label.
    #[serde(default)]
    pub node_id: Option<String>,
}

/// One mta-server as the edge reaches it: the key it came from (for messages), its
/// URL, the name its certificate must hold (None: its host), and its node id (the
/// `[tenants] node_id` its reports in the store carry).
#[derive(Debug, Clone, PartialEq)]
pub struct MtaNode {
    pub key: String,
    pub url: String,
    pub server_name: Option<String>,
    pub node_id: Option<String>,
}

impl MtaNode {
    /// How messages name the node: its node id, else its URL.
    pub fn name(&self) -> &str {
        self.node_id.as_deref().unwrap_or(&self.url)
    }
}

/// `mta-2` for `https://mta-2.internal:50051`; None for an IP address.
fn default_node_id(url: &str) -> Option<String> {
    let uri = url.parse::<tonic::transport::Uri>().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    host.split('.').next().filter(|l| !l.is_empty()).map(str::to_owned)
}

/// Every configured mta-server, in order: `mta_urls`, else `mta_url`, else
/// [`DEFAULT_MTA_URL`]. With one `mta_url`, `[mta_tls] server_name` is its name.
pub(crate) fn resolve(mta_url: &str, mta_urls: &[MtaNodeEntry], tls: Option<&ClientTls>) -> Vec<MtaNode> {
    if mta_urls.is_empty() {
        let url = if mta_url.is_empty() { DEFAULT_MTA_URL } else { mta_url };
        let server_name = tls.and_then(|t| t.server_name.clone());
        return vec![MtaNode {
            key: "mta_url".into(),
            url: url.to_owned(),
            server_name,
            node_id: default_node_id(url),
        }];
    }
    let node = |i: usize, url: &str, server_name: Option<String>, node_id: Option<String>| MtaNode {
        key: format!("mta_urls[{i}]"),
        url: url.to_owned(),
        server_name: server_name.or_else(|| tls.and_then(|t| t.server_name.clone()).filter(|_| mta_urls.len() == 1)),
        node_id: node_id.or_else(|| default_node_id(url)),
    };
    mta_urls
        .iter()
        .enumerate()
        .map(|(i, e)| match e {
            MtaNodeEntry::Url(url) => node(i, url, None, None),
            MtaNodeEntry::Table(t) => node(i, &t.url, t.server_name.clone(), t.node_id.clone()),
        })
        .collect()
}

pub(crate) fn check_upstream(field: &str, url: &str, problems: &mut Vec<String>) {
    match url.parse::<tonic::transport::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
        _ => problems.push(format!("{field}: `{url}` must be an http:// or https:// URL")),
    }
}

/// Every problem of the mta-server links at once.
pub(crate) fn check(mta_url: &str, mta_urls: &[MtaNodeEntry], tls: Option<&ClientTls>, problems: &mut Vec<String>) {
    if !mta_url.is_empty() && !mta_urls.is_empty() {
        problems.push(
            "mta_url and mta_urls: set one of them (mta_urls = [...] lists every mta-server, mta_url's too)".into(),
        );
    }
    if mta_urls.len() > 1
        && let Some(name) = tls.and_then(|t| t.server_name.as_ref())
    {
        problems.push(format!(
            "mta_tls.server_name: `{name}` cannot name several mta-servers; give each entry of mta_urls its own \
             ({{ url = \"...\", server_name = \"...\" }}), or let it default to the URL's host"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for node in resolve(mta_url, mta_urls, tls) {
        check_upstream(&node.key, &node.url, problems);
        let mut link = Vec::new();
        bitmail_runtime::grpc_tls::check_link(&node.key, &node.url, "mta_tls", tls, &mut link);
        for p in link {
            // A file of [mta_tls] is named once, not once per node.
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        if node.server_name.is_some() && tls.is_none() {
            problems.push(format!("{}.server_name: only with [mta_tls] (mutual TLS)", node.key));
        }
        match node.node_id.as_deref() {
            Some("") => problems.push(format!("{}.node_id: must not be empty", node.key)),
            Some(id) if !ids.insert(id.to_owned()) => {
                problems.push(format!("{}.node_id: `{id}` names another entry too", node.key))
            }
            _ => {}
        }
        if !seen.insert(node.url.clone()) {
            problems.push(format!("{}: `{}` is listed twice", node.key, node.url));
        }
    }
}
