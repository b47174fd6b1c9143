"""Dataset builders: Debian package tags (hierarchical multi-label) and BBC News (multi-class)."""
