//! Identifiers for runs, incidents, deliveries and traces: ULIDs from one
//! process-wide monotonic generator.
//!
//! Why not `Ulid::new()`: the store keys runs, jobs and deliveries by id,
//! and key order is taken as time order — the queue picks up the jobs left
//! at a restart in key order, listings are newest first by key, pruning
//! walks deliveries oldest first. Two independent ULIDs made in the same
//! millisecond sort at random (at a few thousand accepts per second, most
//! jobs share their millisecond with another), and a wall clock stepped
//! back makes new ids sort before older ones. From one generator each id
//! sorts after every id made before it in this process: within a
//! millisecond the random part counts up, and after a step back ids keep
//! the last time until the clock passes it again.

use std::sync::Mutex;
use ulid::{Generator, Ulid};

static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// A new id, greater than every id this function returned before.
pub fn next() -> Ulid {
    let mut generator = match GENERATOR.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    // Overflow needs 2^80 ids in one millisecond; fall back all the same.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_back_to_back_sort_in_the_order_they_were_made() {
        // Thousands of ids share each millisecond here.
        let ids: Vec<String> = (0..20_000).map(|_| next().to_string()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn ids_from_several_threads_are_all_distinct() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| next()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<Ulid> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
