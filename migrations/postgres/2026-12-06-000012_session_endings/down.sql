DROP TRIGGER sessions_record_deletion ON sessions;
DROP TRIGGER sessions_record_revocation ON sessions;
DROP FUNCTION flexauth_record_session_end();
DROP TABLE session_endings;
