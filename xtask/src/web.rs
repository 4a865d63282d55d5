//! `cargo xtask web`: the webmail (`web/`) built to WebAssembly into `target/web/`, and
//! again with the admin console (feature `console`) into `target/web/admin/`, installing
//! the wasm32 target, the locked wasm-bindgen CLI and wasm-opt when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::out::{say, tell};
use crate::{cargo, check, root, step, target_dir};

/// The version of `package` that Cargo.lock records.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock names no {package}")
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// FNV-1a, 64 bits: names a file after its content so it can be cached forever.
fn content_hash(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The pinned binaryen (wasm-opt) from npm. Debian's binaryen is too old: its wasm-opt
/// writes modules that fail in the browser.
const BINARYEN: &str = "binaryen@132.0.0";

/// wasm-opt from npm, installed into target/tools when missing; None without npm.
fn wasm_opt() -> Result<Option<PathBuf>> {
    let tools = target_dir().join("tools/binaryen");
    let bin = tools.join("node_modules/.bin/wasm-opt");
    if bin.exists() {
        return Ok(Some(bin));
    }
    if output_of(Command::new("npm").arg("--version")).is_none() {
        tell!("npm is missing: the webmail is built without wasm-opt (larger)");
        return Ok(None);
    }
    step(&format!("npm install {BINARYEN} (wasm-opt)"));
    std::fs::create_dir_all(&tools)?;
    check(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&tools)
            .arg(BINARYEN)
            .status(),
        "npm install binaryen",
    )?;
    Ok(Some(bin))
}

/// Builds the webmail into target/web and answers that folder.
pub(crate) fn web() -> Result<PathBuf> {
    let installed = output_of(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        step("rustup target add wasm32-unknown-unknown");
        check(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]).status(), "rustup target add")?;
    }
    let version = locked_version("wasm-bindgen")?;
    let have = output_of(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(version.as_str()) {
        // Without --locked: the CLI's own lock file names a crate version the registry
        // mirror here lacks.
        step(&format!("cargo install wasm-bindgen-cli --version {version} (a few minutes, once)"));
        check(
            Command::new("cargo").args(["install", "wasm-bindgen-cli", "--version", &version]).status(),
            "cargo install wasm-bindgen-cli",
        )?;
    }
    let wasm_opt = wasm_opt()?;

    // The webmail into target/web, then the same with the admin console into
    // target/web/admin (only admins load it): one target dir, so the second build
    // reuses every dependency and recompiles only bitmail-web.
    let out = target_dir().join("web");
    let _ = std::fs::remove_dir_all(&out);
    bundle(&[], &out, "/", wasm_opt.as_deref())?;
    bundle(&["--features", "console"], &out.join("admin"), "/admin/", wasm_opt.as_deref())?;
    say!("  webmail built into {} (admin console in admin/)", out.display());
    Ok(out)
}

/// One bundle: bitmail-web built with `features`, through wasm-bindgen and wasm-opt,
/// into `out` (`index.html` and content-hashed `assets/`), its page naming the assets
/// under `base` (the path `out` is served at).
fn bundle(features: &[&str], out: &Path, base: &str, wasm_opt: Option<&Path>) -> Result<()> {
    let build = ["build", "-p", "bitmail-web", "--target", "wasm32-unknown-unknown", "--profile", "wasm-release"];
    step(&format!("cargo {}", [&build[..], features].concat().join(" ")));
    check(cargo().args(build).args(features).status(), "building the webmail")?;
    let target = target_dir();
    let built = target.join("wasm32-unknown-unknown/wasm-release/bitmail_web.wasm");
    let staging = target.join("web-bindgen");
    let _ = std::fs::remove_dir_all(&staging);
    step("wasm-bindgen --target web");
    check(
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(&staging)
            .arg(&built)
            .status(),
        "wasm-bindgen",
    )?;
    let wasm_path = staging.join("bitmail_web_bg.wasm");
    if let Some(wasm_opt) = wasm_opt {
        // `--converge` runs the passes again while they still shrink the module (about
        // 0.5 % more); the producers and target-features sections are for tools, not
        // for browsers.
        step("wasm-opt -Oz --converge");
        let features = [
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
        ];
        check(
            Command::new(wasm_opt)
                .args(["-Oz", "--converge", "--strip-producers", "--strip-target-features"])
                .args(features)
                .arg(&wasm_path)
                .arg("-o")
                .arg(&wasm_path)
                .status(),
            "wasm-opt",
        )?;
    }

    // Content-hashed names under assets/, and the page that names them.
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out.join("assets"))?;
    let write_hashed = |stem: &str, ext: &str, data: &[u8]| -> Result<String> {
        let name = format!("{stem}-{}.{ext}", content_hash(data));
        std::fs::write(out.join("assets").join(&name), data)?;
        say!("  {base}assets/{name:<40} {:>8} bytes", data.len());
        Ok(name)
    };
    let wasm = write_hashed("bitmail_web_bg", "wasm", &std::fs::read(&wasm_path)?)?;
    let js = write_hashed("bitmail_web", "js", &std::fs::read(staging.join("bitmail_web.js"))?)?;
    let style = write_hashed("style", "css", &std::fs::read(root().join("web/style.css"))?)?;
    let boot_js =
        format!("import init from './{js}';\ninit({{ module_or_path: new URL('./{wasm}', import.meta.url) }});\n");
    let boot = write_hashed("boot", "js", boot_js.as_bytes())?;
    let page = std::fs::read_to_string(root().join("web/index.html"))?
        .replace("{base}", base)
        .replace("{style}", &style)
        .replace("{js}", &js)
        .replace("{boot}", &boot);
    std::fs::write(out.join("index.html"), page)?;
    Ok(())
}
