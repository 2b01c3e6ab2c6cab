use std::path::PathBuf;

/// Why a pipeline or connection definition cannot be used. Each names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is empty (still being written?); it must define the connections", path.display())]
    EmptyFile { path: PathBuf },
    #[error("failed to parse `{}`", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("`{}`: `{key}` {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "no connections file found (looked for {}); pass --connections FILE or set CM_EXPORT_CONNECTIONS",
        searched.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    NoConnectionsFile { searched: Vec<PathBuf> },
    #[error("connection `{name}` is not defined in `{}` (defined: {available})", path.display())]
    UnknownConnection {
        name: String,
        path: PathBuf,
        available: String,
    },
    #[error(
        "connection `{name}` in `{}` has no data-privacy consent: set `data-privacy-consent = true` once the owner agrees that profile data, personal data included, is sent to Campaign Monitor; nothing was sent",
        path.display()
    )]
    NoConsent { name: String, path: PathBuf },
    #[error("connection `{connection}`: {message}")]
    Secret { connection: String, message: String },
}

impl ConfigError {
    pub(super) fn invalid(path: &std::path::Path, key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}
