//! Second factors, recovery codes and login challenges (`FactorRepository`), and the step-up
//! of a session (`SessionRepository::mark_second_factor`).

use super::*;

fn factor(account: &Account, id: u128, created_at: OffsetDateTime) -> StoredFactor {
    StoredFactor {
        id: FactorId::from_uuid(Uuid::from_u128(id)),
        account_id: account.id(),
        kind: FactorKind::Totp,
        name: FactorName::parse("phone").unwrap(),
        secret: SealedSecret(format!("sealed secret {id}")),
        credential_id: None,
        created_at,
        confirmed_at: None,
        last_step: None,
        last_used_at: None,
    }
}

fn confirmation(
    account_id: AccountId,
    factor_id: FactorId,
    step: i64,
    at: OffsetDateTime,
    recovery_codes: &[TokenHash],
    event: &AuditEvent,
    notice: &OutgoingEmail,
) -> FactorConfirmation {
    FactorConfirmation {
        account_id,
        factor_id,
        step,
        at,
        recovery_codes: recovery_codes.to_vec(),
        event: event.clone(),
        notice: notice.clone(),
    }
}

fn event(account: &Account, kind: AuditKind) -> AuditEvent {
    AuditEvent { kind, ..login_event(account) }
}

fn codes(seeds: &[u8]) -> Vec<TokenHash> {
    seeds.iter().map(|seed| TokenHash::of(&[*seed; 8])).collect()
}

fn challenge(account: &Account, seed: u8) -> MfaChallenge {
    MfaChallenge {
        token_hash: TokenHash::of(&[seed; 16]),
        account_id: account.id(),
        created_at: NOW,
        expires_at: NOW + Duration::minutes(5),
        failures: 0,
        credential_version: 3,
        client: ClientInfo::new(Some("curl/8.0"), Some("192.0.2.7".into())),
    }
}

scenarios! { $ mfa_scenarios;
    pub async fn a_factor_counts_once_confirmed_and_an_enrolment_left_waiting_is_cleared<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let stale = factor(&account, 1, NOW - Duration::hours(2));
        store.add_factor(&stale, NOW - Duration::hours(3)).await.unwrap();
        let fresh = factor(&account, 2, NOW);
        assert!(!store.has_confirmed_factor(account.id()).await.unwrap());
        let owner = EmailAddress::parse("owner@example.com").unwrap();
        let login_sees_factor =
            || async { store.find_for_login(&owner, None).await.unwrap().unwrap().has_second_factor };
        assert!(!login_sees_factor().await, "an enrolment not confirmed is no second factor");
        // The enrolment older than the cut-off goes with the next one.
        store.add_factor(&fresh, NOW - Duration::hours(1)).await.unwrap();
        assert_eq!(store.factors(account.id()).await.unwrap(), vec![fresh.clone()]);
        assert!(store.add_factor(&fresh, NOW - Duration::hours(1)).await.is_err(), "the id is unique");

        let added = event(&account, AuditKind::SecondFactorAdded);
        let notice = mail_to("owner@example.com");
        assert!(store
            .confirm_factor(&confirmation(account.id(), fresh.id, 100, NOW, &codes(&[1, 2, 3]), &added, &notice)).await
            .unwrap());
        assert!(store.has_confirmed_factor(account.id()).await.unwrap());
        assert!(login_sees_factor().await, "a login reads the confirmed factor with the account");
        let stored = store.factors(account.id()).await.unwrap();
        assert_eq!(stored[0].confirmed_at, Some(NOW));
        assert_eq!(stored[0].last_step, Some(100));
        assert_eq!(stored[0].secret, fresh.secret);
        assert_eq!(store.recovery_codes_left(account.id()).await.unwrap(), 3);
        // Confirmed once: a second confirmation changes nothing and stores nothing.
        let again = event(&account, AuditKind::SecondFactorAdded);
        assert!(!store
            .confirm_factor(&confirmation(account.id(), fresh.id, 101, NOW, &[], &again, &mail_to("owner@example.com"))).await
            .unwrap());
        assert_eq!(store.factors(account.id()).await.unwrap()[0].last_step, Some(100));
        let log = AuditLog::list(store, account.id(), None, 10).await.unwrap();
        assert_eq!(log.iter().filter(|logged| logged.kind == AuditKind::SecondFactorAdded).count(), 1);
        // Another account's factor is not this account's to confirm.
        let other = new_account("other@example.com");
        store.create_unverified(&other, &attempt_for(&other, 9), &mail_to("other@example.com")).await.unwrap();
        let theirs = factor(&other, 3, NOW);
        store.add_factor(&theirs, NOW - Duration::hours(1)).await.unwrap();
        let foreign = event(&account, AuditKind::SecondFactorAdded);
        assert!(!store
            .confirm_factor(&confirmation(account.id(), theirs.id, 100, NOW, &[], &foreign, &mail_to("owner@example.com"))).await
            .unwrap());
    }

    pub async fn a_time_step_is_spent_once_even_by_requests_that_race<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let totp = factor(&account, 1, NOW);
        store.add_factor(&totp, NOW - Duration::hours(1)).await.unwrap();
        // An unconfirmed factor spends nothing.
        assert!(!store.spend_step(totp.id, 50, NOW).await.unwrap());
        let added = event(&account, AuditKind::SecondFactorAdded);
        store.confirm_factor(&confirmation(account.id(), totp.id, 100, NOW, &[], &added, &mail_to("owner@example.com"))).await.unwrap();
        assert!(!store.spend_step(totp.id, 100, NOW).await.unwrap(), "the confirming code's step is spent");
        assert!(!store.spend_step(totp.id, 99, NOW).await.unwrap(), "an earlier step never passes");
        assert!(store.spend_step(totp.id, 101, NOW + Duration::seconds(30)).await.unwrap());
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.spend_step(totp.id, 102, NOW).await.unwrap() })
            })
            .collect();
        let mut passed = 0;
        for racer in racers {
            passed += usize::from(racer.await.unwrap());
        }
        assert_eq!(passed, 1, "one of the requests with the same code passes");
        let stored = store.factors(account.id()).await.unwrap();
        assert_eq!((stored[0].last_step, stored[0].last_used_at), (Some(102), Some(NOW)));
    }

    pub async fn recovery_codes_pass_once_die_with_a_new_set_and_go_with_the_last_factor<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let totp = factor(&account, 1, NOW);
        store.add_factor(&totp, NOW - Duration::hours(1)).await.unwrap();
        let added = event(&account, AuditKind::SecondFactorAdded);
        let first_set = codes(&[1, 2, 3]);
        store.confirm_factor(&confirmation(account.id(), totp.id, 100, NOW, &first_set, &added, &mail_to("owner@example.com"))).await.unwrap();

        let spend = |code: TokenHash| {
            let store = store.clone();
            let account_id = account.id();
            async move {
                let used = AuditEvent {
                    id: Uuid::new_v4(),
                    account_id,
                    kind: AuditKind::RecoveryCodeUsed,
                    ..login_event(&new_account("x@example.com"))
                };
                store.spend_recovery_code(account_id, &code, NOW, &used, &mail_to("owner@example.com")).await.unwrap()
            }
        };
        assert!(spend(first_set[0]).await);
        assert!(!spend(first_set[0]).await, "a code passes once");
        assert!(!spend(TokenHash::of(b"not a code")).await);
        assert_eq!(store.recovery_codes_left(account.id()).await.unwrap(), 2);
        let racers: Vec<_> = (0..6).map(|_| tokio::spawn(spend(first_set[1]))).collect();
        let mut passed = 0;
        for racer in racers {
            passed += usize::from(racer.await.unwrap());
        }
        assert_eq!(passed, 1, "one of the requests with the same code passes");

        let regenerated = event(&account, AuditKind::RecoveryCodesRegenerated);
        let second_set = codes(&[7, 8]);
        store
            .replace_recovery_codes(account.id(), &second_set, NOW, &regenerated, &mail_to("owner@example.com"))
            .await
            .unwrap();
        assert!(!spend(first_set[2]).await, "the old set died");
        assert_eq!(store.recovery_codes_left(account.id()).await.unwrap(), 2);
        assert!(spend(second_set[0]).await);

        let removed = event(&account, AuditKind::SecondFactorRemoved);
        assert!(store.remove_factor(account.id(), totp.id, &removed, &mail_to("owner@example.com")).await.unwrap());
        assert!(!store.has_confirmed_factor(account.id()).await.unwrap());
        assert_eq!(store.recovery_codes_left(account.id()).await.unwrap(), 0, "the codes went with the last factor");
        let removed_again = event(&account, AuditKind::SecondFactorRemoved);
        assert!(!store.remove_factor(account.id(), totp.id, &removed_again, &mail_to("owner@example.com")).await.unwrap());
    }

    pub async fn a_challenge_dies_at_its_failure_limit_and_is_spent_once<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let pending = challenge(&account, 1);
        store.create_challenge(&pending).await.unwrap();
        assert_eq!(store.find_challenge(&pending.token_hash).await.unwrap(), Some(pending.clone()));
        assert_eq!(store.fail_challenge(&pending.token_hash, 3).await.unwrap(), Some(1));
        assert_eq!(store.fail_challenge(&pending.token_hash, 3).await.unwrap(), Some(2));
        assert_eq!(store.find_challenge(&pending.token_hash).await.unwrap().map(|found| found.failures), Some(2));
        assert_eq!(store.fail_challenge(&pending.token_hash, 3).await.unwrap(), Some(3));
        assert_eq!(store.find_challenge(&pending.token_hash).await.unwrap(), None, "the third wrong code ended it");
        assert_eq!(store.fail_challenge(&pending.token_hash, 3).await.unwrap(), None);

        let next = challenge(&account, 2);
        store.create_challenge(&next).await.unwrap();
        let racers: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                let hash = next.token_hash;
                tokio::spawn(async move { store.spend_challenge(&hash).await.unwrap() })
            })
            .collect();
        let mut spent = 0;
        for racer in racers {
            spent += usize::from(racer.await.unwrap());
        }
        assert_eq!(spent, 1);
        assert_eq!(store.find_challenge(&next.token_hash).await.unwrap(), None);
    }

    pub async fn an_operators_reset_removes_every_factor_code_and_challenge<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let totp = factor(&account, 1, NOW);
        store.add_factor(&totp, NOW - Duration::hours(1)).await.unwrap();
        let added = event(&account, AuditKind::SecondFactorAdded);
        store.confirm_factor(&confirmation(account.id(), totp.id, 100, NOW, &codes(&[1]), &added, &mail_to("owner@example.com"))).await.unwrap();
        let pending = challenge(&account, 3);
        store.create_challenge(&pending).await.unwrap();
        let reset = event(&account, AuditKind::SecondFactorsReset);
        store.remove_all(account.id(), &reset, &mail_to("owner@example.com")).await.unwrap();
        assert!(store.factors(account.id()).await.unwrap().is_empty());
        assert_eq!(store.recovery_codes_left(account.id()).await.unwrap(), 0);
        assert_eq!(store.find_challenge(&pending.token_hash).await.unwrap(), None);
        let log = AuditLog::list(store, account.id(), None, 10).await.unwrap();
        assert!(log.iter().any(|logged| logged.kind == AuditKind::SecondFactorsReset));
    }

    pub async fn a_step_up_is_recorded_on_a_live_session_with_its_methods<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let session = new_session(&account, &RefreshSecret::from_bytes([4; 32]));
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        let found = SessionRepository::find(store, session.id()).await.unwrap().unwrap();
        assert_eq!((found.methods(), found.second_factor_at()), (AuthenticationMethods::password(), None));
        let both = AuthenticationMethods::password().with(AuthenticationMethod::OneTimeCode);
        assert!(store.mark_second_factor(session.id(), NOW, both).await.unwrap());
        let found = SessionRepository::find(store, session.id()).await.unwrap().unwrap();
        assert_eq!((found.methods(), found.second_factor_at()), (both, Some(NOW)));
        SessionRepository::revoke(store, session.id(), NOW, RevocationReason::Logout).await.unwrap();
        assert!(!store.mark_second_factor(session.id(), NOW, both).await.unwrap());
    }

    pub async fn a_passkey_is_found_by_its_unique_credential_id_and_keeps_its_new_counter<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let passkey = StoredFactor {
            kind: FactorKind::Passkey,
            secret: SealedSecret("passkey counter 0".into()),
            credential_id: Some("Y3JlZGVudGlhbA".into()),
            confirmed_at: Some(NOW),
            ..factor(&account, 5, NOW)
        };
        let addition = |factor: StoredFactor, codes: Vec<TokenHash>| PasskeyAddition {
            factor,
            recovery_codes: codes,
            event: event(&account, AuditKind::SecondFactorAdded),
            notice: mail_to("owner@example.com"),
        };
        store.add_passkey(&addition(passkey.clone(), codes(&[4, 5]))).await.unwrap();
        assert!(store.has_confirmed_factor(account.id()).await.unwrap());
        assert_eq!(store.recovery_codes_left(account.id()).await.unwrap(), 2);
        assert_eq!(store.factor_by_credential("Y3JlZGVudGlhbA").await.unwrap(), Some(passkey.clone()));
        assert_eq!(store.factor_by_credential("b3RoZXI").await.unwrap(), None);
        let copy = StoredFactor { id: FactorId::from_uuid(Uuid::from_u128(6)), ..passkey.clone() };
        assert!(store.add_passkey(&addition(copy, Vec::new())).await.is_err(), "a credential id is registered once");

        store.record_passkey_use(passkey.id, Some("passkey counter 3".into()), NOW + Duration::minutes(1)).await.unwrap();
        let used = store.factor_by_credential("Y3JlZGVudGlhbA").await.unwrap().unwrap();
        assert_eq!((used.secret.0.as_str(), used.last_used_at), ("passkey counter 3", Some(NOW + Duration::minutes(1))));
        store.record_passkey_use(passkey.id, None, NOW + Duration::minutes(2)).await.unwrap();
        let used = store.factor_by_credential("Y3JlZGVudGlhbA").await.unwrap().unwrap();
        assert_eq!((used.secret.0.as_str(), used.last_used_at), ("passkey counter 3", Some(NOW + Duration::minutes(2))));
    }

    pub async fn a_passkey_ceremony_is_taken_once_by_requests_that_race<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let ceremony = PasskeyCeremony {
            id: CeremonyId::from_uuid(Uuid::new_v4()),
            purpose: CeremonyPurpose::SecondFactor,
            account_id: Some(account.id()),
            challenge: Some(TokenHash::of(b"challenge")),
            state: "{\"state\":1}".into(),
            created_at: NOW,
            expires_at: NOW + Duration::minutes(5),
        };
        store.create_ceremony(&ceremony).await.unwrap();
        let racers: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                let id = ceremony.id;
                tokio::spawn(async move { store.take_ceremony(id).await.unwrap() })
            })
            .collect();
        let mut taken = Vec::new();
        for racer in racers {
            taken.extend(racer.await.unwrap());
        }
        assert_eq!(taken, vec![ceremony.clone()], "one request gets it, whole");
        let passwordless = PasskeyCeremony {
            id: CeremonyId::from_uuid(Uuid::new_v4()),
            purpose: CeremonyPurpose::Passwordless,
            account_id: None,
            challenge: None,
            ..ceremony
        };
        store.create_ceremony(&passwordless).await.unwrap();
        assert_eq!(store.take_ceremony(passwordless.id).await.unwrap(), Some(passwordless.clone()));
        assert_eq!(store.take_ceremony(passwordless.id).await.unwrap(), None);
    }

    pub async fn the_purge_takes_expired_challenges_and_ceremonies_and_abandoned_enrolments<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let expired = MfaChallenge { expires_at: NOW - Duration::seconds(1), ..challenge(&account, 7) };
        let live = challenge(&account, 8);
        store.create_challenge(&expired).await.unwrap();
        store.create_challenge(&live).await.unwrap();
        let ceremony = |expires_at| PasskeyCeremony {
            id: CeremonyId::from_uuid(Uuid::new_v4()),
            purpose: CeremonyPurpose::Passwordless,
            account_id: None,
            challenge: None,
            state: "{}".into(),
            created_at: NOW - Duration::minutes(10),
            expires_at,
        };
        let (old_ceremony, new_ceremony) = (ceremony(NOW - Duration::minutes(5)), ceremony(NOW + Duration::minutes(5)));
        store.create_ceremony(&old_ceremony).await.unwrap();
        store.create_ceremony(&new_ceremony).await.unwrap();
        let abandoned = factor(&account, 1, NOW - Duration::hours(2));
        let waiting = factor(&account, 2, NOW - Duration::minutes(10));
        store.add_factor(&abandoned, NOW - Duration::days(1)).await.unwrap();
        store.add_factor(&waiting, NOW - Duration::days(1)).await.unwrap();

        let report = store.purge(&RetentionSettings::default().cutoffs(NOW)).await.unwrap();
        assert_eq!(report.ceremonies, 3, "{report:?}");
        assert_eq!(store.find_challenge(&expired.token_hash).await.unwrap(), None);
        assert_eq!(store.find_challenge(&live.token_hash).await.unwrap(), Some(live));
        assert_eq!(store.take_ceremony(old_ceremony.id).await.unwrap(), None);
        assert_eq!(store.take_ceremony(new_ceremony.id).await.unwrap(), Some(new_ceremony));
        assert_eq!(store.factors(account.id()).await.unwrap(), vec![waiting]);
    }
}
