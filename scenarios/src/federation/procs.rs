//! Every child process of a run is registered so that a signal can end them all, and dies with
//! the harness (`PR_SET_PDEATHSIG`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn register(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(pid as i32);
}

pub(crate) fn unregister(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| *p != pid as i32);
}

/// On SIGINT/SIGTERM: SIGKILL every registered child and exit 130.
pub(crate) fn install_signal_watcher() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(|| {
        loop {
            if STOP.load(Ordering::SeqCst) {
                let pids = PIDS.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for pid in pids {
                    // SAFETY: signalling our own children by pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                eprintln!(
                    "interrupted: ended {} child processes",
                    PIDS.lock().map_or(0, |p| p.len())
                );
                std::process::exit(130);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// A command whose process is SIGKILLed when the harness dies.
pub(crate) fn child_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: prctl in the forked child before exec; no allocation, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}
