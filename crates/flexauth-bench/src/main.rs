//! The in-process half of `just bench` (`scripts/bench` is the other half): the limits that
//! the HTTP figures are divided by, measured on this machine in the same run, and the tokens
//! the load generator sends. The load itself comes from `wrk`, outside the server process.
//!
//! ```text
//! flexauth-bench keygen                                   an Ed25519 signing key, PKCS#8 PEM, on stdout
//! flexauth-bench mint KEY ISSUER AUDIENCE ACCOUNT SESSION N   N distinct access tokens, one per line
//! flexauth-bench verify KEY ISSUER AUDIENCE ITERATIONS    µs per uncached access-token verification, one core
//! flexauth-bench argon2 THREADS SECONDS                   argon2id hashes/s and verifies/s at flexauth's
//!                                               default parameters, one thread per core
//! ```
//!
//! Every figure goes to stdout as one JSON object, for the script to read.

// A measuring tool run by a script: a failure aborts the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use flexauth_domain::account::AccountId;
use flexauth_domain::session::{AccessClaims, SessionId, TokenSigner};
use flexauth_jwt::{JwtSettings, JwtTokens, SigningKeyPair};
use time::OffsetDateTime;

fn tokens(key_file: &str, issuer: &str, audience: &str, cache_entries: usize) -> JwtTokens {
    let pem = std::fs::read_to_string(key_file).expect("read the key file");
    let key = SigningKeyPair::from_pem(&pem).expect("an Ed25519 PEM key");
    JwtTokens::new(
        &key,
        &[],
        JwtSettings { issuer: issuer.to_owned(), audience: audience.to_owned(), verified_cache_entries: cache_entries },
    )
}

fn claims(account: AccountId, session: SessionId, issued_at: OffsetDateTime) -> AccessClaims {
    AccessClaims {
        account_id: account,
        session_id: session,
        token_id: uuid::Uuid::new_v4(),
        issued_at,
        not_before: issued_at,
        expires_at: issued_at + time::Duration::hours(1),
        methods: flexauth_domain::newtypes::AuthenticationMethods::password(),
    }
}

fn mint(args: &[String]) {
    let [key, issuer, audience, account, session, count] = args else {
        panic!("mint KEY ISSUER AUDIENCE ACCOUNT SESSION N")
    };
    let signer = tokens(key, issuer, audience, 0);
    let account = AccountId::from_uuid(account.parse().expect("account uuid"));
    let session = SessionId::from_uuid(session.parse().expect("session uuid"));
    let now = OffsetDateTime::now_utc();
    let mut out = String::new();
    for _ in 0..count.parse::<usize>().expect("N") {
        out.push_str(&signer.sign_access(&claims(account, session, now)).expect("sign"));
        out.push('\n');
    }
    print!("{out}");
}

fn verify(args: &[String]) {
    let [key, issuer, audience, iterations] = args else { panic!("verify KEY ISSUER AUDIENCE ITERATIONS") };
    // No cache: this is the cost every new token pays once.
    let signer = tokens(key, issuer, audience, 0);
    let iterations: usize = iterations.parse().expect("ITERATIONS");
    let token = signer
        .sign_access(&claims(
            AccountId::from_uuid(uuid::Uuid::new_v4()),
            SessionId::from_uuid(uuid::Uuid::new_v4()),
            OffsetDateTime::now_utc(),
        ))
        .expect("sign");
    for _ in 0..iterations / 10 {
        signer.verify_access(&token).expect("verifies");
    }
    let started = Instant::now();
    for _ in 0..iterations {
        signer.verify_access(&token).expect("verifies");
    }
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    // The signature check alone, with the public key already decoded: the floor under any
    // JWT verification.
    let (signed, signature) = token.rsplit_once('.').expect("a JWT");
    let signature =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).expect("base64")).expect("a signature");
    let public = ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(key).expect("key"))
        .expect("key")
        .verifying_key();
    let started = Instant::now();
    for _ in 0..iterations {
        public.verify_strict(signed.as_bytes(), &signature).expect("verifies");
    }
    let signature_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    println!("{{\"verify_us\": {verify_us:.3}, \"signature_us\": {signature_us:.3}}}");
}

fn argon2_rate(args: &[String]) {
    let [threads, seconds] = args else { panic!("argon2 THREADS SECONDS") };
    let threads: usize = threads.parse().expect("THREADS");
    let seconds = Duration::from_secs_f64(seconds.parse().expect("SECONDS"));
    // flexauth's defaults: argon2id, 19 MiB, 2 passes, 1 lane (the OWASP parameters).
    let params = Params::new(19_456, 2, 1, None).expect("params");
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let stored =
        hasher.hash_password(b"a long enough passphrase", &SaltString::generate(&mut OsRng)).expect("hash").to_string();
    let run = |verify: bool| {
        let deadline = Instant::now() + seconds;
        let started = Instant::now();
        let done: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut count = 0;
                        while Instant::now() < deadline {
                            if verify {
                                let parsed = PasswordHash::new(&stored).expect("parse");
                                hasher.verify_password(b"a long enough passphrase", &parsed).expect("verifies");
                            } else {
                                hasher
                                    .hash_password(b"a long enough passphrase", &SaltString::generate(&mut OsRng))
                                    .expect("hash");
                            }
                            count += 1;
                        }
                        count
                    })
                })
                .collect();
            workers.into_iter().map(|worker| worker.join().expect("worker")).sum()
        });
        done as f64 / started.elapsed().as_secs_f64()
    };
    let verifies = run(true);
    let hashes = run(false);
    println!("{{\"argon2_verify_per_s\": {verifies:.2}, \"argon2_hash_per_s\": {hashes:.2}}}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("keygen") => print!("{}", SigningKeyPair::generate_pem().expect("key")),
        Some("mint") => mint(&args[1..]),
        Some("verify") => verify(&args[1..]),
        Some("argon2") => argon2_rate(&args[1..]),
        _ => eprintln!("this is the helper of `just bench` (scripts/bench); run that instead"),
    }
}
