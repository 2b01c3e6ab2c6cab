//! An on-demand run stops, as a scheduled one does, when an administrator removes its
//! destination: its definition file, its connection, or the connection's consent.

use std::path::PathBuf;
use std::time::Duration;

use super::options::StopReason;
use crate::config::Connections;

/// What a run watches.
#[derive(Debug, Clone)]
pub struct Destination {
    pub pipeline_file: PathBuf,
    pub connections_file: PathBuf,
    pub connection: String,
}

/// Resolves with [`StopReason::Cancel`] once the destination is gone; checks `every` so often.
pub async fn removed(destination: Destination, every: Duration) -> StopReason {
    loop {
        tokio::time::sleep(every).await;
        if let Some(why) = gone(&destination) {
            return StopReason::Cancel(why);
        }
    }
}

/// Why the destination is gone, if it is. A connections file that is there but does not
/// parse is being edited, not removed.
fn gone(destination: &Destination) -> Option<String> {
    if !destination.pipeline_file.exists() {
        return Some(format!(
            "its definition `{}` was removed",
            destination.pipeline_file.display()
        ));
    }
    let all = Connections::load_or_empty(&destination.connections_file).ok()?;
    all.usable(&destination.connection).err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_when_the_file_the_connection_or_its_consent_is() {
        let dir = tempfile::tempdir().unwrap();
        let destination = Destination {
            pipeline_file: dir.path().join("p.toml"),
            connections_file: dir.path().join("connections.toml"),
            connection: "cm".into(),
        };
        let connection =
            "[cm]\ndisplay-name = \"x\"\ndata-privacy-consent = true\napi-key-env = \"K\"\nexport-user = \"u\"\n";
        std::fs::write(&destination.pipeline_file, "").unwrap();
        std::fs::write(&destination.connections_file, connection).unwrap();
        assert_eq!(gone(&destination), None);

        std::fs::write(&destination.connections_file, "[cm\n").unwrap();
        assert_eq!(gone(&destination), None, "half-saved is not removed");
        std::fs::write(&destination.connections_file, "").unwrap();
        assert_eq!(gone(&destination), None, "emptied to be written is not removed");
        std::fs::write(
            &destination.connections_file,
            connection.replace("data-privacy-consent = true\n", ""),
        )
        .unwrap();
        assert!(gone(&destination).unwrap().contains("no data-privacy consent"));
        std::fs::write(&destination.connections_file, connection.replace("[cm]", "[other]")).unwrap();
        assert!(gone(&destination).unwrap().contains("connection `cm` is not defined"));
        std::fs::remove_file(&destination.connections_file).unwrap();
        let why = gone(&destination).unwrap();
        assert!(
            why.contains("connection `cm` is not defined") && why.contains("(defined: none)"),
            "{why}"
        );
        std::fs::remove_file(&destination.pipeline_file).unwrap();
        assert!(gone(&destination).unwrap().contains("p.toml` was removed"));
    }
}
