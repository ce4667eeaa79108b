//! Generates the Rust modules for `proto/*.proto` with protobuf-codegen-pure.
//!
//! No system `protoc` is needed. `eraftpb.proto` is taken from the sources of
//! the `raft-proto` crate that this build resolves to and is used only as an
//! include path: it is never generated again, so the generated code refers to
//! `super::eraftpb::*`, which the crate maps to `raft::eraftpb`. The
//! directory is found with `cargo metadata` (offline), else from the
//! `Cargo.lock` version and cargo's registry source cache, or taken from
//! `KVPROTO_LITE_ERAFTPB_DIR` when that is set.
//!
//! The generated files' inner attributes (`#![allow(...)]`, `//!`) are
//! removed so each file can be `include!`d by a module in `src/`, which
//! carries the module docs and the lint allowances for generated code.
//!
//! Build scripts report failures by panicking; every panic here says what
//! went wrong and what to check.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our schemas, in the order their modules are declared.
///
/// `kvrpcpb` and `transportpb` also define the gRPC services (client to
/// store, store to store). protobuf-codegen-pure reads `service` blocks but
/// generates nothing for them; the service code is written by hand in
/// `src/grpc.rs` (behind the `grpc` feature) and checked against these files
/// by the `service_contract` test.
const PROTOS: [&str; 6] = [
    "metapb",
    "errorpb",
    "raft_serverpb",
    "raft_cmdpb",
    "kvrpcpb",
    "transportpb",
];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let proto_dir = manifest_dir.join("proto");

    let raft_proto_include = raft_proto_dir();
    let eraftpb = raft_proto_include.join("eraftpb.proto");
    if !eraftpb.is_file() {
        panic!(
            "kvproto-lite: {} does not exist; the raft-proto crate sources are expected to ship \
             proto/eraftpb.proto (or set {ERAFTPB_DIR_VAR} to a directory holding it)",
            eraftpb.display()
        );
    }

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let inputs: Vec<PathBuf> = PROTOS
        .iter()
        .map(|name| proto_dir.join(format!("{name}.proto")))
        .collect();
    for input in &inputs {
        println!("cargo:rerun-if-changed={}", input.display());
    }

    let gen_dir = out_dir.join("protos");
    if let Err(e) = std::fs::create_dir_all(&gen_dir) {
        panic!("kvproto-lite: cannot create {}: {e}", gen_dir.display());
    }
    let customize = protobuf_codegen_pure::Customize {
        gen_mod_rs: Some(false),
        ..Default::default()
    };
    if let Err(e) = protobuf_codegen_pure::Codegen::new()
        .out_dir(&gen_dir)
        .include(&proto_dir)
        .include(&raft_proto_include)
        .inputs(&inputs)
        .customize(customize)
        .run()
    {
        panic!("kvproto-lite: protobuf code generation failed: {e}");
    }

    if gen_dir.join("eraftpb.rs").exists() {
        panic!("kvproto-lite: eraftpb.rs was generated; eraftpb must only be an include path");
    }
    for name in PROTOS {
        strip_inner_attributes(&gen_dir.join(format!("{name}.rs")));
    }
}

/// Reads a variable cargo always sets for build scripts.
fn env_var(name: &str) -> String {
    match env::var(name) {
        Ok(v) => v,
        Err(e) => panic!("kvproto-lite: build script variable {name} is not set: {e}"),
    }
}

/// Environment variable that, when set, names the directory holding
/// `eraftpb.proto` and skips the `cargo metadata` lookup (for vendored or
/// unusual builds).
const ERAFTPB_DIR_VAR: &str = "KVPROTO_LITE_ERAFTPB_DIR";

/// Returns the `proto` directory of the `raft-proto` package in this build.
///
/// First asks `cargo metadata`; if that fails (it needs every package of the
/// whole workspace on disk, which a half-fetched workspace may not have),
/// falls back to the version pinned in `Cargo.lock` and cargo's registry
/// source cache.
fn raft_proto_dir() -> PathBuf {
    println!("cargo:rerun-if-env-changed={ERAFTPB_DIR_VAR}");
    if let Some(dir) = env::var_os(ERAFTPB_DIR_VAR) {
        return PathBuf::from(dir);
    }
    let from_metadata = match raft_proto_dir_from_metadata() {
        Ok(dir) => return dir,
        Err(e) => e,
    };
    match raft_proto_dir_from_lock_file() {
        Ok(dir) => dir,
        Err(from_lock) => panic!(
            "kvproto-lite: cannot find raft-proto's proto/eraftpb.proto.\n\
             - cargo metadata: {from_metadata}\n\
             - Cargo.lock and registry cache: {from_lock}\n\
             Run `cargo fetch`, or set {ERAFTPB_DIR_VAR} to a directory holding eraftpb.proto."
        ),
    }
}

/// Finds raft-proto with `cargo metadata --offline --filter-platform
/// $TARGET`: without the platform filter cargo would try to download
/// packages for every platform.
fn raft_proto_dir_from_metadata() -> Result<PathBuf, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = env_var("TARGET");
    let manifest = PathBuf::from(env_var("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &target])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run `{cargo} metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{cargo} metadata --offline --filter-platform {target}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed invalid JSON: {e}"))?;
    let packages = metadata
        .get("packages")
        .and_then(|p| p.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let manifest_paths: Vec<&str> = packages
        .iter()
        .filter(|p| p.get("name").and_then(|n| n.as_str()) == Some("raft-proto"))
        .filter_map(|p| p.get("manifest_path").and_then(|m| m.as_str()))
        .collect();
    match manifest_paths.as_slice() {
        [one] => match Path::new(one).parent() {
            Some(dir) => Ok(dir.join("proto")),
            None => Err(format!("raft-proto manifest path {one} has no parent")),
        },
        [] => Err("package raft-proto not in the `cargo metadata` output".to_owned()),
        many => panic!(
            "kvproto-lite: several raft-proto packages in the build ({many:?}); \
             RaftMessage.message must be exactly one raft::eraftpb::Message"
        ),
    }
}

/// Finds raft-proto from the version pinned in the nearest `Cargo.lock`
/// (this crate's or the workspace's) and cargo's registry source cache
/// (`$CARGO_HOME/registry/src/*/raft-proto-VERSION`).
fn raft_proto_dir_from_lock_file() -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let lock_path = manifest_dir
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no Cargo.lock in {} or above", manifest_dir.display()))?;
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let mut versions = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"raft-proto\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                versions.push(v.trim_matches('"').to_owned());
            }
        }
    }
    let version = match versions.as_slice() {
        [one] => one.clone(),
        [] => return Err(format!("raft-proto not in {}", lock_path.display())),
        many => {
            return Err(format!(
                "several raft-proto versions in {}: {many:?}",
                lock_path.display()
            ))
        }
    };
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry_src = cargo_home.join("registry").join("src");
    let registries = std::fs::read_dir(&registry_src)
        .map_err(|e| format!("cannot list {}: {e}", registry_src.display()))?;
    registries
        .filter_map(|entry| entry.ok())
        .map(|entry| {
            entry
                .path()
                .join(format!("raft-proto-{version}"))
                .join("proto")
        })
        .find(|dir| dir.join("eraftpb.proto").is_file())
        .ok_or_else(|| {
            format!(
                "raft-proto-{version} not found under {}",
                registry_src.display()
            )
        })
}

/// Removes the generated file's inner attributes (`#![...]`) and inner doc
/// comments (`//!`), so the file can be `include!`d inside a `mod` block whose
/// documentation and lint allowances live in the crate's own source.
fn strip_inner_attributes(path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!(
            "kvproto-lite: cannot read generated {}: {e}",
            path.display()
        ),
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let t = line.trim_start();
            !(t.starts_with("#![") || t.starts_with("//!"))
        })
        .collect();
    if let Err(e) = std::fs::write(path, kept.join("\n") + "\n") {
        panic!("kvproto-lite: cannot write {}: {e}", path.display());
    }
}
