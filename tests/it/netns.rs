//! Network namespaces that a test creates (and deletes) to run real daemons on addresses
//! of their own, and the daemons' process groups. Never touches the host's own network.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::harness::signal_group;

/// A network namespace, deleted on drop (declare it before what runs inside it, so that it
/// is dropped after them).
pub(crate) struct Netns {
    /// Its name under /run/netns.
    pub(crate) name: String,
}

impl Netns {
    /// A new namespace with loopback up and 10.99.0.N/32 on it for each N of `hosts`; None
    /// (skip) when namespaces are not available (not root, no iproute2) outside CI.
    pub(crate) fn create(hosts: &[u8]) -> Option<Netns> {
        let skip = |why: String| {
            assert!(
                std::env::var_os("CI").is_none(),
                "{why}; CI must have it (root, iproute2)"
            );
            eprintln!("network namespace: {why}: SKIPPING");
            None
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pdtest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if !ip(&["netns", "add", &name]) {
            return skip("cannot create a network namespace (not root?)".to_owned());
        }
        let ns = Netns { name };
        assert!(ip(&["-n", &ns.name, "link", "set", "lo", "up"]));
        for host in hosts {
            let addr = format!("10.99.0.{host}/32");
            assert!(ip(&["-n", &ns.name, "addr", "add", &addr, "dev", "lo"]));
        }
        Some(ns)
    }

    /// A command run inside the namespace, in its own process group.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program])
            .stdin(Stdio::null())
            .process_group(0);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Moves the calling thread into namespace `name`.
pub(crate) fn enter(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A child process group, ended on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
}

impl Daemon {
    /// SIGTERM, and wait up to 10 s for it to exit; true when it did.
    pub(crate) fn stop(&mut self) -> bool {
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.stop();
            signal_group(self.child.id(), "KILL");
            let _ = self.child.wait();
        }
    }
}
