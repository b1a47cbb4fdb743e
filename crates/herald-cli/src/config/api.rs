//! The HTTP server API's settings: its key (`api_key`, `--api-key`,
//! `HERALD_API_KEY`) and its body limit (`api_max_body`). Without a key the
//! API is not mounted.

use herald::api::{ApiKey, ApiOptions};

use super::FileConfig;
use crate::ServeArgs;

/// The API's options, or `None` when no key is set.
pub(super) fn resolve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<ApiOptions>> {
    let Some(key) = args.api_key.as_ref().or(file.api_key.as_ref()) else {
        if file.api_max_body.is_some() {
            anyhow::bail!("api_max_body is set but the API is off: set api_key too");
        }
        return Ok(None);
    };
    let key = ApiKey::new(key).map_err(|_| anyhow::anyhow!("api_key must not be empty"))?;
    let mut options = ApiOptions::new(key);
    if let Some(n) = file.api_max_body {
        if n == 0 {
            anyhow::bail!("api_max_body must be greater than zero");
        }
        options = options.max_body(n);
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text).unwrap()
    }

    #[test]
    fn without_a_key_the_api_is_off() {
        assert!(resolve(&ServeArgs::default(), &file("")).unwrap().is_none());
        assert!(resolve(&ServeArgs::default(), &file("api_max_body = 10")).is_err());
    }

    #[test]
    fn the_flag_overrides_the_file() {
        let f = file("api_key = \"from-file\"\napi_max_body = 4096");
        let args = ServeArgs {
            api_key: Some("from-flag".into()),
            ..ServeArgs::default()
        };
        let from_flag = resolve(&args, &f).unwrap().unwrap();
        assert!(from_flag.key().matches(b"from-flag"));
        let from_file = resolve(&ServeArgs::default(), &f).unwrap().unwrap();
        assert!(from_file.key().matches(b"from-file"));
        let empty = ServeArgs {
            api_key: Some(String::new()),
            ..ServeArgs::default()
        };
        assert!(resolve(&empty, &f).is_err());
    }
}
