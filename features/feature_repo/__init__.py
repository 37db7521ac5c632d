"""The Feast repo: definitions (entity, views, services) and the store config template."""
