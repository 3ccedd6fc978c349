DROP TRIGGER sessions_record_deletion;
DROP TRIGGER sessions_record_revocation;
DROP TABLE session_endings;
