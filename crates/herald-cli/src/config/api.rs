//! The HTTP server API's settings: its key (`api_key`, `--api-key`,
//! `HERALD_API_KEY`) and its body limit (`api_max_body`). Without a key the
//! API is not mounted.

use herald::api::{ApiKey, ApiOptions};

use super::FileConfig;

/// The API's options, or `None` when no key is set; an error names its
/// key.
pub(super) fn options(file: &FileConfig) -> Result<Option<ApiOptions>, (&'static str, String)> {
    let Some(key) = &file.api_key else {
        if file.api_max_body.is_some() {
            return Err((
                "api_max_body",
                "api_max_body is set but the API is off: set api_key too".into(),
            ));
        }
        return Ok(None);
    };
    let key = ApiKey::new(key).map_err(|e| ("api_key", e.to_string()))?;
    let mut options = ApiOptions::new(key);
    if let Some(n) = file.api_max_body {
        if n == 0 {
            return Err(("api_max_body", "must be greater than zero".into()));
        }
        options = options.max_body(n);
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::super::resolve::load_layers;
    use super::*;
    use crate::config::layer::Layer;

    fn settings(text: &str, env: &[(&str, &str)]) -> Result<Option<ApiOptions>, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_layers(
            Some((std::path::Path::new("t.toml"), text)),
            env,
            Layer::default(),
        )
        .map(|r| r.settings.api)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn without_a_key_the_api_is_off() {
        assert!(settings("", &[]).unwrap().is_none());
        let e = settings("api_max_body = 10", &[]).unwrap_err();
        assert!(e.contains("api_max_body"), "{e}");
        let e = settings("api_key = \"\"", &[]).unwrap_err();
        assert!(e.contains("api_key"), "{e}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let text = "api_key = \"from-file\"\napi_max_body = 4096";
        let from_file = settings(text, &[]).unwrap().unwrap();
        assert!(from_file.key().matches(b"from-file"));
        let from_env = settings(text, &[("HERALD_API_KEY", "from-env")])
            .unwrap()
            .unwrap();
        assert!(from_env.key().matches(b"from-env"));
        assert!(!from_env.key().matches(b"from-file"));
    }
}
