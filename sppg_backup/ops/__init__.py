"""Operations around the backups: Docker services, audit trail, metrics, notifications, alerts, reports,
scratch folders."""
