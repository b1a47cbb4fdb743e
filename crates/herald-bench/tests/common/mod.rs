//! Shared by the suites that run `herald-bench` against a real `herald
//! serve`: where the server binary is.

use std::path::PathBuf;

/// The `herald` binary the suites start: `HERALD_BIN`, or the workspace's
/// debug build (scripts/test.sh builds it before the tests). Panics, saying
/// how to build it, when it is not there.
pub fn herald_bin() -> PathBuf {
    let path = match std::env::var_os("HERALD_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("debug")
            .join("herald"),
    };
    assert!(
        path.exists(),
        "{} not built (cargo build --workspace --bins, or set HERALD_BIN)",
        path.display()
    );
    path
}
