//! Reader: drains the kernel ring buffer into the agent's queue.
//!
//! Owns the one rule that keeps the kernel side lossless for as long as
//! possible: the drain never blocks. Records are copied out (the ring slot
//! is released at once) and offered with `try_send`; what the queue has no
//! room for is counted, and the count is reported as a `drops` event.

use aya::maps::{MapData, RingBuf};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

/// The queue's byte budget, shared by the drain (adds) and the consumer
/// (subtracts once a record is processed): records are 100 bytes to 16 KiB,
/// so a count alone would not bound memory.
#[derive(Debug)]
pub struct QueueBudget {
    pub used: AtomicU64,
    pub limit: u64,
    /// Records dropped because the queue was full (count or bytes).
    pub overflow: AtomicU64,
}

impl QueueBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(QueueBudget { used: AtomicU64::new(0), limit, overflow: AtomicU64::new(0) })
    }

    /// Called by the consumer for each record it has finished with.
    pub fn release(&self, len: usize) {
        self.used.fetch_sub(len as u64, Ordering::Relaxed);
    }
}

/// How long a record may wait in the ring when the kernel did not wake us.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

pub struct Drain {
    ring: AsyncFd<RingBuf<MapData>>,
    tx: mpsc::Sender<Bytes>,
    budget: Arc<QueueBudget>,
}

impl Drain {
    pub fn new(ring: RingBuf<MapData>, tx: mpsc::Sender<Bytes>, budget: Arc<QueueBudget>) -> std::io::Result<Self> {
        // SAFETY: the ring owns its fd (MapData closes it on drop), and the
        // AsyncFd owns the ring, so the fd outlives the registration.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
        Ok(Drain { ring, tx, budget })
    }

    fn drain_ready(&mut self) -> usize {
        let mut n = 0;
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            let len = item.len() as u64;
            let b = &self.budget;
            if b.used.fetch_add(len, Ordering::Relaxed) + len > b.limit {
                b.used.fetch_sub(len, Ordering::Relaxed);
                b.overflow.fetch_add(1, Ordering::Relaxed);
                n += 1;
                continue;
            }
            let rec = Bytes::copy_from_slice(&item);
            drop(item);
            if self.tx.try_send(rec).is_err() {
                b.used.fetch_sub(len, Ordering::Relaxed);
                b.overflow.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        }
        n
    }

    /// Drains until `stop` turns true, then takes what is left in the ring
    /// and returns (dropping the sender ends the pipeline's input).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // the kernel wakes us only past a threshold (common.bpf.h): poll too
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    self.drain_ready();
                }
                guard = self.ring.readable_mut() => {
                    let mut guard = match guard {
                        Ok(g) => g,
                        Err(e) => {
                            crate::say!("mcp-sensor: polling the ring buffer failed: {e}");
                            return;
                        }
                    };
                    guard.clear_ready();
                    drop(guard);
                    self.drain_ready();
                }
                _ = stop.changed() => {
                    if *stop.borrow() {
                        while self.drain_ready() > 0 {}
                        return;
                    }
                }
            }
        }
    }
}
