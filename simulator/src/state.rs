//! The simulator's state on disk, so a restarted `make dev` finds the WeChat it left.
//!
//! WeChat is a service that stays up while our worker restarts: the codes the worker pooled,
//! the followers it recorded, the menu it set and the broadcasts it sent are all still there
//! the next day. So `serve --state DIR` keeps everything the simulator knows (followers and
//! their inboxes, tags, codes, menus, mass jobs, the token and its serial, the clock offset; not
//! a test's injected faults) in `DIR/wxedge-sim.json`, beside the worker's own local state, and
//! loads it on the next start. Writes are whole-file and atomic (a temporary file renamed over
//! the old one): a crash leaves the previous state, never half of one. A change is on disk
//! within `SAVE_EVERY`; SIGTERM and SIGINT save before the process exits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use wxedge_core::config::AccountKind;

use crate::control::Shared;
use crate::sim::Sim;

pub const FILE: &str = "wxedge-sim.json";
/// Bumped when the saved shape changes incompatibly; an older file is then started afresh.
const FORMAT: u32 = 1;
/// How long a change may wait before it is written.
const SAVE_EVERY: Duration = Duration::from_millis(20);

#[derive(Serialize, Deserialize)]
struct Saved<S> {
    format: u32,
    sim: S,
}

/// The state file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// What was saved in `dir` for this account, if anything. A state saved for another account
/// (appid or kind) or in an older format is not loaded — the simulator starts afresh and says
/// why; a file that is not a simulator state at all is an error naming it.
pub fn load(dir: &Path, appid: &str, kind: AccountKind) -> Result<Option<Sim>> {
    let path = path_in(dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    #[derive(Deserialize)]
    struct Header {
        format: u32,
    }
    let header: Header =
        serde_json::from_slice(&text).with_context(|| format!("{} is not a simulator state; remove it (make reset) to start afresh", path.display()))?;
    if header.format != FORMAT {
        eprintln!("wxedge-sim: {} was saved in format {} (this simulator writes {FORMAT}); starting afresh", path.display(), header.format);
        return Ok(None);
    }
    let saved: Saved<Sim> = serde_json::from_slice(&text).with_context(|| format!("{} is damaged; remove it (make reset) to start afresh", path.display()))?;
    let mut sim = saved.sim;
    if sim.api.appid != appid || sim.kind != kind {
        eprintln!(
            "wxedge-sim: {} holds the {} account {}, not the {} account {appid}; starting afresh",
            path.display(),
            sim.kind.as_str(),
            sim.api.appid,
            kind.as_str()
        );
        return Ok(None);
    }
    sim.people.reindex();
    sim.qr.reindex();
    Ok(Some(sim))
}

/// The state as it is written.
pub fn encode(sim: &Sim) -> Vec<u8> {
    serde_json::to_vec(&Saved { format: FORMAT, sim }).expect("the simulator's state is plain data")
}

/// Writes `bytes` as the state in `dir`, atomically.
pub fn write(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = path_in(dir);
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
}

static STOPPING: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_stop_signal(_: libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Keeps `dir` up to date with the running simulator until SIGTERM or SIGINT, then saves once
/// more and ends the process.
pub fn keep(shared: Arc<Shared>, dir: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut last = encode(&shared.lock_unchanged());
    write(&dir, &last)?;
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
    }
    std::thread::Builder::new().name("state".into()).spawn(move || {
        let mut seen = shared.generation();
        loop {
            std::thread::sleep(SAVE_EVERY);
            let stopping = STOPPING.load(Ordering::SeqCst);
            let generation = shared.generation();
            if generation != seen || stopping {
                seen = generation;
                // Compared with what is on disk: a read-only request changes nothing to write.
                let now = encode(&shared.lock_unchanged());
                if now != last {
                    match write(&dir, &now) {
                        Ok(()) => last = now,
                        Err(e) => eprintln!("wxedge-sim: state not saved: {e:#}"),
                    }
                }
            }
            if stopping {
                std::process::exit(0);
            }
        }
    })?;
    Ok(())
}

/// Checks that `dir` can hold the state before anything starts.
pub fn check_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("--state {} is a file, not a folder", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wxedge_core::config::AccountKind;

    use super::*;
    use crate::api::Api;

    fn sim(appid: &str, kind: AccountKind) -> Sim {
        Sim::new(Api::new(appid, "s3cret"), kind, 3, 1, 1_000_000)
    }

    #[test]
    fn a_saved_state_comes_back_whole_and_indexed() {
        let dir = std::env::temp_dir().join(format!("wxedge-sim-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = sim("wx1234567890abcdef", AccountKind::Service);
        let code =
            s.qr.create(&json!({"action_name": "QR_STR_SCENE", "expire_seconds": 600, "action_info": {"scene": {"scene_str": "v:7"}}}), 1_000_000, &mut s.rng);
        let fresh = s.people.fresh_openid();
        s.people.follow(&fresh, crate::people::Origin::Search, 1_000_001);
        s.menus.create(&json!({"button": [{"type": "click", "name": "Today", "key": "TODAY"}]}));
        s.clock_offset = 3600;
        s.faults.0.push(crate::faults::Fault { path: "/cgi-bin/x".into(), errcode: Some(45009), remaining: 1, delay_ms: 0 });
        write(&dir, &encode(&s)).unwrap();

        let mut back = load(&dir, "wx1234567890abcdef", AccountKind::Service).unwrap().expect("loaded");
        assert_eq!(back.clock_offset, 3600);
        assert_eq!(back.menus.base.as_ref().map(|m| m.buttons.len()), Some(1), "the menu");
        assert_eq!(back.people.list.len(), 4);
        assert!(back.people.get(&fresh).is_some(), "the OpenID index is rebuilt");
        assert!(
            matches!(back.qr.lookup(code["url"].as_str().unwrap(), 1_000_100), crate::qr::Lookup::Found(c) if c.scene.key() == "v:7"),
            "the URL index is rebuilt"
        );
        assert!(back.faults.0.is_empty(), "injected faults end with their run");
        // What comes after the restart goes on from where the saved run stopped.
        let next = back.qr.create(&json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 1}}}), 1_000_200, &mut back.rng);
        assert_ne!(next["ticket"], code["ticket"]);

        assert!(load(&dir, "wx00000000000000ff", AccountKind::Service).unwrap().is_none(), "another account starts afresh");
        assert!(load(&dir, "wx1234567890abcdef", AccountKind::Subscription).unwrap().is_none(), "another kind starts afresh");
        std::fs::write(path_in(&dir), b"{\"format\": 0, \"sim\": 1}").unwrap();
        assert!(load(&dir, "wx1234567890abcdef", AccountKind::Service).unwrap().is_none(), "an older format starts afresh");
        std::fs::write(path_in(&dir), b"not json").unwrap();
        let e = load(&dir, "wx1234567890abcdef", AccountKind::Service).err().unwrap().to_string();
        assert!(e.contains("is not a simulator state") && e.contains(FILE), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load(&dir, "wx1234567890abcdef", AccountKind::Service).unwrap().is_none(), "no state yet");
    }
}
