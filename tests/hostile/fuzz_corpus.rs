//! The fuzz targets' known inputs on stable: every file of `fuzz/corpus/<target>/` (the seeds)
//! and `fuzz/regressions/<target>/` (inputs that once crashed a target) through the same
//! harness function the fuzzer runs, so that a parser regression on a known input fails the
//! normal suite without nightly or cargo-fuzz. `scripts/fuzz.sh` explores beyond them.

use std::path::{Path, PathBuf};

use cognito_gate::fuzz_harness::{genuine_tokens, token_acceptances, token_seeds, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs each input alone, so that a failure names the file that caused it.
fn replay(target: &str, run: fn(&[u8]), dir: &Path) -> usize {
    let inputs = files(&dir.join(target));
    for file in &inputs {
        let data = std::fs::read(file).expect("read input");
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("");
            panic!("{target}: {} fails: {why}", file.display());
        }
    }
    inputs.len()
}

#[test]
fn every_seed_input_passes_its_target() {
    for (target, run) in TARGETS {
        let n = replay(target, run, &fuzz_dir().join("corpus"));
        assert!(n > 0, "fuzz/corpus/{target} has no seed inputs");
    }
}

#[test]
fn every_regression_input_passes_its_target() {
    for (target, run) in TARGETS {
        replay(target, run, &fuzz_dir().join("regressions"));
    }
}

/// The token seeds are signed with the fixture key when the test runs (RS256 is deterministic):
/// the files must be exactly those, or the "never accepts a non-genuine token" invariant would
/// be checked against tokens the corpus does not hold. `FUZZ_WRITE_SEEDS=1` rewrites them.
#[test]
fn the_token_seeds_are_the_signed_fixtures() {
    let dir = fuzz_dir().join("corpus/token");
    let write = std::env::var_os("FUZZ_WRITE_SEEDS").is_some();
    for (name, bytes) in token_seeds() {
        let path = dir.join(&name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} differs from its seed (FUZZ_WRITE_SEEDS=1 rewrites it)",
            path.display()
        );
    }
    // The invariant is not vacuous: genuine tokens do get through the harness's verifier, under
    // the policies they satisfy, and the checks after the signature still refuse.
    let seeds: std::collections::HashMap<String, Vec<u8>> = token_seeds().into_iter().collect();
    for (name, policies) in [
        ("id.bearer", 1),
        ("id.raw", 1),
        ("id.json", 1),
        ("access.bearer", 2),
        ("access.raw", 2),
        ("access.json", 2),
        ("access-no-groups.bearer", 1),
        ("float-exp.bearer", 2),
        ("expired.bearer", 0),
        ("not-yet-valid.bearer", 0),
        ("other-client.bearer", 0),
        ("aud-array.bearer", 0),
        ("kid-k2.bearer", 0),
        ("alg-none.bearer", 0),
    ] {
        assert_eq!(token_acceptances(&seeds[name]), policies, "{name}");
    }
    assert_eq!(genuine_tokens().len(), 14);
}
