"""Where benchmark files come from: the offline mirror or the upstream sources."""
