# flexauth's tasks. CI (.ci/run) calls the same commands.

# PostgreSQL used by `test-all` and `run-postgres`; tests create and drop their own databases on it.
pg_url := env_var_or_default("FLEXAUTH_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# List the recipes.
default:
    @just --list

# Run the server with embedded SQLite, mail written to ./data/mail and a generated dev key.
run:
    cargo run -p flexauth-server

# Run the server against the local PostgreSQL (database flexauth_dev, created if missing).
run-postgres: db-up
    psql "{{pg_url}}" -tc "SELECT 1 FROM pg_database WHERE datname = 'flexauth_dev'" | grep -q 1 || psql "{{pg_url}}" -c "CREATE DATABASE flexauth_dev"
    FLEXAUTH_DATABASE_URL="postgres://postgres@127.0.0.1:5432/flexauth_dev" cargo run -p flexauth-server

# Write docs/openapi.json: the OpenAPI document the server generates from its code (a test fails when the copy is stale).
openapi:
    cargo run -q -p flexauth-server -- openapi > docs/openapi.json

# Drive every operation of the OpenAPI document with generated requests (schemathesis, installed into target/); fails on any 5xx, undocumented status or answer that does not match its schema.
api-fuzz:
    ./scripts/api-fuzz

# Apply migrations only.
migrate:
    cargo run -p flexauth-server -- migrate

# All tests; the PostgreSQL ones are skipped unless FLEXAUTH_TEST_POSTGRES_URL is set.
test:
    cargo test --workspace

# Every test as CI runs them: PostgreSQL, PgBouncer, Chromium, nginx, Caddy and authlib started or installed if missing, and required, the API suite again on SQLite, and the OpenAPI property test.
test-all:
    ./scripts/test-all

# Load benchmark: release binary on PostgreSQL driven by wrk (installed if missing), every figure as a ratio against a limit measured in the same run (/healthz, pgbench, argon2, Ed25519); writes target/bench/report.md. Args: rounds, seconds per scenario.
bench rounds="3" seconds="5": db-up
    FLEXAUTH_TEST_POSTGRES_URL="{{pg_url}}" ./scripts/bench {{rounds}} {{seconds}}

# Median latency of signup, resend and forgot for known vs unknown addresses, and of wrong-password logins on verified, pending and unknown addresses, with their ratios (release build, outside the server process).
bench-enumeration:
    cargo build --release -p flexauth-server
    ./scripts/bench-enumeration

# Login floods of 8 and 256 clients: 200s and fast 503s, /healthz latency, peak RSS against workers × argon2 memory + 64 MiB (release build, rate limits off).
bench-login-flood:
    cargo build --release -p flexauth-server
    ./scripts/bench-login-flood

# What the rate limits add per login and per refresh: medians with the limits on and off (release build, outside the server process).
bench-limiter-cost:
    cargo build --release -p flexauth-server
    ./scripts/bench-limiter-cost

# Logins with no webhook endpoint, a healthy receiver and one that hangs: logins/s and latency as ratios to no endpoint, in one run (release build, PostgreSQL, wrk). Args: rounds, seconds per configuration.
bench-webhooks rounds="3" seconds="8": db-up
    cargo build --release -p flexauth-server
    FLEXAUTH_TEST_POSTGRES_URL="{{pg_url}}" ./scripts/bench-webhooks {{rounds}} {{seconds}}

# The hot paths on a large database (SCALE × 1M accounts, 5M sessions, 10M security events, …) against an empty one, alternating, with the first purge's backlog timed, the statements and transactions per operation and per idle second (PostgreSQL's log), and the sizing figures: CPU per operation of the server and PostgreSQL, memory (release build, PostgreSQL, wrk). Args: scale, seconds per scenario, rounds.
bench-scale scale="1" seconds="5" rounds="3": db-up
    cargo build --release -p flexauth-server
    FLEXAUTH_TEST_POSTGRES_URL="{{pg_url}}" ./scripts/bench-scale {{scale}} {{seconds}} {{rounds}}

# A fresh PostgreSQL primary (127.0.0.1:5441) with a synchronous streaming standby (5442), for the failover test and for trying a failover by hand; prints the variables the test reads.
replica-up:
    ./scripts/pg-replica-up

# Formatting, the domain's dependency rule, clippy with warnings denied, and rustdoc without a warning.
lint:
    ./scripts/lint

# Format the code.
fmt:
    cargo fmt --all

# Fail if flexauth-domain depends on a framework, database, runtime, mail, JWT or hashing crate.
check-domain:
    ./.ci/check-domain-deps

# Install (if missing), configure and start PostgreSQL on 127.0.0.1:5432 with trust auth for loopback.
db-up:
    ./scripts/db-up

# Install Debian's Chromium if it is missing (for the browser test; FLEXAUTH_TEST_CHROMIUM takes the path it prints).
browser-up:
    ./scripts/browser-up

# Debian's nginx-light and caddy (installed if missing) and authlib in target/gateways/venv, for the gateway and introspection tests; prints the variables they read (eval "$(scripts/gateways-up)").
gateways-up:
    ./scripts/gateways-up

# PgBouncer in transaction mode on 127.0.0.1:6432 in front of db-up's PostgreSQL (installs Debian's pgbouncer if missing); prints its URL.
pgbouncer-up: db-up
    ./scripts/pgbouncer-up

# Photograph every page behind the links in emails (headless Chromium, phone-sized) into docs/screenshots.
screenshots: db-up browser-up
    FLEXAUTH_TEST_CHROMIUM="$(./scripts/browser-up)" FLEXAUTH_TEST_SCREENSHOTS_DIR="{{justfile_directory()}}/docs/screenshots" cargo test -p flexauth-server --test api pages::

# The API documentation of every crate, failing on any rustdoc warning.
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# flexauth-domain embedded behind axum on the in-memory, JWT and argon2 adapters: sign-up to refresh over HTTP.
example:
    cargo run -p flexauth-example-embedded

# What CI runs.
ci:
    bash .ci/run
