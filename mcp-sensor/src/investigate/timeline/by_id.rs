//! Finding a session's calls by their JSON-RPC id, in little memory: the
//! report holds one entry per call until the whole log is read.

use serde_json::Value;
use std::collections::HashMap;

/// Calls by JSON-RPC id: ids are the same when their JSON texts are.
/// Non-negative integer ids (almost all) are kept as numbers, without
/// making their text, in 16 bytes a call; the others as their text.
#[derive(Default)]
pub(super) struct ById {
    number: HashMap<u64, u32>,
    text: HashMap<Box<str>, u32>,
}

impl ById {
    pub fn get(&self, id: &Value) -> Option<usize> {
        match id.as_u64() {
            Some(n) => self.number.get(&n),
            None => self.text.get(&*id.to_string()),
        }
        .map(|&i| i as usize)
    }

    pub fn insert(&mut self, id: &Value, call: usize) {
        let call = u32::try_from(call).expect("fewer than 2^32 calls per session");
        match id.as_u64() {
            Some(n) => self.number.insert(n, call),
            None => self.text.insert(id.to_string().into(), call),
        };
    }

    pub fn remove(&mut self, id: &Value) {
        match id.as_u64() {
            Some(n) => self.number.remove(&n),
            None => self.text.remove(&*id.to_string()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_the_same_exactly_when_their_json_texts_are() {
        let mut by = ById::default();
        let ids = [json!(1), json!("1"), json!(1.0), json!(-1), json!(u64::MAX), json!(null), json!("a")];
        for (n, id) in ids.iter().enumerate() {
            by.insert(id, n);
        }
        for (n, id) in ids.iter().enumerate() {
            // an id read again from another line is another Value with the same text
            let again: Value = serde_json::from_str(&id.to_string()).unwrap();
            assert_eq!(by.get(&again), Some(n), "{id}");
        }
        by.remove(&json!(1));
        assert_eq!((by.get(&json!(1)), by.get(&json!("1"))), (None, Some(1)));
    }
}
