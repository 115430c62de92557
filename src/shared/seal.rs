//! Nothing readable leaves the process: entry keys are HMAC-SHA256 of what they name (never a
//! username, password or token in clear), and values are sealed with AES-256-GCM under a key
//! derived from `encryption_key`, with the entry key as associated data, so a value copied under
//! another key does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const NONCE_BYTES: usize = 12;

pub struct Sealer {
    aead: Aes256Gcm,
    mac_key: [u8; 32],
    prefix: String,
}

fn derive(master: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("any key size");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

impl Sealer {
    /// `master` is the configured 32-byte `encryption_key`; separate keys are derived from it
    /// for sealing and for naming entries.
    pub fn new(master: &[u8; 32], prefix: &str) -> Self {
        let aead_key = derive(master, b"cognito-gate/seal/v1");
        Sealer {
            aead: Aes256Gcm::new(&aead_key.into()),
            mac_key: derive(master, b"cognito-gate/entry-key/v1"),
            prefix: prefix.to_string(),
        }
    }

    /// The entry key for `kind` and the parts that identify the entry: the prefix, the kind,
    /// and an HMAC of the length-prefixed parts in braces (a cluster hash tag, so that the
    /// entries of one credential live in one slot and can be read together).
    pub fn key(&self, kind: &str, parts: &[&[u8]]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).expect("any key size");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        let digest = mac.finalize().into_bytes();
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + 67);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push_str(":{");
        for b in digest {
            key.push_str(&format!("{b:02x}"));
        }
        key.push('}');
        key
    }

    /// `nonce || ciphertext+tag`, bound to `entry_key`.
    pub fn seal(&self, entry_key: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: entry_key.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a bounded value cannot fail");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext, or `None` when the value was not sealed under this key for this entry.
    pub fn open(&self, entry_key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: entry_key.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_own_key_and_master() {
        let s = Sealer::new(&[7; 32], "cg:");
        let a = s.key("tokens", &[b"alice", b"pw"]);
        let b = s.key("tokens", &[b"alic", b"epw"]);
        assert_ne!(a, b, "parts are length-prefixed");
        assert!(a.starts_with("cg:tokens:{") && a.len() == "cg:tokens:{}".len() + 64);
        let f = s.key("fail", &[b"alice", b"pw"]);
        assert_eq!(
            a[a.find('{').unwrap()..],
            f[f.find('{').unwrap()..],
            "one hash tag"
        );
        assert!(!a.contains("alice"));
        let sealed = s.seal(&a, b"secret tokens");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open(&a, &sealed).as_deref(), Some(&b"secret tokens"[..]));
        assert_eq!(s.open(&b, &sealed), None, "copied under another key");
        let other = Sealer::new(&[8; 32], "cg:");
        assert_eq!(other.open(&a, &sealed), None, "another master key");
        assert_ne!(other.key("tokens", &[b"alice", b"pw"]), a);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(&a, &tampered), None);
        assert_eq!(s.open(&a, b"short"), None);
    }
}
