//! Stable-toolchain fuzzers for the decoders that read what peers send:
//! the inbound frame parser (`herald_protocol::inbound`), the broker
//! envelope decoder (`herald::Publication::decode`) and JWT verification
//! (`herald::AuthEngine::verify_offline`, the checks of `verify` without a JWKS).
//!
//! # Why this harness
//!
//! `cargo fuzz` (libFuzzer) needs a nightly toolchain for its `-Z` flags,
//! and AFL++ (`cargo afl`) needs AFL++ itself built with compiler plugins
//! for rustc's LLVM; a fresh machine of this project has one stable
//! toolchain and cannot fetch another, so neither would run in CI, and a
//! fuzzer that only runs on one developer's machine guards nothing.
//! `bolero` reaches coverage through the same two engines (via
//! `cargo bolero`); run as a plain test on stable it generates inputs
//! without coverage, as this crate does. So this crate is a plain binary
//! on stable Rust, built and run like any other part of the suite, and
//! makes up for the missing coverage guidance with what it knows of the
//! formats:
//!
//! * **structured generators** ([`generate`]) that know each format (every
//!   protocol event with its data shapes, every JSON number form, batches,
//!   deep nesting; every envelope kind; JWTs with every header trick,
//!   some correctly signed so verification reaches the claim checks);
//! * **mutations** ([`mutate`]) of a seed corpus (the socketcluster
//!   capture in `corpus/`, plus generated inputs kept in a rolling pool)
//!   with byte edits, splices and a dictionary of format tokens;
//! * **deterministic runs**: one `--seed` reproduces a run; a failing
//!   input is written to a file and `--replay FILE` runs it alone.
//!
//! Each input runs under `catch_unwind` (a panic is a failure, with the
//! input saved), and a counting global allocator ([`alloc`]) measures the
//! most bytes the input made the decoder hold at once: over
//! `64 × input length + 64 KiB` the run fails, since a peer could
//! multiply that by sending the input again.
//!
//! `scripts/fuzz.sh [INPUTS]` runs every target; the figures of the last
//! long run are in docs/benchmarks.md ("Fuzzing").

pub mod alloc;
pub mod corpus;
pub mod generate;
pub mod mutate;
pub mod runner;
pub mod targets;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;
