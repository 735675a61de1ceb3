//! Concurrent clients doing tracker operations through `tracker-client` (the code the peer
//! uses), each operation recorded with its interval and outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::api::FileMetaBody;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tracker_client::{ClientError, TrackerClient};

use crate::history::{Entry, Op, Outcome};

/// What the clients know from *acknowledged* operations, to pick meaningful next steps.
#[derive(Default)]
pub struct Registry {
    /// (group, owner client)
    pub groups: Vec<(String, usize)>,
    /// (group, user client) join requests acknowledged and not yet accepted
    pub filed: Vec<(String, usize)>,
    /// (user client, group) pairs an accept was sent for, whatever its outcome. The checker's
    /// model has one write per flag, so a pair is accepted at most once: without this, a user
    /// whose accept is still in flight could join again (a join of a pending user answers ok),
    /// be filed again, and be accepted a second time, which answers `already_member`.
    pub accept_sent: HashSet<(usize, String)>,
    /// (client, group) memberships: owned or accepted
    pub member_of: HashSet<(usize, String)>,
    /// (client, group, file)
    pub uploads: Vec<(usize, String, String)>,
}

pub struct Shared {
    pub started: Instant,
    pub history: Mutex<Vec<Entry>>,
    pub registry: Mutex<Registry>,
    pub acked: Mutex<Acked>,
}

/// Completion times of acknowledged creates and accepts, for recording reads compactly.
#[derive(Default)]
pub struct Acked {
    creates: HashMap<String, u64>,
    create_times: Vec<u64>,
    accepts: HashMap<(String, String), u64>,
    accept_times: HashMap<String, Vec<u64>>,
}

fn insert_sorted(v: &mut Vec<u64>, t: u64) {
    let at = v.partition_point(|&x| x <= t);
    v.insert(at, t);
}

impl Acked {
    fn create(&mut self, group: &str, complete_ms: u64) {
        self.creates.insert(group.to_string(), complete_ms);
        insert_sorted(&mut self.create_times, complete_ms);
    }
    fn accept(&mut self, group: &str, user: &str, complete_ms: u64) {
        self.accepts.insert((group.to_string(), user.to_string()), complete_ms);
        insert_sorted(self.accept_times.entry(user.to_string()).or_default(), complete_ms);
    }

    /// `user`'s list-groups read that began at `invoke_ms`, as its difference from the
    /// acknowledged writes (see `Op::ListGroups`).
    fn diff(&self, user: &str, invoke_ms: u64, rows: &[proto::api::GroupRow]) -> Op {
        let (mut extra, mut member_extra) = (Vec::new(), Vec::new());
        let (mut seen_expected, mut member_seen_expected) = (0usize, 0usize);
        for row in rows {
            match self.creates.get(&row.group) {
                Some(&t) if t < invoke_ms => seen_expected += 1,
                _ => extra.push(row.group.clone()),
            }
            if row.member && row.owner != user {
                match self.accepts.get(&(row.group.clone(), user.to_string())) {
                    Some(&t) if t < invoke_ms => member_seen_expected += 1,
                    _ => member_extra.push(row.group.clone()),
                }
            }
        }
        // Only when the counts disagree is it worth looking for what is missing.
        let mut missing = Vec::new();
        if seen_expected < self.create_times.partition_point(|&t| t < invoke_ms) {
            let seen: HashSet<&str> = rows.iter().map(|r| r.group.as_str()).collect();
            missing = self
                .creates
                .iter()
                .filter(|(g, &t)| t < invoke_ms && !seen.contains(g.as_str()))
                .map(|(g, _)| g.clone())
                .collect();
        }
        let mut member_missing = Vec::new();
        let expected = self.accept_times.get(user).map(|v| v.partition_point(|&t| t < invoke_ms)).unwrap_or(0);
        if member_seen_expected < expected {
            let member: HashSet<&str> = rows.iter().filter(|r| r.member).map(|r| r.group.as_str()).collect();
            member_missing = self
                .accepts
                .iter()
                .filter(|((g, u), &t)| u == user && t < invoke_ms && !member.contains(g.as_str()))
                .map(|((g, _), _)| g.clone())
                .collect();
        }
        Op::ListGroups { user: user.to_string(), extra, missing, member_extra, member_missing }
    }
}

impl Shared {
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

pub fn user_name(client: usize) -> String {
    format!("u{client}")
}

fn outcome<T>(r: &Result<T, ClientError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(ClientError::Refused { code, .. }) => Outcome::Fail(code.to_string()),
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// Sizes of the files the workload shares: from one piece to tens of thousands of pieces, so
/// log entries look like a real team's (the metadata no longer grows with the file).
const FILE_SIZES_BYTES: [u64; 5] = [1000, 3 * 512 * 1024 + 17, 1 << 30, 7 << 30, 20 << 30];

fn fake_meta(name: &str, n: u64) -> FileMetaBody {
    let hex = |x: u64| format!("{x:040x}");
    let size = FILE_SIZES_BYTES[(n % FILE_SIZES_BYTES.len() as u64) as usize];
    FileMetaBody { name: name.into(), size, piece_len: 512 * 1024, piece_list_sha1: hex(n), sha1: hex(n ^ 0xabcdef) }
}

/// One client's loop until `deadline`: mostly writes, with reads in between.
pub async fn client_loop(id: usize, client: TrackerClient, shared: Arc<Shared>, seed: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e3779b97f4a7c15));
    let mut n = 0u64;
    while Instant::now() < deadline && !crate::stop_requested() {
        n += 1;
        let roll = rng.gen_range(0..100);
        let invoke_ms = shared.now_ms();
        let me = Me { id, n, client: &client, shared: &shared };
        let step = if roll < 25 {
            Some(me.create_group().await)
        } else if roll < 37 {
            me.join(&mut rng).await
        } else if roll < 50 {
            me.accept(&mut rng).await
        } else if roll < 65 {
            me.upload(&mut rng).await
        } else if roll < 70 {
            me.stop_share(&mut rng).await
        } else if roll < 85 {
            Some(me.list_groups(invoke_ms).await)
        } else {
            me.list_files(&mut rng).await
        };
        let Some((op, out, complete_ms)) = step else { continue };
        shared.history.lock().unwrap().push(Entry { client: id, op, invoke_ms, complete_ms, outcome: out });
        // A breath between operations keeps 8 clients from saturating 2 cores.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2..12))).await;
    }
}

/// One operation of client `id`, its `n`th: what it did, how it ended, and when (ms).
type Step = (Op, Outcome, u64);

/// Client `id` at its `n`th operation.
struct Me<'a> {
    id: usize,
    n: u64,
    client: &'a TrackerClient,
    shared: &'a Shared,
}

impl Me<'_> {
    /// The groups this client is a member of.
    fn member_of(&self) -> Vec<String> {
        let reg = self.shared.registry.lock().unwrap();
        reg.member_of.iter().filter(|(c, _)| *c == self.id).map(|(_, g)| g.clone()).collect()
    }

    async fn create_group(&self) -> Step {
        let (id, shared) = (self.id, self.shared);
        let group = format!("g{id}x{}", self.n);
        let r = self.client.create_group(&group).await;
        let done = shared.now_ms();
        if r.is_ok() {
            shared.acked.lock().unwrap().create(&group, done);
            let mut reg = shared.registry.lock().unwrap();
            reg.groups.push((group.clone(), id));
            reg.member_of.insert((id, group.clone()));
        }
        (Op::CreateGroup { group }, outcome(&r), done)
    }

    async fn join(&self, rng: &mut StdRng) -> Option<Step> {
        let (id, shared) = (self.id, self.shared);
        let pick = {
            let reg = shared.registry.lock().unwrap();
            let open: Vec<&(String, usize)> = reg
                .groups
                .iter()
                .filter(|(g, owner)| {
                    // Not its own, and never accepted (nor being accepted) into it.
                    *owner != id
                        && !reg.accept_sent.contains(&(id, g.clone()))
                        && !reg.filed.iter().any(|(fg, u)| fg == g && *u == id)
                })
                .collect();
            open.choose(rng).map(|(g, _)| g.clone())
        };
        let group = pick?;
        let r = self.client.join_group(&group).await;
        let done = shared.now_ms();
        if r.is_ok() {
            shared.registry.lock().unwrap().filed.push((group.clone(), id));
        }
        Some((Op::Join { group, user: user_name(id) }, outcome(&r), done))
    }

    async fn accept(&self, rng: &mut StdRng) -> Option<Step> {
        let (id, shared) = (self.id, self.shared);
        let pick = {
            let mut reg = shared.registry.lock().unwrap();
            let mine: Vec<usize> = (0..reg.filed.len())
                .filter(|&k| reg.groups.iter().any(|(g, o)| *o == id && *g == reg.filed[k].0))
                .collect();
            let picked = mine.choose(rng).map(|&k| reg.filed.swap_remove(k));
            if let Some((group, user)) = &picked {
                reg.accept_sent.insert((*user, group.clone()));
            }
            picked
        };
        let (group, user) = pick?;
        let r = self.client.accept_request(&group, &user_name(user)).await;
        let done = shared.now_ms();
        if r.is_ok() {
            shared.acked.lock().unwrap().accept(&group, &user_name(user), done);
            shared.registry.lock().unwrap().member_of.insert((user, group.clone()));
        }
        Some((Op::Accept { group, user: user_name(user) }, outcome(&r), done))
    }

    async fn upload(&self, rng: &mut StdRng) -> Option<Step> {
        let (id, n, shared) = (self.id, self.n, self.shared);
        let group = self.member_of().choose(rng).cloned()?;
        let file = format!("f{id}x{n}");
        let meta = fake_meta(&file, (id as u64) << 32 | n);
        let r = self.client.upload(&group, meta, "127.0.0.1:9", &"c".repeat(64)).await;
        let done = shared.now_ms();
        if r.is_ok() {
            shared.registry.lock().unwrap().uploads.push((id, group.clone(), file.clone()));
        }
        Some((Op::Upload { group, file }, outcome(&r), done))
    }

    async fn stop_share(&self, rng: &mut StdRng) -> Option<Step> {
        let pick = {
            let reg = self.shared.registry.lock().unwrap();
            let mine: Vec<&(usize, String, String)> = reg.uploads.iter().filter(|(c, _, _)| *c == self.id).collect();
            mine.choose(rng).map(|(_, g, f)| (g.clone(), f.clone()))
        };
        let (group, file) = pick?;
        let r = self.client.stop_share(&group, &file).await;
        let done = self.shared.now_ms();
        Some((Op::StopShare { group, file }, outcome(&r), done))
    }

    async fn list_groups(&self, invoke_ms: u64) -> Step {
        let me = user_name(self.id);
        let r = self.client.list_groups().await;
        let done = self.shared.now_ms();
        let op = match &r {
            Ok(rows) => self.shared.acked.lock().unwrap().diff(&me, invoke_ms, rows),
            Err(_) => Op::ListGroups {
                user: me,
                extra: vec![],
                missing: vec![],
                member_extra: vec![],
                member_missing: vec![],
            },
        };
        (op, outcome(&r), done)
    }

    async fn list_files(&self, rng: &mut StdRng) -> Option<Step> {
        let group = self.member_of().choose(rng).cloned()?;
        let r = self.client.list_files(&group).await;
        let done = self.shared.now_ms();
        let seen = r.as_ref().map(|rows| rows.iter().map(|f| f.name.clone()).collect()).unwrap_or_default();
        Some((Op::ListFiles { group, seen }, outcome(&r), done))
    }
}
