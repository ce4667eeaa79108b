//! A running batch system of [`Actor`]s, for benches that drive it directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::{create_system_with_config, BasicMailbox, BatchRouter, BatchSystem, Config};

use crate::actor::{Actor, ActorBuilder};

/// A spawned batch system of [`Actor`]s with a shared handled-message counter.
pub struct ActorSystem {
    /// The router to send through.
    pub router: BatchRouter<Actor, Actor>,
    system: BatchSystem<Actor, Actor>,
    counter: Arc<AtomicU64>,
}

impl ActorSystem {
    /// Spawns a system with `cfg` and registers actors `0..actors`.
    ///
    /// # Panics
    ///
    /// Panics if the system cannot be spawned.
    pub fn start(cfg: &Config, actors: u64) -> ActorSystem {
        let (control_tx, control) = Actor::new();
        let (router, mut system) =
            create_system_with_config::<Actor, Actor>(cfg, control_tx, control);
        let (done_tx, _done_rx) = crossbeam_channel::bounded(1);
        // No exact target: benches wait on the counter instead.
        let builder = ActorBuilder::new(128, u64::MAX, done_tx);
        let counter = builder.counter();
        system.spawn("bench".to_owned(), builder).expect("spawn");
        let mailboxes = (0..actors)
            .map(|addr| {
                let (tx, actor) = Actor::new();
                (addr, BasicMailbox::new(tx, actor))
            })
            .collect();
        router.register_all(mailboxes);
        ActorSystem {
            router,
            system,
            counter,
        }
    }

    /// Messages handled so far (updated once per poll round).
    pub fn handled(&self) -> u64 {
        self.counter.load(Ordering::Acquire)
    }

    /// Waits until at least `n` messages have been handled.
    ///
    /// # Panics
    ///
    /// Panics after five minutes (a lost message).
    pub fn wait_handled(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.handled() < n {
            assert!(Instant::now() < deadline, "messages lost");
            std::thread::yield_now();
        }
    }

    /// Shuts the system down.
    pub fn shutdown(mut self) {
        self.system.shutdown();
    }
}
