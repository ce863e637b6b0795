//! Credentials and endpoints, from the variables the official CLI reads (through a lookup
//! the caller gives: forge's CLI reads the environment in one place).

use std::fmt;

/// An API key pair. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub key: String,
    secret: String,
}

impl Credentials {
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// The secret, for signing only.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Where and as whom forge talks to Exoscale.
#[derive(Debug, Clone)]
pub struct Config {
    pub credentials: Credentials,
    pub zone: String,
    /// API base URL ending in `/v2`. `{zone}` is replaced by the zone.
    pub api_endpoint: String,
    /// SOS (S3) endpoint. `{zone}` is replaced by the zone.
    pub sos_endpoint: String,
}

/// Default zone when neither the environment nor platform.toml names one (the CLI's).
pub const DEFAULT_ZONE: &str = "ch-dk-2";
pub const DEFAULT_API_ENDPOINT: &str = "https://api-{zone}.exoscale.com/v2";
pub const DEFAULT_SOS_ENDPOINT: &str = "https://sos-{zone}.exo.io";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no Exoscale API key: set EXOSCALE_API_KEY and EXOSCALE_API_SECRET (an IAM key of the organisation to deploy into)"
    )]
    MissingKey,
    #[error("EXOSCALE_API_KEY is set but EXOSCALE_API_SECRET is not: set both")]
    MissingSecret,
}

/// Every variable [`Config::from_lookup`] and [`crate::ClientOptions::from_lookup`] read.
pub const ENV_VARS: &[&str] = &[
    "EXOSCALE_API_KEY",
    "EXOSCALE_KEY",
    "EXOSCALE_API_SECRET",
    "EXOSCALE_SECRET",
    "EXOSCALE_SECRET_KEY",
    "EXOSCALE_ZONE",
    "EXOSCALE_API_ENDPOINT",
    "EXOSCALE_SOS_ENDPOINT",
    "EXOSCALE_STORAGE_API_ENDPOINT",
    "FORGE_EXOSCALE_RETRY_MIN_MS",
    "FORGE_EXOSCALE_POLL_MIN_MS",
];

fn first_env(names: &[&str], get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    names.iter().find_map(|n| get(n).filter(|v| !v.is_empty()))
}

impl Config {
    /// Reads `EXOSCALE_API_KEY` (or `EXOSCALE_KEY`), `EXOSCALE_API_SECRET` (or
    /// `EXOSCALE_SECRET`, `EXOSCALE_SECRET_KEY`), `EXOSCALE_ZONE`, `EXOSCALE_API_ENDPOINT`,
    /// `EXOSCALE_SOS_ENDPOINT` (or `EXOSCALE_STORAGE_API_ENDPOINT`) through `get` (every
    /// name is in [`ENV_VARS`]). `zone` (from platform.toml) is used when `EXOSCALE_ZONE`
    /// is unset.
    pub fn from_lookup(
        zone: Option<&str>,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let key = first_env(&["EXOSCALE_API_KEY", "EXOSCALE_KEY"], get);
        let secret = first_env(
            &[
                "EXOSCALE_API_SECRET",
                "EXOSCALE_SECRET",
                "EXOSCALE_SECRET_KEY",
            ],
            get,
        );
        let (key, secret) = match (key, secret) {
            (Some(k), Some(s)) => (k, s),
            (None, _) => return Err(ConfigError::MissingKey),
            (Some(_), None) => return Err(ConfigError::MissingSecret),
        };
        let zone = first_env(&["EXOSCALE_ZONE"], get)
            .or_else(|| zone.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_ZONE.to_string());
        let api_endpoint = first_env(&["EXOSCALE_API_ENDPOINT"], get)
            .unwrap_or_else(|| DEFAULT_API_ENDPOINT.to_string());
        let sos_endpoint = first_env(
            &["EXOSCALE_SOS_ENDPOINT", "EXOSCALE_STORAGE_API_ENDPOINT"],
            get,
        )
        .unwrap_or_else(|| DEFAULT_SOS_ENDPOINT.to_string());
        Ok(Self {
            credentials: Credentials::new(key, secret),
            zone,
            api_endpoint,
            sos_endpoint,
        })
    }

    /// The API base URL for `zone` (`https://api-ZONE.exoscale.com/v2`). An endpoint without
    /// `{zone}` (an emulator, a proxy) is used as is for every zone.
    pub fn api_url(&self, zone: &str) -> String {
        with_zone(&self.api_endpoint, zone)
    }

    pub fn sos_url(&self, zone: &str) -> String {
        with_zone(&self.sos_endpoint, zone)
    }
}

fn with_zone(template: &str, zone: &str) -> String {
    let url = template.replace("{zone}", zone);
    url.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_the_cli_variables_and_their_aliases() {
        let c = Config::from_lookup(
            Some("de-fra-1"),
            &lookup(&[
                ("EXOSCALE_KEY", "EXOabc"),
                ("EXOSCALE_SECRET_KEY", "s3cret"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.credentials.key, "EXOabc");
        assert_eq!(c.zone, "de-fra-1");
        assert_eq!(
            c.api_url("de-fra-1"),
            "https://api-de-fra-1.exoscale.com/v2"
        );
        assert_eq!(c.sos_url("de-fra-1"), "https://sos-de-fra-1.exo.io");
        assert!(!format!("{c:?}").contains("s3cret"));

        let c = Config::from_lookup(
            Some("de-fra-1"),
            &lookup(&[
                ("EXOSCALE_API_KEY", "EXOk"),
                ("EXOSCALE_API_SECRET", "s"),
                ("EXOSCALE_ZONE", "ch-gva-2"),
                ("EXOSCALE_API_ENDPOINT", "http://127.0.0.1:9/v2/"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.zone, "ch-gva-2");
        assert_eq!(c.api_url("ch-gva-2"), "http://127.0.0.1:9/v2");
    }

    #[test]
    fn missing_credentials_are_named() {
        let e = Config::from_lookup(None, &lookup(&[]))
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("EXOSCALE_API_KEY"));
        let e = Config::from_lookup(None, &lookup(&[("EXOSCALE_API_KEY", "k")]))
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("EXOSCALE_API_SECRET"));
    }
}
