//! Deterministic randomness for generated data.
//!
//! The simulator's ground truth is only useful if the data a client downloads tomorrow is the data the
//! truth file described today, across processes, platforms and Rust releases. So generated records come
//! from a tiny, fully specified PRNG (SplitMix64) seeded from `(seed, api, day)`, never from `rand`'s
//! `StdRng` (whose algorithm may change between releases) or a `HashMap`'s random state. Fault injection,
//! which need not be reproducible, uses `rand` instead (see `faults`).

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, one multiply-xorshift finaliser per draw.
/// Fast, well distributed, and trivially reproducible in any language.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 finaliser: a bijective avalanche of a 64-bit value.
pub(crate) fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combines two values into one well-mixed seed (order matters: `mix(a, b) != mix(b, a)` in general).
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    finalize(finalize(a).wrapping_add(b.wrapping_mul(GOLDEN_GAMMA)) ^ 0x5851_f42d_4c95_7f2d)
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        finalize(self.state)
    }

    /// A value in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for the small `n` used here).
    /// `n` must be non-zero.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0) has no valid result");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A float in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice, uniformly.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3). Part of the truth contract:
/// day fingerprints are wrapping sums of this hash over the records' log lines.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A UUID-shaped (version 4 layout) request id derived from the seed and a request counter, so ids are
/// unique within a run without pulling in a UUID crate.
pub(crate) fn request_uuid(seed: u64, counter: u64) -> String {
    let hi = mix(seed ^ 0x7265_7175_6573_7420, counter);
    let lo = mix(hi, counter);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0x0fff,
        8 | ((lo >> 62) & 0x3),
        (lo >> 48) & 0x0fff,
        lo & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 0 (as published with the algorithm).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn fnv1a64_matches_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let mut r = SplitMix64::new(42);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn request_uuids_are_uuid_shaped_and_distinct() {
        let a = request_uuid(1, 1);
        let b = request_uuid(1, 2);
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}

/// A small cache of generated days, shared by the APIs: generating a day is real work (thousands
/// of records) and a paged walk asks for the same day many times. Bounded: the oldest entry goes.
#[derive(Debug)]
pub(crate) struct DayCache<K, V> {
    entries: std::sync::Mutex<std::collections::VecDeque<(K, std::sync::Arc<V>)>>,
    capacity: usize,
}

impl<K: PartialEq + Clone, V> DayCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// The value for `key`, generated by `make` on a miss. `make` runs outside the lock; two
    /// requests racing for one key both generate it, and one copy is kept.
    pub(crate) fn get_or_make(&self, key: K, make: impl FnOnce() -> V) -> std::sync::Arc<V> {
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, v)) = lock().iter().find(|(k, _)| *k == key) {
            return v.clone();
        }
        let value = std::sync::Arc::new(make());
        let mut entries = lock();
        if !entries.iter().any(|(k, _)| *k == key) {
            if entries.len() >= self.capacity {
                entries.pop_front();
            }
            entries.push_back((key, value.clone()));
        }
        value
    }
}

#[cfg(test)]
mod day_cache_tests {
    use super::DayCache;

    #[test]
    fn hits_do_not_regenerate_and_the_oldest_entry_goes() {
        let cache = DayCache::new(2);
        let made = std::cell::Cell::new(0);
        let get = |k: u32| {
            *cache.get_or_make(k, || {
                made.set(made.get() + 1);
                k * 10
            })
        };
        assert_eq!(get(1), 10);
        assert_eq!(get(1), 10);
        assert_eq!(get(2), 20);
        assert_eq!(get(3), 30);
        assert_eq!(get(1), 10);
        let made = made.get();
        assert_eq!(made, 4, "1 and 2 generated once each, 3 once, 1 again after eviction");
    }
}

/// Rendered response bodies, kept so that a page asked for again is sent, not built again.
///
/// Why: the simulator shares the machine with the client it serves, and in a benchmark run
/// rendering and gzip-compressing tracking pages took a third of the CPU of both processes together:
/// time a real vendor spends on its own machines. A page is a pure function of its key, so a
/// cached copy is byte for byte the page the key would render. Bounded by the bytes held: the
/// oldest entries go first, and a body larger than the whole bound is not kept.
#[derive(Debug)]
pub(crate) struct PageCache<K, V> {
    inner: std::sync::Mutex<PageCacheInner<K, V>>,
    max_bytes: usize,
}

#[derive(Debug)]
struct PageCacheInner<K, V> {
    map: std::collections::HashMap<K, (V, usize)>,
    order: std::collections::VecDeque<K>,
    bytes: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> PageCache<K, V> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            inner: std::sync::Mutex::new(PageCacheInner {
                map: std::collections::HashMap::new(),
                order: std::collections::VecDeque::new(),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PageCacheInner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock().map.get(key).map(|(v, _)| v.clone())
    }

    /// Keeps `value`, which holds `size` bytes, evicting the oldest entries to stay in bounds.
    pub(crate) fn insert(&self, key: K, value: V, size: usize) {
        if size > self.max_bytes {
            return;
        }
        let mut c = self.lock();
        if c.map.contains_key(&key) {
            return;
        }
        while c.bytes + size > self.max_bytes {
            let Some(old) = c.order.pop_front() else { break };
            if let Some((_, n)) = c.map.remove(&old) {
                c.bytes -= n;
            }
        }
        c.bytes += size;
        c.order.push_back(key.clone());
        c.map.insert(key, (value, size));
    }
}

#[cfg(test)]
mod page_cache_tests {
    use super::PageCache;

    #[test]
    fn keeps_pages_within_its_bytes_and_drops_the_oldest_first() {
        let cache = PageCache::new(10);
        cache.insert(1, "a", 4);
        cache.insert(2, "b", 4);
        assert_eq!((cache.get(&1), cache.get(&2)), (Some("a"), Some("b")));
        cache.insert(3, "c", 4);
        assert_eq!(cache.get(&1), None, "the oldest page made room");
        assert_eq!((cache.get(&2), cache.get(&3)), (Some("b"), Some("c")));
        cache.insert(4, "too big", 11);
        assert_eq!(cache.get(&4), None, "a page larger than the bound is not kept");
        assert_eq!(
            (cache.get(&2), cache.get(&3)),
            (Some("b"), Some("c")),
            "and evicts nothing"
        );
    }
}
