//! One immutable snapshot of the revocation set: three hash maps, the check, and the
//! copy-on-write edits the writers make.

use std::collections::HashMap;

use super::{Entry, Kind, Marks};

#[derive(Clone, Default)]
pub struct Set {
    /// `sub` -> (refuse tokens issued before, entry expires).
    users: HashMap<Box<str>, (i64, i64)>,
    /// `jti` -> expires.
    tokens: HashMap<Box<str>, i64>,
    /// Session id -> expires.
    sessions: HashMap<Box<str>, i64>,
    /// The earliest expiry, so the sweep knows when there is anything to drop.
    next_expiry: Option<i64>,
}

impl Set {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty() && self.sessions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.users.len() + self.tokens.len() + self.sessions.len()
    }

    /// Whether a token of `sub` with `marks` is revoked at `now`. An entry past its expiry
    /// no longer refuses, even before the sweep drops it. A user revocation refuses a
    /// token without `iat`: nothing shows it was issued after the revocation.
    pub fn refuses(&self, sub: &str, marks: &Marks, now: i64) -> bool {
        if let Some(&(before, expires)) = self.users.get(sub)
            && expires > now
            && marks.iat.is_none_or(|iat| iat < before as f64)
        {
            return true;
        }
        let live = |map: &HashMap<Box<str>, i64>, key: &Option<Box<str>>| {
            key.as_deref()
                .and_then(|k| map.get(k))
                .is_some_and(|&expires| expires > now)
        };
        live(&self.tokens, &marks.jti) || live(&self.sessions, &marks.session)
    }

    /// Adds `e` unless it has expired; a user keeps the latest `before` and expiry.
    pub fn insert(&mut self, e: Entry, now: i64) {
        if !e.is_live(now) {
            return;
        }
        let expires = e.expires;
        let id: Box<str> = e.id.into();
        match e.kind {
            Kind::Sub => {
                let before = e.before.unwrap_or(now);
                let slot = self.users.entry(id).or_insert((before, expires));
                *slot = (slot.0.max(before), slot.1.max(expires));
            }
            Kind::Jti => {
                let slot = self.tokens.entry(id).or_insert(expires);
                *slot = (*slot).max(expires);
            }
            Kind::Sid => {
                let slot = self.sessions.entry(id).or_insert(expires);
                *slot = (*slot).max(expires);
            }
        }
        self.next_expiry = Some(self.next_expiry.map_or(expires, |n| n.min(expires)));
    }

    pub fn has_expired(&self, now: i64) -> bool {
        self.next_expiry.is_some_and(|n| n <= now)
    }

    pub fn retain_live(&mut self, now: i64) {
        self.users.retain(|_, (_, expires)| *expires > now);
        self.tokens.retain(|_, expires| *expires > now);
        self.sessions.retain(|_, expires| *expires > now);
        self.next_expiry = self
            .users
            .values()
            .map(|(_, e)| *e)
            .chain(self.tokens.values().copied())
            .chain(self.sessions.values().copied())
            .min();
    }

    /// Every entry, as stored and sent.
    pub fn entries(&self) -> Vec<Entry> {
        let users = self.users.iter().map(|(id, &(before, expires))| Entry {
            kind: Kind::Sub,
            id: id.to_string(),
            before: Some(before),
            expires,
        });
        let one = |kind, map: &HashMap<Box<str>, i64>| {
            map.iter()
                .map(|(id, &expires)| Entry {
                    kind,
                    id: id.to_string(),
                    before: None,
                    expires,
                })
                .collect::<Vec<_>>()
        };
        users
            .chain(one(Kind::Jti, &self.tokens))
            .chain(one(Kind::Sid, &self.sessions))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(iat: Option<f64>, jti: Option<&str>, session: Option<&str>) -> Marks {
        Marks {
            iat,
            jti: jti.map(Box::from),
            session: session.map(Box::from),
        }
    }

    fn entry(kind: Kind, id: &str, before: Option<i64>, expires: i64) -> Entry {
        Entry {
            kind,
            id: id.to_owned(),
            before,
            expires,
        }
    }

    #[test]
    fn a_user_revocation_refuses_tokens_issued_before_it_only() {
        let mut set = Set::default();
        set.insert(entry(Kind::Sub, "u1", Some(1000), 2000), 1000);
        assert!(set.refuses("u1", &marks(Some(999.0), None, None), 1500));
        assert!(!set.refuses("u1", &marks(Some(1000.0), None, None), 1500));
        assert!(!set.refuses("u2", &marks(Some(999.0), None, None), 1500));
        // No `iat`: nothing proves the token is newer.
        assert!(set.refuses("u1", &marks(None, None, None), 1500));
        // Past its expiry it refuses nothing, swept or not.
        assert!(!set.refuses("u1", &marks(Some(999.0), None, None), 2000));
    }

    #[test]
    fn a_later_user_revocation_moves_before_forward_never_back() {
        let mut set = Set::default();
        set.insert(entry(Kind::Sub, "u1", Some(1000), 2000), 1000);
        set.insert(entry(Kind::Sub, "u1", Some(900), 1900), 1000);
        assert!(set.refuses("u1", &marks(Some(950.0), None, None), 1500));
        set.insert(entry(Kind::Sub, "u1", Some(1200), 2200), 1200);
        assert!(set.refuses("u1", &marks(Some(1100.0), None, None), 2100));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn token_and_session_revocations_refuse_by_their_claim() {
        let mut set = Set::default();
        set.insert(entry(Kind::Jti, "t1", None, 2000), 1000);
        set.insert(entry(Kind::Sid, "s1", None, 2000), 1000);
        assert!(set.refuses("u", &marks(Some(1.0), Some("t1"), None), 1000));
        assert!(set.refuses("u", &marks(Some(1.0), None, Some("s1")), 1000));
        assert!(!set.refuses("u", &marks(Some(1.0), Some("s1"), Some("t1")), 1000));
        assert!(!set.refuses("u", &marks(Some(1.0), None, None), 1000));
    }

    #[test]
    fn expired_entries_are_swept_and_never_inserted() {
        let mut set = Set::default();
        set.insert(entry(Kind::Jti, "old", None, 900), 1000);
        assert!(set.is_empty());
        set.insert(entry(Kind::Jti, "t1", None, 1100), 1000);
        set.insert(entry(Kind::Sid, "s1", None, 1300), 1000);
        assert!(!set.has_expired(1099));
        assert!(set.has_expired(1100));
        set.retain_live(1100);
        assert_eq!(set.entries(), vec![entry(Kind::Sid, "s1", None, 1300)]);
        assert!(!set.has_expired(1200));
    }
}
