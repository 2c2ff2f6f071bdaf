//! Password hashing on dedicated threads that reuse their argon2 work area.
//!
//! argon2id with m = 7168 KiB, t = 5, p = 1 — one of OWASP's equivalent recommended
//! configurations. Each hash needs a 7 MiB work area; allocating it per hash made a node's
//! resident memory grow by that much with every login (the allocator did not give the aligned
//! blocks back), so each hashing thread allocates its area once and reuses it. Hashing therefore
//! runs on `workers` long-lived threads (never on the async runtime), which also bounds how much
//! CPU a burst of logins can take. Hashes are standard PHC strings; hashes with other
//! parameters (older releases) still verify through the allocating path.

use std::sync::Arc;

use argon2::password_hash::PasswordVerifier as _;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::{Semaphore, oneshot};

use crate::error::{Error, Result};

const M_COST: u32 = 7168;
const T_COST: u32 = 5;
const P_COST: u32 = 1;
const PREFIX: &str = "$argon2id$v=19$m=7168,t=5,p=1$";
const OUTPUT_LEN: usize = 32;
/// Requests waiting for a hashing thread; beyond this callers wait (asynchronously).
const QUEUE: usize = 64;

enum Job {
    Hash(String, oneshot::Sender<Result<String>>),
    Verify(String, String, oneshot::Sender<bool>),
}

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: crossbeam_channel::Sender<Job>,
    queue: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the email is unknown so that a
    /// login for a missing account takes as long as one with a wrong password.
    dummy: Arc<String>,
}

fn argon() -> Result<Argon2<'static>> {
    let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN))
        .map_err(|e| Error::Internal(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl PasswordHasher {
    pub fn new(workers: usize) -> Result<PasswordHasher> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let argon = argon()?;
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&argon, &rx))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        let hasher = PasswordHasher {
            jobs,
            queue: Arc::new(Semaphore::new(QUEUE)),
            dummy: Arc::new(String::new()),
        };
        let mut blocks = vec![Block::default(); M_COST as usize];
        let dummy = hash_with(&argon()?, &uuid::Uuid::new_v4().to_string(), &mut blocks)?;
        Ok(PasswordHasher {
            dummy: Arc::new(dummy),
            ..hasher
        })
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let _slot = self.queue.acquire().await.map_err(|_| Error::Unavailable)?;
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Hash(password.to_string(), tx))
            .map_err(|_| Error::Unavailable)?;
        rx.await.map_err(|_| Error::Unavailable)?
    }

    /// True if `password` matches `hash`; with `None` it burns the same time and says false.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        let _slot = self.queue.acquire().await.map_err(|_| Error::Unavailable)?;
        let (known, hash) = match hash {
            Some(h) => (true, h),
            None => (false, self.dummy.to_string()),
        };
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Verify(password.to_string(), hash, tx))
            .map_err(|_| Error::Unavailable)?;
        Ok(rx.await.map_err(|_| Error::Unavailable)? && known)
    }
}

fn worker(argon: &Argon2<'static>, jobs: &crossbeam_channel::Receiver<Job>) {
    let mut blocks = vec![Block::default(); M_COST as usize];
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Hash(password, reply) => {
                let _ = reply.send(hash_with(argon, &password, &mut blocks));
            }
            Job::Verify(password, hash, reply) => {
                let _ = reply.send(verify_with(argon, &password, &hash, &mut blocks));
            }
        }
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str, blocks: &mut [Block]) -> Result<String> {
    let salt = argon2::password_hash::generate_salt();
    let mut out = [0u8; OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut *blocks)
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    Ok(format!(
        "{PREFIX}{}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

fn verify_with(argon: &Argon2<'_>, password: &str, phc: &str, blocks: &mut [Block]) -> bool {
    let ours = phc
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('$'))
        .and_then(|(salt, hash)| {
            Some((
                STANDARD_NO_PAD.decode(salt).ok()?,
                STANDARD_NO_PAD.decode(hash).ok()?,
            ))
        });
    match ours {
        Some((salt, expected)) if expected.len() == OUTPUT_LEN => {
            let mut out = [0u8; OUTPUT_LEN];
            argon
                .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut *blocks)
                .is_ok()
                && constant_time_eq(&out, &expected)
        }
        // Another parameter set (an older release's hash): verify the standard way.
        _ => PasswordHash::new(phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_standard_argon2id_phc_strings_and_verify() {
        let hasher = PasswordHasher::new(1).unwrap();
        let hash = hasher.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with(PREFIX), "{hash}");
        // Any argon2 implementation can check it.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            argon()
                .unwrap()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(
            hasher
                .verify("correct horse battery", Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("wrong horse", Some(hash)).await.unwrap());
        assert!(!hasher.verify("anything", None).await.unwrap());
        // A hash made with other parameters still verifies.
        use argon2::password_hash::PasswordHasher as _;
        let legacy = Argon2::default()
            .hash_password(b"old password")
            .unwrap()
            .to_string();
        assert!(hasher.verify("old password", Some(legacy)).await.unwrap());
    }
}
