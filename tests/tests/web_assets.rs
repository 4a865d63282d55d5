//! The webmail as a first visit downloads it: the page and every asset it names, with
//! brotli (as browsers ask), cache headers, and the total compressed size within budget.

mod common;

use std::time::Duration;

use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, sendgrid};

/// The first visit's budget, compressed (the goal).
const BUDGET_BYTES: usize = 150 * 1024;

/// `/assets/...` names in a text (the page, or the boot script's `./name` imports).
fn asset_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in text.split(['"', '\'']) {
        let name = piece.trim_start_matches("/assets/").trim_start_matches("./");
        if (piece.starts_with("/assets/") || piece.starts_with("./")) && !name.is_empty() {
            out.push(name.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn a_first_visit_is_small_compressed_and_cacheable() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_webmail(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))]).await;
    let (http, base) = cluster.https_client();

    let page = http.get(format!("{base}/")).header("accept-encoding", "br, gzip").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let mut total = page.bytes().await.unwrap().len();

    // The same page uncompressed, to read the names it loads.
    let plain = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    let mut names = asset_names(&plain);
    assert!(names.iter().any(|n| n.ends_with(".css")), "{plain}");
    let mut seen = std::collections::HashSet::new();
    let mut report = Vec::new();
    while let Some(name) = names.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let url = format!("{base}/assets/{name}");
        let compressed = http.get(&url).header("accept-encoding", "br, gzip").send().await.unwrap();
        assert_eq!(compressed.status(), 200, "{name}");
        assert_eq!(compressed.headers()["cache-control"], "public, max-age=31536000, immutable", "{name}");
        let encoding = compressed.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_owned());
        let size = compressed.bytes().await.unwrap().len();
        total += size;
        report.push(format!("{name}: {size} bytes ({})", encoding.as_deref().unwrap_or("identity")));
        if name.ends_with(".js") {
            let text = http.get(&url).send().await.unwrap().text().await.unwrap();
            // The boot script names the module and the WebAssembly.
            if text.len() < 1000 {
                names.extend(asset_names(&text));
            }
        }
    }
    assert!(seen.iter().any(|n| n.ends_with(".wasm")), "the WebAssembly is loaded: {seen:?}");
    println!("first visit, brotli: {total} bytes\n  {}", report.join("\n  "));
    assert!(total < BUDGET_BYTES, "first visit downloads {total} bytes, over {BUDGET_BYTES}: {report:?}");

    let missing = http.get(format!("{base}/assets/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
