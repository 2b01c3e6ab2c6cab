//! Snapshots in object stores: the store a `[source] path` URL names, built with the
//! `object_store` crate DataFusion uses. Credentials come from each cloud's usual places
//! (the `AWS_*` variables and profile files, `AZURE_STORAGE_*`, `GOOGLE_APPLICATION_CREDENTIALS`
//! or `GOOGLE_SERVICE_ACCOUNT`, and the machine's identity where the crate supports it);
//! `[source.storage]` adds non-secret options and names the variables of secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use url::Url;

use super::SourceError;
use crate::config::{Cloud, Storage, env_secret};

/// A snapshot's store, and where in it the snapshot is.
pub struct Remote {
    /// `scheme://authority`: what the store is registered under in the session.
    pub base: Url,
    /// The path inside the store, without a leading `/`, globs as written.
    pub key: String,
    pub store: Arc<dyn ObjectStore>,
}

/// Builds the store of `path` (a URL of `cloud`). Errors name the URL and the variable at
/// fault, never a secret.
pub fn open(path: &str, cloud: Cloud, storage: &Storage) -> Result<Remote, SourceError> {
    let error = |why: String| SourceError::Store {
        path: path.to_owned(),
        why: crate::error_text::hide_queries(&why),
    };
    let url = Url::parse(path).map_err(|e| error(format!("not a valid URL: {e}")))?;
    let base = Url::parse(&url[..url::Position::BeforePath]).map_err(|e| error(e.to_string()))?;
    // Percent-escapes stay as written: the store takes the key as the URL spells it.
    let key = url.path().trim_start_matches('/').to_owned();
    let store: Arc<dyn ObjectStore> = match cloud {
        Cloud::S3 => Arc::new(s3(path, storage).map_err(error)?),
        Cloud::Azure => Arc::new(azure(path, storage).map_err(error)?),
        Cloud::Gcs => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(path)
                .build()
                .map_err(|e| error(e.to_string()))?,
        ),
        Cloud::Http => {
            let loopback = match url.host() {
                Some(url::Host::Domain(name)) => name == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if url.scheme() == "http" && !loopback && !storage.allow_http {
                return Err(error(
                    "plain http would carry the snapshot unencrypted; use https, or `allow-http = true` in [source.storage] for a server you trust".to_owned(),
                ));
            }
            let options = object_store::ClientOptions::new().with_allow_http(url.scheme() == "http");
            Arc::new(
                HttpBuilder::new()
                    .with_url(base.as_str())
                    .with_client_options(options)
                    .build()
                    .map_err(|e| error(e.to_string()))?,
            )
        }
    };
    Ok(Remote { base, key, store })
}

/// The value of the variable `[source.storage] {key}` names.
fn secret(key: &str, name: &Option<String>) -> Result<Option<String>, String> {
    let Some(name) = name else { return Ok(None) };
    env_secret(name)
        .map(Some)
        .map_err(|missing| format!("`source.storage.{key}` names the environment variable `{name}`, which {missing}"))
}

fn s3(path: &str, storage: &Storage) -> Result<object_store::aws::AmazonS3, String> {
    let mut builder = AmazonS3Builder::from_env().with_url(path);
    let key_id = secret("access-key-id-env", &storage.access_key_id_env)?;
    let secret_key = secret("secret-access-key-env", &storage.secret_access_key_env)?;
    let token = secret("session-token-env", &storage.session_token_env)?;
    match (key_id, secret_key) {
        (Some(id), Some(key)) => {
            builder = builder.with_access_key_id(id).with_secret_access_key(key);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        // A profile named here first; then the variables, as every AWS tool reads them; then
        // `AWS_PROFILE` or `default`; then the machine's role.
        _ if storage.profile.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_none() => {
            let profile = storage
                .profile
                .clone()
                .or_else(|| std::env::var("AWS_PROFILE").ok())
                .unwrap_or_else(|| "default".to_owned());
            let named = storage.profile.is_some() || std::env::var_os("AWS_PROFILE").is_some();
            match profile_credentials(&profile)? {
                Some(found) => {
                    builder = builder
                        .with_access_key_id(found.key_id)
                        .with_secret_access_key(found.secret_key);
                    if let Some(token) = found.token {
                        builder = builder.with_token(token);
                    }
                    if let Some(region) = found.region.filter(|_| std::env::var_os("AWS_REGION").is_none()) {
                        builder = builder.with_region(region);
                    }
                }
                None if named => {
                    return Err(format!(
                        "the AWS profile `{profile}` has no `aws_access_key_id` and `aws_secret_access_key` in {}",
                        aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials").display()
                    ));
                }
                None => {}
            }
        }
        _ => {}
    }
    if let Some(region) = &storage.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &storage.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if storage.allow_http {
        builder = builder.with_allow_http(true);
    }
    builder.build().map_err(|e| e.to_string())
}

fn azure(path: &str, storage: &Storage) -> Result<object_store::azure::MicrosoftAzure, String> {
    let mut builder = MicrosoftAzureBuilder::from_env().with_url(path);
    if let Some(account) = &storage.account_name {
        builder = builder.with_account(account);
    }
    if let Some(key) = secret("account-key-env", &storage.account_key_env)? {
        builder = builder.with_access_key(key);
    }
    if let Some(sas) = secret("sas-token-env", &storage.sas_token_env)? {
        builder = builder.with_config(AzureConfigKey::SasKey, sas);
    }
    if let Some(endpoint) = &storage.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if storage.allow_http {
        builder = builder.with_allow_http(true);
    }
    builder.build().map_err(|e| e.to_string())
}

struct ProfileCredentials {
    key_id: String,
    secret_key: String,
    token: Option<String>,
    region: Option<String>,
}

fn aws_file(variable: &str, name: &str) -> PathBuf {
    std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".aws").join(name)
    })
}

/// A profile's keys from the shared credentials file, and its region from the config file.
fn profile_credentials(profile: &str) -> Result<Option<ProfileCredentials>, String> {
    read_profile(
        profile,
        &aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        &aws_file("AWS_CONFIG_FILE", "config"),
    )
}

fn read_profile(profile: &str, credentials: &Path, config: &Path) -> Result<Option<ProfileCredentials>, String> {
    let read = |path: &Path| -> Result<Option<ini::Ini>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => ini::Ini::load_from_str(&text)
                .map(Some)
                .map_err(|e| format!("cannot read the AWS file {}: {e}", path.display())),
            Err(_) => Ok(None),
        }
    };
    let credentials = read(credentials)?;
    let config = read(config)?;
    let config_section = match profile {
        "default" => "default".to_owned(),
        other => format!("profile {other}"),
    };
    let region = config
        .as_ref()
        .and_then(|c| c.section(Some(config_section.as_str())))
        .and_then(|s| s.get("region"))
        .map(str::to_owned);
    let Some(section) = credentials.as_ref().and_then(|c| c.section(Some(profile))) else {
        return Ok(None);
    };
    let (Some(key_id), Some(secret_key)) = (section.get("aws_access_key_id"), section.get("aws_secret_access_key"))
    else {
        return Ok(None);
    };
    Ok(Some(ProfileCredentials {
        key_id: key_id.to_owned(),
        secret_key: secret_key.to_owned(),
        token: section.get("aws_session_token").map(str::to_owned),
        region,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &str, cloud: Cloud, storage: &Storage) -> String {
        match open(path, cloud, storage) {
            Ok(_) => panic!("{path} opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_plain_http_off_loopback_and_names_unset_variables() {
        let plain = error("http://files.example.com/a.parquet", Cloud::Http, &Storage::default());
        assert!(
            plain.contains("plain http would carry the snapshot unencrypted"),
            "{plain}"
        );
        for loopback in [
            "http://127.0.0.1:8000/a.parquet",
            "http://[::1]:8000/a.parquet",
            "http://localhost/a.parquet",
        ] {
            assert!(open(loopback, Cloud::Http, &Storage::default()).is_ok(), "{loopback}");
        }
        let remote = open(
            "https://files.example.com/data/a.parquet",
            Cloud::Http,
            &Storage::default(),
        )
        .unwrap();
        assert_eq!(
            (remote.base.as_str(), remote.key.as_str()),
            ("https://files.example.com/", "data/a.parquet")
        );

        let storage = Storage {
            access_key_id_env: Some("CM_EXPORT_TEST_UNSET_ID".into()),
            secret_access_key_env: Some("CM_EXPORT_TEST_UNSET_SECRET".into()),
            ..Storage::default()
        };
        let unset = error("s3://bucket/p/", Cloud::S3, &storage);
        assert!(
            unset.contains("`s3://bucket/p/`")
                && unset.contains("`source.storage.access-key-id-env` names the environment variable `CM_EXPORT_TEST_UNSET_ID`, which is not set"),
            "{unset}"
        );
    }

    #[test]
    fn a_named_profile_is_read_from_the_aws_files() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(&credentials, "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[analytics]\naws_access_key_id = A\naws_secret_access_key = AS\naws_session_token = T\n").unwrap();
        std::fs::write(&config, "[profile analytics]\nregion = eu-central-1\n").unwrap();
        let found = read_profile("analytics", &credentials, &config).unwrap().unwrap();
        assert_eq!(
            (
                found.key_id.as_str(),
                found.secret_key.as_str(),
                found.token.as_deref(),
                found.region.as_deref()
            ),
            ("A", "AS", Some("T"), Some("eu-central-1"))
        );
        assert!(read_profile("other", &credentials, &config).unwrap().is_none());
    }
}
