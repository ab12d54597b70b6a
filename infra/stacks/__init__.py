"""One stack per target cloud, each built from :class:`infra.config.InfraConfig`."""
