//! A minimal slab: stable `usize` keys over a `Vec` with an intrusive free list.
//!
//! Both the in-flight operation table and the task table need O(1) insert/remove with a key
//! that fits in an SQE's `user_data`; a 40-line slab is cheaper to own than a dependency.

/// One slot: either a value or a link to the next free slot.
enum Entry<T> {
    Vacant(usize),
    Occupied(T),
}

pub(crate) struct Slab<T> {
    /// Slots; a key is an index into this vector and stays valid until `remove`.
    entries: Vec<Entry<T>>,
    /// Head of the free list (`entries.len()` when there is no free slot).
    next_free: usize,
    /// Number of occupied slots, so "anything in flight?" is O(1).
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Slab { entries: Vec::with_capacity(capacity), next_free: 0, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The key the next `insert` will return (lets a value embed its own key).
    pub(crate) fn next_key(&self) -> usize {
        self.next_free
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next_free;
        if key == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next_free = key + 1;
        } else {
            match std::mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next_free = next,
                Entry::Occupied(_) => unreachable!("invariant: free list points at a vacant slot"),
            }
        }
        self.len += 1;
        key
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        match self.entries.get_mut(key) {
            Some(entry @ Entry::Occupied(_)) => {
                let old = std::mem::replace(entry, Entry::Vacant(self.next_free));
                self.next_free = key;
                self.len -= 1;
                match old {
                    Entry::Occupied(value) => Some(value),
                    Entry::Vacant(_) => None,
                }
            }
            _ => None,
        }
    }

    /// Removes and returns every occupied value (used when a runtime shuts down).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for entry in self.entries.drain(..) {
            if let Entry::Occupied(value) = entry {
                out.push(value);
            }
        }
        self.next_free = 0;
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_after_remove() {
        let mut slab = Slab::with_capacity(2);
        let a = slab.insert(1);
        let b = slab.insert(2);
        assert_eq!(slab.remove(a), Some(1));
        assert_eq!(slab.remove(a), None);
        let c = slab.insert(3);
        assert_eq!(c, a);
        assert_eq!(slab.get_mut(b), Some(&mut 2));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.drain().len(), 2);
    }
}
