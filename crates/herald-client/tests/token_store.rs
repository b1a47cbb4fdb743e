//! The file token store: round trip, atomic replacement, permissions.

use herald_client::{FileTokenStore, TokenStore};

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "herald-token-store-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn file_store_round_trip() {
    let dir = temp_dir();
    let path = dir.join("a").join("b").join("token");
    let store = FileTokenStore::new(&path);
    assert_eq!(store.path(), path);
    assert_eq!(store.load().unwrap(), None, "no file yet");
    store.remove().unwrap(); // removing nothing is fine

    store.save("first.token.sig").unwrap();
    assert_eq!(store.load().unwrap().as_deref(), Some("first.token.sig"));
    store.save("second.token.sig").unwrap();
    assert_eq!(store.load().unwrap().as_deref(), Some("second.token.sig"));
    // A second store on the same file sees it (a later run of a CLI).
    assert_eq!(
        FileTokenStore::new(&path).load().unwrap().as_deref(),
        Some("second.token.sig")
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("token")]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Whitespace around a hand-edited token is ignored; an empty file is no token.
    std::fs::write(&path, "  edited.token.sig\n").unwrap();
    assert_eq!(store.load().unwrap().as_deref(), Some("edited.token.sig"));
    std::fs::write(&path, "\n").unwrap();
    assert_eq!(store.load().unwrap(), None);

    store.remove().unwrap();
    assert!(!path.exists());
    assert_eq!(store.load().unwrap(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_store_reports_io_errors() {
    let dir = temp_dir();
    // The "file" is a directory: loading and saving fail instead of panicking.
    let store = FileTokenStore::new(&dir);
    assert!(store.load().is_err());
    assert!(store.save("t").is_err());
    // The failed save leaves no temporary file.
    let leftovers = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
                && e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(&dir.file_name().unwrap().to_string_lossy().to_string())
        })
        .count();
    assert_eq!(leftovers, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
