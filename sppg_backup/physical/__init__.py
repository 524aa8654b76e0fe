"""Physical backups: base backups with pg_basebackup, the WAL archive, point-in-time restore."""
