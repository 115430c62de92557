//! The flood guard for a fleet: `[cognito] bad_signature_per_minute` is one budget across the
//! replicas sharing a Valkey, and Valkey gone leaves each replica counting on its own.

use super::*;

fn flood_toml(jwks_url: &str, valkey_url: &str, budget: u32) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n\
         trusted_proxies = [\"127.0.0.1/32\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{}\n\
         [shared_state]\n{}encryption_key = \"{}\"\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n",
        cognito_section(jwks_url, &format!("[\"{CLIENT_ID}\"]")).replace(
            "[cognito.jwks]",
            &format!("bad_signature_per_minute = {budget}\n[cognito.jwks]")
        ),
        shared(valkey_url),
        state_key_b64()
    )
}

impl Replica {
    /// A request with `token` from `client`, as the trusted proxy on 127.0.0.1 reports it.
    async fn bearer_from(&self, c: &reqwest::Client, client: &str, token: &str) -> u16 {
        c.get(format!("{}/x", self.base))
            .header("x-forwarded-for", client)
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_signature_budget_is_the_fleets() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let toml = flood_toml(&jwks.url(), &valkey.url(), 2);
    let (a, b) = (Replica::start(&toml).await, Replica::start(&toml).await);
    let c = client();
    let flooder = "192.0.2.50";
    // One failure on each replica uses the fleet's budget of two; each replica alone has seen
    // one, under its own share.
    assert_eq!(
        a.bearer_from(&c, flooder, &unseen_forgery(&k1, 1)).await,
        401
    );
    assert_eq!(
        b.bearer_from(&c, flooder, &unseen_forgery(&k1, 2)).await,
        401
    );
    // B learnt from its count that the fleet's budget is used: refused before RSA.
    assert_eq!(
        b.bearer_from(&c, flooder, &unseen_forgery(&k1, 3)).await,
        429
    );
    // A had counted one of two when it last asked: one more RSA check, then it knows too.
    assert_eq!(
        a.bearer_from(&c, flooder, &unseen_forgery(&k1, 4)).await,
        401
    );
    assert_eq!(
        a.bearer_from(&c, flooder, &unseen_forgery(&k1, 5)).await,
        429
    );
    // Valid tokens from another client pass on both and charge nothing.
    for (i, r) in [&a, &b, &a, &b].iter().enumerate() {
        let token = k1.sign(&with(id_claims(), json!({"jti": format!("valid-{i}")})));
        assert_eq!(r.bearer_from(&c, "192.0.2.51", &token).await, 200);
    }
    assert_eq!(
        a.bearer_from(&c, "192.0.2.51", &unseen_forgery(&k1, 6))
            .await,
        401
    );

    // Valkey gone: each replica counts on its own and still refuses, never a 5xx.
    drop(valkey);
    let solo = "192.0.2.52";
    assert_eq!(a.bearer_from(&c, solo, &unseen_forgery(&k1, 7)).await, 401);
    assert_eq!(a.bearer_from(&c, solo, &unseen_forgery(&k1, 8)).await, 401);
    assert_eq!(a.bearer_from(&c, solo, &unseen_forgery(&k1, 9)).await, 429);
    assert_eq!(b.bearer_from(&c, solo, &unseen_forgery(&k1, 10)).await, 401);
}
