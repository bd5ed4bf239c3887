//! `scale-probe DIR [--parse-only]`: the standalone proxy's load path (proxy/src/source/
//! manifests.rs: every *.yaml, *.yml, *.json directly in DIR, not hidden, sorted; parse;
//! Snapshot; compile; validate), each phase timed, then the compiled config serialized as the
//! operator publishes it (operator/src/publish.rs: canonical JSON; gzipped at the best level
//! from 512 KiB on; refused over 1 MiB). Prints one JSON object on stdout. The allocator is the
//! proxy's (mimalloc).

use flate2::{Compression, write::GzEncoder};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

// As the proxy (proxy/src/main.rs): the load path allocates through mimalloc there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// operator/src/publish.rs: GZIP_THRESHOLD, MAX_CONFIG_MAP_BYTES, GZIP_KEY.
const GZIP_THRESHOLD: usize = 512 * 1024;
const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;
const GZIP_KEY: &str = "gateway-config.json.gz";

fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            !name.starts_with('.')
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the proxy (proxy/src/main.rs): with THP, mimalloc's arenas cost more kernel time
    // zeroing 2 MiB pages than the phases measured here.
    rustix::thread::disable_transparent_huge_pages(true)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().ok_or("usage: scale-probe DIR [--parse-only]")?);
    let parse_only = args.iter().any(|a| a == "--parse-only");

    let t = Instant::now();
    let files = manifest_files(&dir)?;
    let mut texts = Vec::with_capacity(files.len());
    for f in &files {
        texts.push((f.display().to_string(), std::fs::read_to_string(f)?));
    }
    let read_ms = ms(t);
    let input_bytes: usize = texts.iter().map(|(_, s)| s.len()).sum();

    let t = Instant::now();
    let mut resources = Vec::new();
    for (origin, text) in &texts {
        resources.extend(portico_crds::parse_manifests(origin, text)?);
    }
    let parse_ms = ms(t);
    let objects = resources.len();
    if parse_only {
        println!(
            "{{\"files\":{},\"input_bytes\":{input_bytes},\"objects\":{objects},\"read_ms\":{read_ms:.1},\"parse_ms\":{parse_ms:.1},\"peak_rss_kib\":{}}}",
            files.len(),
            peak_rss_kib()
        );
        return Ok(());
    }

    let t = Instant::now();
    let snapshot = portico_crds::Snapshot::from_resources(resources);
    let snapshot_ms = ms(t);

    let t = Instant::now();
    let compiled = portico_crds::compile(&snapshot);
    let compile_ms = ms(t);
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = compiled.diagnostics.len() - errors;
    if let Some(d) = compiled.diagnostics.iter().find(|d| d.is_error()) {
        eprintln!("scale-probe: first error: {} {}: {}", d.object, d.field, d.message);
    }

    let t = Instant::now();
    let valid = compiled.config.validate().is_ok();
    let validate_ms = ms(t);

    let t = Instant::now();
    let json = compiled.config.to_json();
    // The compiled config as a file (`portico-proxy --config FILE`: the proxy's memory
    // without the standalone parse).
    if let Ok(path) = std::env::var("PROBE_WRITE_CONFIG") {
        std::fs::write(path, &json)?;
    }
    let json_ms = ms(t);

    let t = Instant::now();
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(json.as_bytes())?;
    let gzipped = gz.finish()?.len();
    let gzip_ms = ms(t);
    let (published, encoding) = if json.len() < GZIP_THRESHOLD {
        (json.len(), "json")
    } else {
        (gzipped, "gzip")
    };
    let fits = encoding == "json" || gzipped + GZIP_KEY.len() <= MAX_CONFIG_MAP_BYTES;

    println!(
        "{{\"files\":{},\"input_bytes\":{input_bytes},\"objects\":{objects},\"read_ms\":{read_ms:.1},\"parse_ms\":{parse_ms:.1},\"snapshot_ms\":{snapshot_ms:.1},\"compile_ms\":{compile_ms:.1},\"validate_ms\":{validate_ms:.1},\"to_json_ms\":{json_ms:.1},\"gzip_ms\":{gzip_ms:.1},\"errors\":{errors},\"warnings\":{warnings},\"valid\":{valid},\"json_bytes\":{},\"gzip_bytes\":{gzipped},\"published_bytes\":{published},\"published_as\":\"{encoding}\",\"fits_one_configmap\":{fits},\"peak_rss_kib\":{}}}",
        files.len(),
        json.len(),
        peak_rss_kib()
    );
    Ok(())
}
