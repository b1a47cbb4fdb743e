//! `herald-testcert DIR`: writes a fresh self-signed certificate for
//! `localhost` and `127.0.0.1` (`DIR/cert.pem`) and its private key
//! (`DIR/key.pem`), for the TLS tests of the compatibility suite (node has
//! no certificate generator of its own). Test use only.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .context("usage: herald-testcert DIR")?;
    let dir = std::path::PathBuf::from(dir);
    let (cert, key) = herald_testkit::self_signed_certificate()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("cert.pem"), cert).context("cannot write cert.pem")?;
    std::fs::write(dir.join("key.pem"), key).context("cannot write key.pem")?;
    Ok(())
}
