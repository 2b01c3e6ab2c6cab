//! Where an export's queries run: in this process, or on a Ballista cluster
//! (`[engine] ballista = "df://host:50050"`, or `--engine` on `run` and `plan`).

use serde::Deserialize;

use super::storage::Cloud;

/// The scheduler port Ballista listens on unless told otherwise.
#[cfg(feature = "ballista")]
const DEFAULT_SCHEDULER_PORT: u16 = 50050;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct EngineWire {
    /// The scheduler of a Ballista cluster, `df://host:port`.
    ballista: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    InProcess,
    /// A Ballista scheduler.
    #[cfg(feature = "ballista")]
    Ballista(Scheduler),
}

/// A Ballista scheduler's address, as `df://host:port`.
#[cfg(feature = "ballista")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduler {
    pub host: String,
    pub port: u16,
}

#[cfg(feature = "ballista")]
impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "df://{}:{}", self.host, self.port)
    }
}

impl Engine {
    pub(super) fn check(wire: EngineWire) -> Result<Self, String> {
        wire.ballista.map_or(Ok(Engine::InProcess), |url| Self::parse(&url))
    }

    /// `df://host[:port]` (a Ballista scheduler) or `in-process`.
    pub fn parse(text: &str) -> Result<Self, String> {
        const FORMS: &str = "write `df://HOST:PORT` (a Ballista scheduler) or `in-process`";
        let text = text.trim();
        if text == "in-process" {
            return Ok(Engine::InProcess);
        }
        let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e}); {FORMS}"))?;
        if url.scheme() != "df" {
            return Err(format!("`{text}` is not a Ballista scheduler; {FORMS}"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{text}` names no host; {FORMS}"))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
            return Err(format!("`{text}` holds more than a host and port; {FORMS}"));
        }
        #[cfg(not(feature = "ballista"))]
        return Err(format!(
            "`{host}` is a Ballista scheduler, which needs a cm-export built with Ballista support: \
             `cargo install --path . --features ballista`"
        ));
        #[cfg(feature = "ballista")]
        Ok(Engine::Ballista(Scheduler {
            host: host.to_owned(),
            port: url.port().unwrap_or(DEFAULT_SCHEDULER_PORT),
        }))
    }

    /// The cluster the queries run on; `None` in process.
    pub fn cluster(&self) -> Option<String> {
        match self {
            Engine::InProcess => None,
            #[cfg(feature = "ballista")]
            Engine::Ballista(scheduler) => Some(scheduler.to_string()),
        }
    }

    /// Whether this engine can read a source in `cloud` (`None`: a local path). Stock
    /// Ballista executors read local files, S3 and HTTP(S) only.
    pub fn reads(&self, cloud: Option<Cloud>) -> Result<(), String> {
        match (self, cloud) {
            #[cfg(feature = "ballista")]
            (Engine::Ballista(scheduler), Some(cloud @ (Cloud::Azure | Cloud::Gcs))) => Err(format!(
                "cannot read `source.path`: stock Ballista executors read local paths, s3:// and https://, \
                 not {}; run this export in process, or copy the snapshot to S3 for {scheduler}",
                cloud.name()
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedulers_are_df_urls_with_a_default_port() {
        assert_eq!(Engine::parse("in-process"), Ok(Engine::InProcess));
        for (text, why) in [
            ("http://host:50050", "is not a Ballista scheduler"),
            ("df://", "names no host"),
            ("df://host:50050/db", "more than a host and port"),
            ("host:50050", "is not a Ballista scheduler"),
            ("nonsense", "is not a URL"),
        ] {
            let error = Engine::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
        #[cfg(feature = "ballista")]
        {
            let Ok(Engine::Ballista(scheduler)) = Engine::parse("df://cluster.internal") else {
                panic!("a host alone is a scheduler");
            };
            assert_eq!(scheduler.to_string(), "df://cluster.internal:50050");
            assert!(Engine::Ballista(scheduler).reads(Some(Cloud::Azure)).is_err());
        }
        #[cfg(not(feature = "ballista"))]
        {
            assert!(
                Engine::parse("df://host:50050")
                    .unwrap_err()
                    .contains("--features ballista")
            );
        }
    }
}
