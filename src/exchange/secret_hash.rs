//! SECRET_HASH = Base64(HMAC-SHA256(client_secret, username + client_id)), required by Cognito on
//! every call of an app client that has a secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) fn secret_hash(client_secret: &str, username: &str, client_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against `echo -n "test-user22k5ngbgh0pl2vhuxxxxxxxxxx" |
    /// openssl dgst -sha256 -hmac "s3cr3t" -binary | base64`.
    #[test]
    fn matches_the_documented_formula() {
        assert_eq!(
            secret_hash("s3cr3t", "test-user", "22k5ngbgh0pl2vhuxxxxxxxxxx"),
            "3W6ifSHrCvjGTQAzHdfj2m6+u3Acg4VQF7G7KAiym1w="
        );
    }
}
