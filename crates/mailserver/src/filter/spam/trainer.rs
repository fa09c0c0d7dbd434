//! Junk training off the request path: IMAP hands each message filed into
//! or out of `Junk` to [`Trainer::submit`], which queues it (bounded in
//! messages and bytes) for one background thread. The thread learns each
//! message into the in-memory model and writes the model file at most once
//! per [`SAVE_DELAY`] (atomically: temporary file, fsync, rename), so a
//! burst of moves by any number of users costs one write, never one per
//! message, and no IMAP session waits for either.
//!
//! A message submitted while the queue is full is not learned (logged);
//! learning is advisory, the move itself has already succeeded. See
//! docs/limits.md, "Junk training".

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::bayes::Classifier;

/// Messages waiting to be learned, at most.
pub const MAX_QUEUED: usize = 64;
/// Bytes of messages waiting to be learned, at most.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// The model is written this long after the first unsaved change.
pub const SAVE_DELAY: Duration = Duration::from_secs(2);

/// The handle of the training thread; dropping it saves and stops the thread.
#[derive(Debug)]
pub struct Trainer {
    tx: SyncSender<(Vec<u8>, bool)>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Trainer {
    /// Starts the thread that trains `classifier`.
    pub fn start(classifier: Arc<Classifier>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(MAX_QUEUED);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let bytes = queued_bytes.clone();
        std::thread::Builder::new()
            .name("junk-trainer".into())
            .spawn(move || run(&classifier, &rx, &bytes))?;
        Ok(Self { tx, queued_bytes })
    }

    /// Queues one message to be learned as spam or ham; false when the
    /// queue is full (the message is not learned).
    pub fn submit(&self, message: Vec<u8>, spam: bool) -> bool {
        let len = message.len();
        if self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_BYTES {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        match self.tx.try_send((message, spam)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                false
            }
        }
    }
}

fn run(classifier: &Classifier, rx: &Receiver<(Vec<u8>, bool)>, queued: &AtomicUsize) {
    let mut dirty: Option<Instant> = None;
    loop {
        let wait = dirty.map_or(Duration::from_secs(3600), |t| {
            SAVE_DELAY.saturating_sub(t.elapsed())
        });
        match rx.recv_timeout(wait) {
            Ok((message, spam)) => {
                queued.fetch_sub(message.len(), Ordering::AcqRel);
                match classifier.learn(&message, spam) {
                    Ok(()) => {
                        dirty.get_or_insert_with(Instant::now);
                    }
                    Err(e) => tracing::warn!(error = %e, spam, "junk training failed"),
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if dirty.take().is_some() {
                    save(classifier);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if dirty.is_some() {
                    save(classifier);
                }
                return;
            }
        }
        if dirty.is_some_and(|t| t.elapsed() >= SAVE_DELAY) {
            dirty = None;
            save(classifier);
        }
    }
}

fn save(classifier: &Classifier) {
    if let Err(e) = classifier.persist() {
        tracing::warn!(error = %e, "saving the trained spam model failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_off_thread_and_saves_once_after_the_delay() {
        let dir = std::env::temp_dir().join(format!("trainer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("bayes.json");
        let classifier = Arc::new(Classifier::open(Some(path.clone())).unwrap());
        let (spam0, _) = classifier.counts();
        let trainer = Trainer::start(classifier.clone()).unwrap();
        let started = Instant::now();
        for i in 0..20 {
            let m = format!("Subject: cheap pills {i}\r\n\r\nbuy cheap pills now\r\n");
            assert!(trainer.submit(m.into_bytes(), true));
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "submit does not wait"
        );
        let deadline = Instant::now() + SAVE_DELAY * 3;
        while classifier.counts().0 < spam0 + 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(classifier.counts().0, spam0 + 20, "all learned");
        assert!(!path.exists(), "not written per message");
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(path.exists(), "written once after the delay");
        let reloaded = Classifier::open(Some(path)).unwrap();
        assert_eq!(reloaded.counts().0, spam0 + 20);
        // Too large for the byte bound: refused, not queued.
        assert!(!trainer.submit(vec![b'x'; MAX_QUEUED_BYTES + 1], false));
        drop(trainer);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
