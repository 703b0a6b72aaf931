//! A small bounded memo for per-isolate caches: at most `capacity` entries,
//! emptied when full. Keys are compared exactly, never by a hash alone, so an
//! entry can never be served for a key it was not made for.

pub struct Memo<K, V> {
    entries: Vec<(K, V)>,
    capacity: usize,
}

impl<K: PartialEq, V> Memo<K, V> {
    pub const fn new(capacity: usize) -> Self {
        Memo {
            entries: Vec::new(),
            capacity,
        }
    }

    /// The value kept for `key`, or `make(&key)` kept and returned.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce(&K) -> V) -> V
    where
        V: Clone,
    {
        if let Some(value) = self.get(&key) {
            return value.clone();
        }
        let value = make(&key);
        self.insert(key, value.clone());
        value
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exact_keys_up_to_its_capacity() {
        let mut memo = Memo::new(2);
        memo.insert("a", 1);
        memo.insert("b", 2);
        assert_eq!(
            (memo.get(&"a"), memo.get(&"b"), memo.get(&"c")),
            (Some(&1), Some(&2), None)
        );
        let made = memo.get_or_insert_with("c", |k| k.len() + 2);
        assert_eq!(made, 3);
        assert_eq!(
            memo.get_or_insert_with("c", |_| 9),
            3,
            "kept, not made again"
        );
        assert_eq!(
            (memo.get(&"a"), memo.get(&"c")),
            (None, Some(&3)),
            "emptied when full"
        );
    }
}
