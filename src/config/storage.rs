//! `[source.storage]`: how to reach a snapshot in an object store. Non-secret options only;
//! secrets are named by the environment variable that holds them, never written here.

use serde::Deserialize;

/// The table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct StorageWire {
    /// The store's address, for S3-compatible servers and Azurite.
    endpoint: Option<String>,
    region: Option<String>,
    /// Plain http to `endpoint` (a local server).
    allow_http: Option<bool>,
    /// S3: a profile of `~/.aws/credentials` and `~/.aws/config`.
    profile: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    session_token_env: Option<String>,
    /// Azure: the storage account, when the URL does not name it.
    account_name: Option<String>,
    account_key_env: Option<String>,
    sas_token_env: Option<String>,
}

/// Which cloud a snapshot URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    S3,
    Azure,
    Gcs,
    Http,
}

impl Cloud {
    /// The cloud of a `[source] path` that is a URL; `None` for a local path.
    pub fn of(path: &str) -> Option<Result<Self, String>> {
        let (scheme, _) = path.split_once("://")?;
        Some(match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Ok(Cloud::S3),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Ok(Cloud::Azure),
            "gs" => Ok(Cloud::Gcs),
            "https" | "http" => Ok(Cloud::Http),
            other => Err(format!(
                "`{other}://` is not a store cm-export reads; use a local path, s3://, az://, abfss://, gs:// or https://"
            )),
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Cloud::S3 => "s3://",
            Cloud::Azure => "az:// and abfss://",
            Cloud::Gcs => "gs://",
            Cloud::Http => "https://",
        }
    }
}

/// Checked `[source.storage]`: the names of secret variables, never their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storage {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    pub profile: Option<String>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    pub account_name: Option<String>,
    pub account_key_env: Option<String>,
    pub sas_token_env: Option<String>,
}

impl Storage {
    /// Checks the table against the cloud the path names: `Err((key, message))`.
    pub(super) fn check(wire: StorageWire, cloud: Option<Cloud>) -> Result<Self, (String, String)> {
        let given: [(&str, bool, &[Cloud]); 10] = [
            ("endpoint", wire.endpoint.is_some(), &[Cloud::S3, Cloud::Azure]),
            ("region", wire.region.is_some(), &[Cloud::S3]),
            (
                "allow-http",
                wire.allow_http.is_some(),
                &[Cloud::S3, Cloud::Azure, Cloud::Http],
            ),
            ("profile", wire.profile.is_some(), &[Cloud::S3]),
            ("access-key-id-env", wire.access_key_id_env.is_some(), &[Cloud::S3]),
            (
                "secret-access-key-env",
                wire.secret_access_key_env.is_some(),
                &[Cloud::S3],
            ),
            ("session-token-env", wire.session_token_env.is_some(), &[Cloud::S3]),
            ("account-name", wire.account_name.is_some(), &[Cloud::Azure]),
            ("account-key-env", wire.account_key_env.is_some(), &[Cloud::Azure]),
            ("sas-token-env", wire.sas_token_env.is_some(), &[Cloud::Azure]),
        ];
        for (key, set, clouds) in given {
            let key_name = format!("source.storage.{key}");
            match cloud {
                _ if !set => {}
                None => {
                    return Err((
                        key_name,
                        "applies to snapshots in an object store, and `source.path` is a local path".to_owned(),
                    ));
                }
                Some(cloud) if !clouds.contains(&cloud) => {
                    return Err((
                        key_name,
                        format!(
                            "does not apply to {} paths (it is for {})",
                            cloud.name(),
                            clouds.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        for (key, name) in [
            ("access-key-id-env", &wire.access_key_id_env),
            ("secret-access-key-env", &wire.secret_access_key_env),
            ("session-token-env", &wire.session_token_env),
            ("account-key-env", &wire.account_key_env),
            ("sas-token-env", &wire.sas_token_env),
        ] {
            if let Some(name) = name
                && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err((
                    format!("source.storage.{key}"),
                    format!(
                        "is `{name}`; it names an environment variable (letters, digits, `_`), never the secret itself"
                    ),
                ));
            }
        }
        if wire.access_key_id_env.is_some() != wire.secret_access_key_env.is_some() {
            return Err((
                "source.storage".to_owned(),
                "names only one of `access-key-id-env` and `secret-access-key-env`; name both, or neither (the AWS_* variables and profile files are used then)".to_owned(),
            ));
        }
        Ok(Self {
            endpoint: wire.endpoint,
            region: wire.region,
            allow_http: wire.allow_http.unwrap_or(false),
            profile: wire.profile,
            access_key_id_env: wire.access_key_id_env,
            secret_access_key_env: wire.secret_access_key_env,
            session_token_env: wire.session_token_env,
            account_name: wire.account_name,
            account_key_env: wire.account_key_env,
            sas_token_env: wire.sas_token_env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, path: &str) -> Result<Storage, (String, String)> {
        let wire: StorageWire = toml::from_str(text).unwrap();
        Storage::check(wire, Cloud::of(path).transpose().unwrap())
    }

    #[test]
    fn options_are_checked_against_the_cloud_the_path_names() {
        assert_eq!(Cloud::of("s3://b/p/"), Some(Ok(Cloud::S3)));
        assert_eq!(Cloud::of("abfss://c@a.dfs.core.windows.net/p"), Some(Ok(Cloud::Azure)));
        assert_eq!(Cloud::of("gs://b/p"), Some(Ok(Cloud::Gcs)));
        assert_eq!(Cloud::of("https://h/f.parquet"), Some(Ok(Cloud::Http)));
        assert_eq!(Cloud::of("data/profiles"), None);
        assert!(
            Cloud::of("ftp://h/f")
                .unwrap()
                .unwrap_err()
                .contains("`ftp://` is not a store")
        );

        let s3 = check(
            "endpoint = \"http://127.0.0.1:9000\"\nallow-http = true\nregion = \"eu-west-1\"\naccess-key-id-env = \"K\"\nsecret-access-key-env = \"S\"",
            "s3://b/p/",
        )
        .unwrap();
        assert_eq!(
            (s3.endpoint.as_deref(), s3.allow_http, s3.access_key_id_env.as_deref()),
            (Some("http://127.0.0.1:9000"), true, Some("K"))
        );
        for (text, path, key, needle) in [
            (
                "account-key-env = \"K\"",
                "s3://b/p/",
                "source.storage.account-key-env",
                "does not apply to s3:// paths (it is for az:// and abfss://)",
            ),
            (
                "region = \"x\"",
                "data/profiles",
                "source.storage.region",
                "`source.path` is a local path",
            ),
            (
                "endpoint = \"http://x\"",
                "gs://b/p",
                "source.storage.endpoint",
                "does not apply to gs:// paths",
            ),
            (
                "access-key-id-env = \"K\"",
                "s3://b/p/",
                "source.storage",
                "names only one of",
            ),
            (
                "access-key-id-env = \"AKIA123 secret\"\nsecret-access-key-env = \"S\"",
                "s3://b/p/",
                "source.storage.access-key-id-env",
                "never the secret itself",
            ),
        ] {
            let (got_key, message) = check(text, path).unwrap_err();
            assert_eq!(got_key, key, "{text}");
            assert!(message.contains(needle), "{text}: {message}");
        }
        assert!(
            toml::from_str::<StorageWire>("acess-key-id-env = \"K\"").is_err(),
            "unknown keys are errors"
        );
    }
}
