//! After a `-u` handoff the old process may hold WebSocket tunnels for up to
//! `server.tunnel_grace_period`, but its admin listener went to the new
//! process with the other sockets. So the old process writes its tunnel
//! count next to the upgrade socket (`<upgrade_sock>.tunnels`, "pid count",
//! refreshed every second) and the new process's `/metrics` reports it as
//! `gatehouse_upgrade_old_process_tunnels`. The file goes when the old
//! process exits; a stale one (not refreshed for 3 s) counts as nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const FRESH: Duration = Duration::from_secs(3);

pub(crate) fn tunnels_file(upgrade_sock: &str) -> PathBuf {
    PathBuf::from(format!("{upgrade_sock}.tunnels"))
}

/// The old process: how many tunnels it still holds.
pub(crate) fn write_old_tunnels(path: &Path, count: i64) {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let text = format!("{} {count}\n", std::process::id());
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The new process: the old one's tunnels, 0 without a fresh file.
pub(crate) fn read_old_tunnels(path: &Path) -> i64 {
    let fresh = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < FRESH);
    if !fresh {
        return 0;
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_reads_back_while_fresh() {
        let dir = std::env::temp_dir().join(format!("gh-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = tunnels_file(dir.join("up.sock").to_str().expect("utf-8"));
        assert_eq!(read_old_tunnels(&f), 0);
        write_old_tunnels(&f, 3);
        assert_eq!(read_old_tunnels(&f), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
