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

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: K, value: V) {
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
        memo.insert("c", 3);
        assert_eq!(
            (memo.get(&"a"), memo.get(&"c")),
            (None, Some(&3)),
            "emptied when full"
        );
    }
}
