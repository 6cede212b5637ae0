//! A core held for the reload path. While a feed is loaded and a table built, the UDP
//! workers of each address gather on one worker (see `server::steer`), so that on a
//! machine saturated with queries the build has a core to itself instead of a third of
//! one, and a new feed goes live within a second of its rename (issue 13). Queries keep
//! being answered by the one worker meanwhile; the others come back when the build ends
//! and the load calls for them.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static HOLDS: AtomicUsize = AtomicUsize::new(0);

/// Holds a core while it lives.
#[derive(Debug)]
#[must_use = "the core is released when the hold is dropped"]
pub struct Hold(());

impl Hold {
    /// Holds a core until the returned value is dropped.
    pub fn start() -> Hold {
        HOLDS.fetch_add(1, Relaxed);
        Hold(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLDS.fetch_sub(1, Relaxed);
    }
}

/// Whether some reload step holds a core now.
pub fn held() -> bool {
    HOLDS.load(Relaxed) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_as_long_as_its_value() {
        // Other tests may hold it too, so only what this one holds is certain.
        let a = Hold::start();
        let b = Hold::start();
        assert!(held());
        drop(a);
        assert!(held());
        drop(b);
    }
}
