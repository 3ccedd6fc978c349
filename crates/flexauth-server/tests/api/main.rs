//! Black-box tests of the HTTP API: real servers on port 0, a real database (PostgreSQL when
//! FLEXAUTH_TEST_POSTGRES_URL is set, else SQLite) and a real SMTP server in-process.

mod helpers;

mod bad_input;
mod mail;
mod scale_out;
mod sessions;
mod signup;
mod tokens;
