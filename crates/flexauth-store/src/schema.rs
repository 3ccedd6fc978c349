//! The tables, as declared by the migrations of both backends.

diesel::table! {
    accounts (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        email_verified_at -> Nullable<BigInt>,
        created_at -> BigInt,
        credential_version -> BigInt,
        disabled_at -> Nullable<BigInt>,
        clients_forgotten_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    email_verification_tokens (token_hash) {
        token_hash -> Binary,
        account_id -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        password_hash -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        account_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        current_hash -> Binary,
        current_issued_at -> BigInt,
        current_expires_at -> BigInt,
        previous_hash -> Nullable<Binary>,
        rotation_nonce -> Nullable<Binary>,
        generation -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        authenticated_at -> BigInt,
        amr -> Text,
        second_factor_at -> Nullable<BigInt>,
        expiry_announced_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    password_reset_tokens (token_hash) {
        token_hash -> Binary,
        account_id -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        account_id -> Text,
        name -> Text,
        prefix -> Text,
        key_hash -> Binary,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        scopes -> Text,
        expiry_announced_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(api_keys -> accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(api_keys, accounts);

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        recipient -> Text,
        subject -> Text,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
        queued_at -> BigInt,
        next_attempt_at -> BigInt,
        attempts -> Integer,
        lease_id -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        sent_at -> Nullable<BigInt>,
        failed_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    signing_keys (slot) {
        slot -> Text,
        private_key_pem -> Text,
        created_at -> BigInt,
        activates_at -> Nullable<BigInt>,
        retired_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    usage_counters (account_id, day) {
        account_id -> Text,
        day -> Text,
        requests -> BigInt,
    }
}

diesel::table! {
    account_requests (id) {
        id -> Text,
        kind -> Text,
        email -> Text,
        password_hash -> Nullable<Text>,
        requested_at -> BigInt,
        lease_id -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    rate_limits (key) {
        key -> Text,
        window_start -> BigInt,
        hits -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        account_id -> Text,
        kind -> Text,
        at -> BigInt,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        session_id -> Nullable<Text>,
        key_id -> Nullable<Text>,
    }
}

// The purge looks for working links of an account inside the account query.
diesel::allow_tables_to_appear_in_same_query!(accounts, email_verification_tokens);

diesel::table! {
    known_devices (token_hash) {
        token_hash -> Binary,
        account_id -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
    }
}

diesel::table! {
    email_changes (token_hash) {
        token_hash -> Binary,
        undo_hash -> Binary,
        account_id -> Text,
        old_email -> Text,
        new_email -> Text,
        requested_at -> BigInt,
        expires_at -> BigInt,
        undo_expires_at -> BigInt,
        confirmed_at -> Nullable<BigInt>,
        undone_at -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(accounts, email_changes);
// A login reads its account with whether it has a second factor and when its device was seen.
diesel::allow_tables_to_appear_in_same_query!(accounts, mfa_factors);
diesel::allow_tables_to_appear_in_same_query!(accounts, known_devices);

diesel::table! {
    session_endings (session_id) {
        session_id -> Text,
        ended_at -> BigInt,
    }
}

diesel::table! {
    introspection_clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    mfa_factors (id) {
        id -> Text,
        account_id -> Text,
        kind -> Text,
        name -> Text,
        secret -> Text,
        created_at -> BigInt,
        confirmed_at -> Nullable<BigInt>,
        last_step -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        credential_id -> Nullable<Text>,
    }
}

diesel::table! {
    mfa_recovery_codes (code_hash) {
        code_hash -> Binary,
        account_id -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Binary,
        account_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        failures -> Integer,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        credential_version -> BigInt,
    }
}

diesel::table! {
    passkey_ceremonies (id) {
        id -> Text,
        purpose -> Text,
        account_id -> Nullable<Text>,
        challenge_hash -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        url -> Text,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_until -> Nullable<BigInt>,
        created_at -> BigInt,
        failing_since -> Nullable<BigInt>,
        disabled_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_subscriptions (event_type, endpoint_id) {
        event_type -> Text,
        endpoint_id -> Text,
    }
}

diesel::table! {
    webhook_messages (id) {
        id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        event_type -> Text,
        occurred_at -> BigInt,
        account_id -> Text,
        email -> Nullable<Text>,
        session_id -> Nullable<Text>,
        key_id -> Nullable<Text>,
        factor_id -> Nullable<Text>,
        reason -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        queued_at -> BigInt,
        next_attempt_at -> BigInt,
        attempts -> Integer,
        lease_id -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        failed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        event_type -> Text,
        attempt -> Integer,
        at -> BigInt,
        duration_ms -> BigInt,
        status -> Nullable<Integer>,
        error -> Nullable<Text>,
        result -> Text,
    }
}

diesel::joinable!(webhook_messages -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_subscriptions -> webhook_endpoints (endpoint_id));
diesel::allow_tables_to_appear_in_same_query!(webhook_messages, webhook_endpoints);
diesel::allow_tables_to_appear_in_same_query!(webhook_subscriptions, webhook_endpoints);
