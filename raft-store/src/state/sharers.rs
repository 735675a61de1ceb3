//! Who shares one file: a small sorted set of user names.
//!
//! Usually one user (the uploader), rarely more than a handful, so a sorted `Vec` rather than a
//! `BTreeSet`, whose first insert allocates a whole 11-slot node (~280 bytes a file). It is
//! written exactly as the `BTreeSet` was (a JSON array in ascending order), and reading sorts and
//! deduplicates, so snapshot files are the same either way.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sharers(Vec<String>);

impl Sharers {
    /// The set of one user.
    pub fn one(user: &str) -> Self {
        Sharers(vec![user.to_string()])
    }

    /// Adds `user`; false if it was already there.
    pub fn insert(&mut self, user: &str) -> bool {
        match self.0.binary_search_by(|u| u.as_str().cmp(user)) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, user.to_string());
                true
            }
        }
    }

    /// Removes `user`; false if it was not there.
    pub fn remove(&mut self, user: &str) -> bool {
        match self.0.binary_search_by(|u| u.as_str().cmp(user)) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.binary_search_by(|u| u.as_str().cmp(user)).is_ok()
    }

    /// The users in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Sharers {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Sharers {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut v: Vec<String> = iter.into_iter().map(|s| s.as_ref().to_string()).collect();
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        Sharers(v)
    }
}

impl Serialize for Sharers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sharers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_set() {
        let mut s = Sharers::one("carol");
        assert!(s.insert("alice"));
        assert!(!s.insert("carol"));
        assert!(s.insert("bob"));
        assert_eq!(s.iter().map(String::as_str).collect::<Vec<_>>(), ["alice", "bob", "carol"]);
        assert!(s.contains("bob") && !s.contains("dave"));
        assert!(s.remove("bob") && !s.remove("bob"));
        assert_eq!(s.len(), 2);
        assert!(s.remove("alice") && s.remove("carol") && s.is_empty());
    }

    #[test]
    fn serializes_as_the_btreeset_did() {
        let set: std::collections::BTreeSet<String> = ["zed", "amy", "kim"].iter().map(|s| s.to_string()).collect();
        let ours: Sharers = ["zed", "amy", "kim"].into_iter().collect();
        assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&set).unwrap());
        // Reading normalises: unsorted or repeated names (never written by us) still make a set.
        let read: Sharers = serde_json::from_str(r#"["kim","amy","kim","zed"]"#).unwrap();
        assert_eq!(read, ours);
    }
}
